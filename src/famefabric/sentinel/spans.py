"""The sentinel's span per forwarded request (when tracing is on).

A request's span starts when the sentinel routes it, as a child of the
caller's span in ``meta.traceparent``, and replaces that ``traceparent``
with its own, so the agent's span nests under it. It stays open while the
request is in flight and ends when the reply (or the stream's end) passes
back, when the sentinel NACKs the request, or when it forgets it at its
deadline. Attributes: the method, the destination address and node, the
routing outcome, the depth of the destination's outbound queue when the
request joined it (the wait ahead of it), and the NACK code of a refusal.

Only called when :data:`famefabric.observability.tracing.ACTIVE`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from famefabric.observability import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from famefabric.sentinel.inflight import InflightRequest
    from famefabric.sentinel.outbound import OutboundQueue

SPAN_NAME = "sentinel forward"


def _method(envelope: dict[str, Any]) -> str | None:
    frame = envelope.get("frame")
    payload = frame.get("payload") if isinstance(frame, dict) else None
    method = payload.get("method") if isinstance(payload, dict) else None
    return method if type(method) is str and len(method) <= 200 else None


def _attributes(envelope: dict[str, Any], source: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"rpc.system": "jsonrpc", "fame.source": source or ""}
    method = _method(envelope)
    if method is not None:
        attributes["rpc.method"] = method
    to = envelope.get("to")
    if type(to) is str:
        attributes["fame.to"] = to
    return attributes


def forwarding(
    envelope: dict[str, Any], source: str | None, destination: str, queue: OutboundQueue
) -> Span:
    """Start the span of a request about to go to ``destination``; put it in the envelope."""
    attributes = _attributes(envelope, source)
    attributes["fame.destination"] = destination
    attributes["fame.route"] = "deliver"
    attributes["fame.queue.messages"] = len(queue)
    attributes["fame.queue.bytes"] = queue.bytes
    span = tracing.start(SPAN_NAME, meta=envelope.get("meta"), attributes=attributes)
    tracing.inject(span, envelope)
    return span


def refused(
    span: Span | None, envelope: dict[str, Any], source: str | None, code: str, reason: str
) -> None:
    """Record a NACKed request: on its forwarding span if it has one, else on a new span."""
    if span is None:
        attributes = _attributes(envelope, source)
        attributes["fame.route"] = "reject"
        span = tracing.start(SPAN_NAME, meta=envelope.get("meta"), attributes=attributes)
    tracing.fail(span, code, **{"fame.nack.code": code, "fame.nack.reason": reason[:200]})
    span.end()


def answered(entry: InflightRequest, envelope: dict[str, Any]) -> None:
    """End the span of a request whose reply (or last stream item) passed back."""
    span = entry.span
    if span is None:
        return
    entry.span = None
    frame = envelope.get("frame")
    if isinstance(frame, dict):
        if frame.get("type") == "DeliveryAck" and frame.get("ok") is False:
            code = frame.get("code")
            tracing.fail(span, str(code), **{"fame.nack.code": str(code)})
        else:
            payload = frame.get("payload")
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                code = error.get("code")
                tracing.fail(span, "error reply", **{"rpc.jsonrpc.error_code": _int(code)})
    span.end()


def failed(entry: InflightRequest, code: str, reason: str) -> None:
    """End the span of a tracked request the sentinel NACKs (its node went away, say)."""
    span = entry.span
    if span is None:
        return
    entry.span = None
    tracing.fail(span, code, **{"fame.nack.code": code, "fame.nack.reason": reason[:200]})
    span.end()


def expired(entries: Iterable[InflightRequest]) -> None:
    """End the spans of requests forgotten at their deadline."""
    for entry in entries:
        span = entry.span
        if span is not None:
            entry.span = None
            tracing.fail(span, "unanswered before its deadline")
            span.end()


def _int(value: object) -> int:
    return value if type(value) is int else 0
