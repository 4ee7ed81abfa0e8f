"""Shared by the example's scripts: the agent's address and the model settings."""

import os

AGENT_ADDR = "chat@fame.fabric"


def model_name() -> str:
    """The model to ask: MODEL_NAME, default gpt-4.1-mini."""
    return os.environ.get("MODEL_NAME") or "gpt-4.1-mini"
