"""Test doubles for famefabric: a real HTTP server that imitates the OpenAI API.

:class:`OpenAIStubServer` answers ``/v1/chat/completions`` as the OpenAI
API does, with faults to inject (:class:`Fail`, :class:`Hang`,
:class:`Delay`, :class:`StreamFailAfter`); :func:`free_port` is for servers
that cannot bind port 0 themselves.
"""

from __future__ import annotations

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
from famefabric.testing.openai_stub import OpenAIStubServer
from famefabric.testing.ports import free_port

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
