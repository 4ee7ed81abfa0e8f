"""Settings of the chat agent, read once at start-up from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from famefabric.chat.conversation import DEFAULT_MAX_HISTORY_LENGTH, DEFAULT_SYSTEM_PROMPT
from famefabric.errors import ConfigurationError
from famefabric.settings import env_float, env_int

DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_ADDRESS = "chat@fame.fabric"


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where famefabric keeps its data: ``FAME_DATA_DIR``, else the user's data directory.

    The user's data directory is ``$XDG_DATA_HOME/famefabric``, by default
    ``~/.local/share/famefabric``: one place, whatever the working directory.
    """
    env = os.environ if env is None else env
    explicit = env.get("FAME_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().absolute()
    base = env.get("XDG_DATA_HOME") or str(
        Path(env.get("HOME") or Path.home()) / ".local" / "share"
    )
    return Path(base).expanduser().absolute() / "famefabric"


def default_store(env: Mapping[str, str] | None = None) -> str:
    """The store used when ``CHAT_STORE`` is not set: SQLite in :func:`data_dir`."""
    return f"sqlite:///{data_dir(env) / 'conversations.db'}"


DEFAULT_STORE = "sqlite:///data/conversations.db"
"""Only the dataclass default; :meth:`ChatSettings.from_env` uses :func:`default_store`."""


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """Everything the chat agent reads from its environment.

    Attributes:
        model: ``MODEL_NAME``, the model to ask (default ``gpt-4.1-mini``).
        api_key: ``OPENAI_API_KEY``; the agent starts without one but every turn then fails.
        base_url: ``OPENAI_BASE_URL``, any OpenAI-compatible server (default the OpenAI API).
        timeout: ``OPENAI_TIMEOUT``, seconds one LLM request may take.
        max_retries: ``OPENAI_MAX_RETRIES``, retries of a failed LLM request.
        store: ``CHAT_STORE``, where conversations live: ``memory://``,
            ``sqlite:///path.db`` or ``redis://host:port/db``; by default
            ``conversations.db`` in :func:`data_dir`.
        idle_ttl: ``CHAT_IDLE_TTL``, seconds after which an idle conversation is dropped.
        max_message_chars: ``CHAT_MAX_MESSAGE_CHARS``, the longest user message accepted.
        system_prompt: ``CHAT_SYSTEM_PROMPT``, used when a conversation starts without one.
        max_history_length: ``CHAT_HISTORY``, exchanges kept when a conversation does not say.
    """

    model: str = DEFAULT_MODEL
    api_key: str | None = None
    base_url: str | None = None
    timeout: float = 60.0
    max_retries: int = 2
    store: str = DEFAULT_STORE
    idle_ttl: float = 24 * 3600.0
    max_message_chars: int = 32_000
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_history_length: int = DEFAULT_MAX_HISTORY_LENGTH

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChatSettings:
        """Read the settings from ``env`` (default: the process environment).

        Raises:
            ConfigurationError: a variable has an invalid value; the message names it.
        """
        env = os.environ if env is None else env
        base_url = env.get("OPENAI_BASE_URL") or None
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"OPENAI_BASE_URL={base_url!r} is not a valid URL: expected http://host:port/v1 or https://…"
            )
        return cls(
            model=env.get("MODEL_NAME") or DEFAULT_MODEL,
            api_key=env.get("OPENAI_API_KEY") or None,
            base_url=base_url,
            timeout=env_float(env, "OPENAI_TIMEOUT", 60.0, minimum=0.001),
            max_retries=env_int(env, "OPENAI_MAX_RETRIES", 2, minimum=0),
            store=env.get("CHAT_STORE") or default_store(env),
            idle_ttl=env_float(env, "CHAT_IDLE_TTL", 24 * 3600.0, minimum=0.001),
            max_message_chars=env_int(env, "CHAT_MAX_MESSAGE_CHARS", 32_000, minimum=1),
            system_prompt=env.get("CHAT_SYSTEM_PROMPT") or DEFAULT_SYSTEM_PROMPT,
            max_history_length=env_int(env, "CHAT_HISTORY", DEFAULT_MAX_HISTORY_LENGTH, minimum=1),
        )
