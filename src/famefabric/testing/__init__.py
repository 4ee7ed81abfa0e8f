"""Test doubles for famefabric: a real HTTP server that imitates the OpenAI API.

The server class is imported lazily so that
``python -m famefabric.testing.openai_server`` runs the module only once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from famefabric.testing._types import (
    Behaviour,
    Delay,
    Echo,
    Fail,
    Hang,
    RecordedRequest,
    Reply,
    StreamFailAfter,
    StreamRecord,
)
from famefabric.testing.ports import free_port

if TYPE_CHECKING:
    from famefabric.testing.openai_server import OpenAIStubServer

__all__ = [
    "Behaviour",
    "Delay",
    "Echo",
    "Fail",
    "Hang",
    "OpenAIStubServer",
    "RecordedRequest",
    "Reply",
    "StreamFailAfter",
    "StreamRecord",
    "free_port",
]


def __getattr__(name: str) -> object:
    if name == "OpenAIStubServer":
        from famefabric.testing.openai_server import OpenAIStubServer

        return OpenAIStubServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
