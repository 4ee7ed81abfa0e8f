"""Errors the gateway answers, in the OpenAI API's error body shape.

Every failure leaves as ``{"error": {"message", "type", "param", "code"}}``
with an HTTP status a client of the OpenAI API expects. Fabric failures are
translated by :func:`from_fabric_error`:

=============================================  ======  =========================
fabric failure                                 status  ``code``
=============================================  ======  =========================
no agent serves the address (``NO_ROUTE``)     503     ``agent_unavailable``
token lacks the permission (``FORBIDDEN``)     403     ``forbidden``
agent or sentinel too busy (``TOO_MANY_…``)    429     ``rate_limited``
unknown (or another user's) conversation       404     ``conversation_not_found``
a turn is running on the conversation          409     ``conversation_busy``
the LLM failed (``llm_*``)                     502     the agent's code
the agent's store is down                      503     ``store_unavailable``
no answer in time                              504     ``timeout``
=============================================  ======  =========================
"""

from __future__ import annotations

from famefabric.errors import (
    AttachRefused,
    ConnectionClosed,
    FabricError,
    GatewayError,
    NoRoute,
    OperationTimeout,
    RemoteError,
    StreamOverflow,
)
from famefabric.protocol import jsonrpc

__all__ = ["GatewayError", "from_attach_refused", "from_fabric_error", "invalid"]


def invalid(
    message: str, *, param: str | None = None, code: str = "invalid_request"
) -> GatewayError:
    """A 400 for a request that cannot be served as sent."""
    return GatewayError(400, message, code=code, param=param)


def _remote(exc: RemoteError, address: str) -> GatewayError:
    data = exc.data if isinstance(exc.data, dict) else {}
    code = data.get("code")
    code = code if isinstance(code, str) else None
    if code == "conversation_not_found":
        return GatewayError(404, exc.message, code=code)
    if code in ("conversation_busy", "conversation_changed", "conversation_exists"):
        return GatewayError(409, exc.message, code=code)
    if code is not None and code.startswith("llm_"):
        return GatewayError(502, exc.message, code=code)
    if code == "store_unavailable":
        return GatewayError(503, exc.message, code=code)
    if code == "forbidden":
        return GatewayError(403, exc.message, code=code)
    if code in ("too_many_requests", "rate_limited", "agent_busy"):
        return GatewayError(429, exc.message, code=code)
    if exc.code == jsonrpc.INVALID_PARAMS or code in ("invalid_params", "message_too_long"):
        return GatewayError(400, exc.message, code=code or "invalid_params")
    if exc.code == jsonrpc.METHOD_NOT_FOUND:
        return GatewayError(
            400,
            f"the agent at {address} does not answer this request ({exc.message}): "
            "use a chat agent's address as the model",
            code="unsupported_by_agent",
            param="model",
        )
    return GatewayError(
        502, f"the agent at {address} failed: {exc.message}", code=code or "agent_error"
    )


def from_fabric_error(exc: FabricError, address: str) -> GatewayError:
    """Translate a failure of a call to ``address`` into the gateway's answer."""
    if isinstance(exc, RemoteError):
        return _remote(exc, address)
    if isinstance(exc, NoRoute):
        if exc.code == "FORBIDDEN":
            return GatewayError(
                403,
                f"your token may not call {address}: {exc.reason or 'forbidden'}",
                code="forbidden",
            )
        if exc.code in ("TOO_MANY_REQUESTS", "DESTINATION_BUSY"):
            return GatewayError(
                429,
                f"{address} is busy ({exc.code}): try again shortly",
                code="rate_limited",
                headers={"Retry-After": "1"},
            )
        if exc.code == "MESSAGE_TOO_LARGE":
            return GatewayError(413, str(exc), code="message_too_large")
        return GatewayError(
            503,
            f"no agent serves {address} ({exc.code}): is it running? (start it with "
            "'fame agent chat' or 'make start')",
            code="agent_unavailable",
        )
    if isinstance(exc, OperationTimeout):
        return GatewayError(504, f"{address} did not answer in time: {exc}", code="timeout")
    if isinstance(exc, StreamOverflow):
        return GatewayError(502, str(exc), code="stream_overflow")
    if isinstance(exc, AttachRefused):
        return from_attach_refused(exc)
    if isinstance(exc, ConnectionClosed):
        return GatewayError(
            503,
            f"the gateway lost its link to the fabric ({exc}); try again",
            code="fabric_unavailable",
        )
    return GatewayError(502, f"the call to {address} failed: {exc}", code="fabric_error")


def from_attach_refused(exc: AttachRefused) -> GatewayError:
    """Translate the sentinel's refusal of a user's link."""
    if exc.status == 401:
        return GatewayError(
            401,
            f"the fabric refused your token: {exc.reason or 'invalid token'}",
            code="invalid_token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if exc.status == 403:
        return GatewayError(403, f"the fabric refused your token: {exc.reason}", code="forbidden")
    if exc.status in (429, 503):
        return GatewayError(
            503 if exc.status == 503 else 429,
            f"the fabric is not accepting connections now ({exc.reason}); try again shortly",
            code="fabric_busy",
            headers={"Retry-After": "1"},
        )
    return GatewayError(503, f"cannot reach the fabric: {exc}", code="fabric_unavailable")
