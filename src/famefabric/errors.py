"""Exceptions raised by famefabric.

Every exception derives from :class:`FabricError`, which derives from
:class:`Exception` (never ``BaseException``), so ``except Exception`` at a
task's root catches them and ``KeyboardInterrupt`` / ``CancelledError`` pass.

::

    FabricError
    ├── ProtocolError                 an envelope or frame is invalid
    │   ├── LocalProtocolError        we were asked to build or send an invalid one
    │   └── RemoteProtocolError       a peer sent an invalid one
    ├── ConfigurationError            a setting has an invalid value (also a ValueError)
    ├── DefinitionError               an agent class is defined wrongly
    ├── TokenRejected                 an admission token is missing, forged or expired (reason)
    ├── ConnectionClosed              the link to the sentinel is gone (code, reason)
    │   └── AttachRefused             the sentinel refused this node (status, reason)
    ├── NoRoute                       nobody serves the address (code, reason)
    ├── OperationTimeout              a call's deadline passed (also a TimeoutError)
    ├── StreamOverflow                a stream's consumer fell too far behind
    ├── RemoteError                   the far side answered with a JSON-RPC error
    ├── OperationError                raise it in an operation to send a chosen error
    └── StoreError                    a conversation store refused or failed
        ├── ConversationExists        the id is taken
        ├── ConversationNotFound      no conversation with this id
        ├── VersionConflict           another turn was committed meanwhile
        └── StoreUnavailable          the store's backend is down

Where users import them from elsewhere (``famefabric.node.AttachRefused``,
``famefabric.chat.store.ConversationNotFound``…), those names are these classes.
"""

from __future__ import annotations

import re
from typing import Any

JSONValue = Any
"""A value that JSON can carry; spelled once so signatures say what they mean."""

_ERROR_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class FabricError(Exception):
    """Base class of every famefabric exception."""


class ProtocolError(FabricError):
    """An envelope, frame, address or JSON-RPC message is invalid."""


class LocalProtocolError(ProtocolError):
    """This process tried to build or send something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something the protocol forbids."""


class ConfigurationError(FabricError, ValueError):
    """A setting (flag, environment variable or argument) has an invalid value."""


class DefinitionError(FabricError):
    """An agent class or operation is defined in a way the SDK cannot serve."""


class TokenRejected(FabricError):
    """An admission token was refused: missing, malformed, forged, expired, wrong audience.

    The message never contains the token itself.

    Attributes:
        reason: one line saying what was wrong, fit for an HTTP 401 body.
        subject: the token's ``sub`` when it could be read (for logs), else None.
        unavailable: the token could not be checked now (the identity
            provider's keys cannot be fetched); a server answers 503, not 401.
    """

    def __init__(
        self, reason: str, *, subject: str | None = None, unavailable: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.subject = subject
        self.unavailable = unavailable


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


class AttachRefused(ConnectionClosed):
    """The sentinel refused this node.

    Either the WebSocket handshake was answered with an HTTP error status
    (``status`` is set: 401 no or bad token, 403 not allowed, 503 full…), or
    the sentinel answered ``NodeAttachAck`` with ``ok: false`` (``status`` is
    ``None``, PROTOCOL.md §4.2).

    Attributes:
        status: the HTTP status of the refused handshake, if it was one.
        reason: the server's one-line explanation (or the HTTP reason phrase).
    """

    def __init__(
        self, message: str, *, status: int | None = None, reason: str = "", code: int | None = None
    ) -> None:
        super().__init__(message, code=code, reason=reason)
        self.status = status


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


class StreamOverflow(FabricError):
    """A stream's consumer fell behind: more items arrived than the stream buffers.

    The agent is told to stop; read items faster or ask for fewer.

    Attributes:
        address: the agent's address.
        method: the streaming method.
        limit: how many unread items the stream holds.
    """

    def __init__(self, address: str, method: str, limit: int) -> None:
        super().__init__(
            f"stream from {address!r} ({method}) overflowed: the consumer fell {limit} items behind"
        )
        self.address = address
        self.method = method
        self.limit = limit


class RemoteError(FabricError):
    """The called agent answered with a JSON-RPC error.

    Attributes:
        code: the JSON-RPC error code.
        message: the error message sent by the agent.
        data: the optional ``data`` member of the error.
        error_id: the id under which the agent logged an unexpected failure
            (``data.error_id``), to quote when reporting it; else ``None``.
    """

    def __init__(self, code: int, message: str, data: JSONValue = None) -> None:
        # Only a short text ``data`` adds to the message; structured data stays in ``data``.
        extra = isinstance(data, str) and data != message and "\n" not in data and len(data) < 300
        text = f"{message}: {data}" if extra else message
        error_id = data.get("error_id") if isinstance(data, dict) else None
        if not isinstance(error_id, str) or not _ERROR_ID.fullmatch(error_id):
            error_id = None  # shown to users: only a short, plain token
        if error_id is not None:
            text = f"{text} (error id {error_id})"
        super().__init__(text)
        self.code = code
        self.message = message
        self.data = data
        self.error_id = error_id


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


class StoreError(FabricError):
    """A conversation store refused an operation or could not perform it."""


class ConversationExists(StoreError):
    """A conversation with this id is already stored.

    Attributes:
        conversation_id: the id that is taken.
    """

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"conversation {conversation_id!r} already exists; load it or choose another id"
        )
        self.conversation_id = conversation_id


class ConversationNotFound(StoreError):
    """No conversation with this id is stored (never created, deleted or expired).

    Attributes:
        conversation_id: the id that was looked up.
    """

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"conversation {conversation_id!r} does not exist (never created, deleted "
            "or expired after being idle); create it first"
        )
        self.conversation_id = conversation_id


class VersionConflict(StoreError):
    """A turn was committed against a version that another turn already replaced.

    Attributes:
        conversation_id: the conversation concerned.
        expected_version: the version the caller based its turn on.
        actual_version: the version found in the store.
    """

    def __init__(self, conversation_id: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"conversation {conversation_id!r} is at version {actual_version}, not "
            f"{expected_version}: another turn was committed meanwhile; reload it and retry"
        )
        self.conversation_id = conversation_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class StoreUnavailable(StoreError):
    """The store's backend is down or unreachable.

    Attributes:
        url: where the store lives, without credentials.
        reason: what the backend or the operating system reported.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"conversation store {url} is unavailable ({reason}); "
            "turns will work again when it is back"
        )
        self.url = url
        self.reason = reason


class OpenFailed(FabricError):
    """The conversation could not be started or resumed; the message says why."""


class ChatInputError(ValueError):
    """A caller's input is outside what the chat agent accepts; the message says why."""


_GATEWAY_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    """A failure the HTTP gateway answers with ``status`` and the OpenAI error body.

    Args:
        status: the HTTP status.
        message: what went wrong and what to do about it.
        code: a stable code clients can branch on.
        param: the request field at fault, if one is.
        headers: extra response headers (e.g. ``WWW-Authenticate``, ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    @property
    def type(self) -> str:
        """The OpenAI error type for the status."""
        return _GATEWAY_ERROR_TYPES.get(self.status, "server_error")

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {...}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
