"""The caller's span of a call or stream (when tracing is on).

A CLIENT span per call, child of the caller's current span (an agent
handler calling another agent nests its call under its own span). The
request carries it in ``meta.traceparent`` and ``traceId``. The span ends
with the call: a NACK records its code (``fame.nack.code``), an error reply
its JSON-RPC code and our ``data.code``, a timeout or a cancel its status.
A stream's span has events for the first item and the end.

Only called when :data:`famefabric.observability.tracing.ACTIVE`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from famefabric.errors import NoRoute, OperationTimeout, RemoteError
from famefabric.observability import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span


def start(method: str, address: str, request: dict[str, Any], *, streaming: bool) -> Span:
    """Start the span of a call and put its context in the request."""
    span = tracing.start(
        method,
        kind="CLIENT",
        attributes={
            "rpc.system": "jsonrpc",
            "rpc.method": method,
            "fame.address": address,
            "fame.stream": streaming,
        },
    )
    tracing.inject(span, request)
    return span


def end(span: Span, error: BaseException | None = None) -> None:
    """End a call's span, recording how it failed if it did."""
    if error is not None:
        if isinstance(error, NoRoute):
            tracing.fail(span, error.code, **{"fame.nack.code": error.code})
        elif isinstance(error, RemoteError):
            attributes: dict[str, Any] = {"rpc.jsonrpc.error_code": error.code}
            if isinstance(error.data, dict) and type(error.data.get("code")) is str:
                attributes["fame.error.code"] = error.data["code"][:100]
            tracing.fail(span, "error reply", **attributes)
        elif isinstance(error, OperationTimeout):
            tracing.fail(span, "timeout")
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):
            tracing.fail(span, "cancelled")
        else:
            tracing.fail(span, type(error).__name__)
    span.end()
