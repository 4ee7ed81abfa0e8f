"""Exceptions raised by famefabric.

Every exception derives from :class:`FabricError`, which derives from
:class:`Exception` (never ``BaseException``), so ``except Exception`` at a
task's root catches them and ``KeyboardInterrupt`` / ``CancelledError`` pass.

::

    FabricError
    ├── ProtocolError                 an envelope or frame is invalid
    │   ├── LocalProtocolError        we were asked to build or send an invalid one
    │   └── RemoteProtocolError       a peer sent an invalid one
    ├── ConfigurationError            a setting has an invalid value
    ├── DefinitionError               an agent class is defined wrongly
    ├── ConnectionClosed              the link to the sentinel is gone (code, reason)
    ├── NoRoute                       nobody serves the address (code, reason)
    ├── OperationTimeout              a call's deadline passed (also a TimeoutError)
    ├── RemoteError                   the far side answered with a JSON-RPC error
    └── OperationError                raise it in an operation to send a chosen error
"""

from __future__ import annotations

from typing import Any

JSONValue = Any
"""A value that JSON can carry; spelled once so signatures say what they mean."""


class FabricError(Exception):
    """Base class of every famefabric exception."""


class ProtocolError(FabricError):
    """An envelope, frame, address or JSON-RPC message is invalid."""


class LocalProtocolError(ProtocolError):
    """This process tried to build or send something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something the protocol forbids."""


class ConfigurationError(FabricError):
    """A setting (flag or environment variable) has an invalid value."""


class DefinitionError(FabricError):
    """An agent class or operation is defined in a way the SDK cannot serve."""


class ConnectionClosed(FabricError):
    """The connection to the sentinel closed, or was never established.

    Attributes:
        code: the WebSocket close code, when one was received.
        reason: the close reason or a description of the failure.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class NoRoute(FabricError):
    """The sentinel could not deliver a message: nobody serves the address.

    Attributes:
        address: the destination that could not be reached.
        code: the sentinel's NACK code, e.g. ``NO_ROUTE`` or ``CHILD_UNREACHABLE``.
        reason: the sentinel's text.
    """

    def __init__(self, address: str | None, *, code: str = "NO_ROUTE", reason: str = "") -> None:
        where = repr(address) if address else "the requested capability"
        detail = f" ({code}: {reason})" if reason else f" ({code})"
        if code == "CHILD_UNREACHABLE":
            what = "the node serving it went away before answering"
        elif code == "MESSAGE_TOO_LARGE":
            what = "the message is larger than the 256 KiB limit"
        else:
            what = "no node serves this address"
        super().__init__(f"no route to {where}: {what}{detail}")
        self.address = address
        self.code = code
        self.reason = reason


class OperationTimeout(FabricError, TimeoutError):
    """A call did not complete before its deadline."""


class RemoteError(FabricError):
    """The called agent answered with a JSON-RPC error.

    Attributes:
        code: the JSON-RPC error code.
        message: the error message sent by the agent.
        data: the optional ``data`` member of the error.
    """

    def __init__(self, code: int, message: str, data: JSONValue = None) -> None:
        # Only a short text ``data`` adds to the message; structured data stays in ``data``.
        extra = isinstance(data, str) and data != message and "\n" not in data and len(data) < 300
        text = f"{message}: {data}" if extra else message
        super().__init__(text)
        self.code = code
        self.message = message
        self.data = data


class OperationError(FabricError):
    """Raise from an operation to answer with this JSON-RPC error.

    Any other exception raised by an operation is sent as ``-32603`` with its
    text (the wire behaviour peers expect, PROTOCOL.md §10.4).

    Args:
        message: what went wrong and what the caller can do about it.
        code: the JSON-RPC error code (default ``-32000``, application error).
        data: extra JSON data, e.g. ``{"code": "llm_auth"}`` for a stable code.
    """

    def __init__(self, message: str, *, code: int = -32000, data: JSONValue = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data
