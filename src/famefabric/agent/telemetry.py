"""Metrics and spans of an agent's requests (:class:`~famefabric.agent.server.AgentServer`).

Each request counts once in ``fame_agent_calls{operation, outcome}`` and
``fame_agent_handler_seconds``; the operation label is the method when the
agent has it, else ``unknown``, so a caller cannot grow the label set. When
tracing is on, the handler runs inside a SERVER span, child of the span in
the request's ``meta.traceparent``; an error answer records its JSON-RPC code
and our ``data.code``, a caller's cancel notice the status ``cancelled``.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from famefabric.observability import metrics, tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

OK = "ok"
ERROR = "error"
BUSY = "busy"
CANCELLED = "cancelled"


_CALLS: dict[tuple[str, str], Any] = {}
_SECONDS: dict[str, Any] = {}
# The labelled children, looked up once each: ``labels()`` takes a lock and
# checks its arguments on every call. Bounded like the label set itself (the
# agent's operations and "unknown", times the four outcomes).


def _calls(operation: str, outcome: str) -> Any:
    child = _CALLS.get((operation, outcome))
    if child is None:
        child = _CALLS[operation, outcome] = metrics.AGENT_CALLS.labels(operation, outcome)
    return child


def _seconds(operation: str) -> Any:
    child = _SECONDS.get(operation)
    if child is None:
        child = _SECONDS[operation] = metrics.AGENT_SECONDS.labels(operation)
    return child


class RequestTelemetry:
    """What one request records; ``outcome`` and ``error`` are set as it runs."""

    __slots__ = ("error", "operation", "outcome", "span", "started")

    def __init__(self, method: str, known: Collection[str], address: str, meta: object) -> None:
        self.operation = method if method in known else "unknown"
        self.started = time.perf_counter()
        self.outcome = OK
        self.error: dict[str, Any] | None = None
        self.span: Span | None = None
        if tracing.ACTIVE and not tracing.unsampled(meta):
            self.span = tracing.start(
                method if method in known else "unknown method",
                kind="SERVER",
                meta=meta,
                attributes={"rpc.system": "jsonrpc", "rpc.method": method, "fame.address": address},
            )

    def answered(self, payload: dict[str, Any]) -> None:
        """Note an answer sent; an error answer makes the outcome ``error``."""
        error = payload.get("error")
        if isinstance(error, dict):
            self.outcome = ERROR
            self.error = error

    def first_item(self) -> None:
        """Note a stream's first item on the span."""
        if self.span is not None:
            self.span.add_event("first item")

    def stream_ended(self) -> None:
        """Note a stream's end on the span."""
        if self.span is not None:
            self.span.add_event("end of stream")

    def finish(self) -> None:
        """Count the request and end its span."""
        _calls(self.operation, self.outcome).inc()
        _seconds(self.operation).observe(time.perf_counter() - self.started)
        span = self.span
        if span is None:
            return
        if self.outcome != OK:
            attributes: dict[str, Any] = {"fame.outcome": self.outcome}
            if self.error is not None:
                code = self.error.get("code")
                if type(code) is int:
                    attributes["rpc.jsonrpc.error_code"] = code
                data = self.error.get("data")
                if isinstance(data, dict) and type(data.get("code")) is str:
                    attributes["fame.error.code"] = data["code"][:100]
            tracing.fail(span, self.outcome, **attributes)
        span.end()
