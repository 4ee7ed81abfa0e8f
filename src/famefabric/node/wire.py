"""The application envelopes a node writes (PROTOCOL.md §3, §8).

Thin wrappers over :mod:`famefabric.protocol.envelopes` that read the clock:
each returns the JSON object of one envelope, ready for
:meth:`famefabric.node.link.Link.encode`, which adds ``sid`` and the flow
fields.
"""

from __future__ import annotations

import time
from typing import Any

from famefabric.clock import timestamp
from famefabric.errors import JSONValue
from famefabric.protocol import envelopes
from famefabric.protocol.codec import envelope_to_dict
from famefabric.protocol.envelopes import CANCELLED
from famefabric.protocol.frames import Envelope
from famefabric.protocol.ids import new_id

__all__ = [
    "CANCELLED",
    "cancel_notice",
    "delivery_ack",
    "delivery_ack_of",
    "outgoing",
    "reply",
    "request",
]


def outgoing(envelope: Envelope) -> dict[str, Any]:
    """The JSON object of an envelope the application sends, ``id``, ``traceId``, ``ts`` filled."""
    wire_obj = envelope_to_dict(envelope)
    if "id" not in wire_obj:
        wire_obj["id"] = new_id()
    if "traceId" not in wire_obj:
        wire_obj["traceId"] = new_id()
    if "ts" not in wire_obj:
        wire_obj["ts"] = timestamp()
    return wire_obj


def request(
    *,
    envelope_id: str,
    call_id: str,
    to: str,
    method: str,
    params: JSONValue,
    rtype: int,
    timeout: float | None,
    meta: dict[str, JSONValue] | None,
) -> dict[str, Any]:
    """A JSON-RPC request ``Data`` with ``corrId`` equal to the JSON-RPC id (§8.2).

    With a ``timeout``, ``meta.deadline`` carries the caller's deadline in
    unix milliseconds, so that an agent can skip work nobody waits for.
    """
    extra: dict[str, JSONValue] | None = None
    if timeout is not None or meta:
        extra = dict(meta or {})
        if timeout is not None:
            extra.setdefault("deadline", int((time.time() + timeout) * 1000))
    return envelopes.request(
        envelope_id=envelope_id,
        call_id=call_id,
        to=to,
        method=method,
        params=params,
        rtype=rtype,
        ts=timestamp(),
        meta=extra,
    )


def reply(request: Envelope, payload: dict[str, Any]) -> dict[str, Any]:
    """A reply ``Data``: ``corrId`` = the JSON-RPC id (§8.2), the request's ``traceId``."""
    rpc_id = payload.get("id") if isinstance(payload, dict) else None
    return envelopes.reply(
        to=request.reply_to,
        corr_id=str(rpc_id) if rpc_id is not None else request.corr_id,
        trace_id=request.trace_id,
        payload=payload,
        ts=timestamp(),
    )


def delivery_ack(
    *, to: str, corr_id: str | None, trace_id: str | None, ref_id: str
) -> dict[str, Any]:
    """A positive ``DeliveryAck`` for an envelope whose ``rtype`` asked for one (§8.4)."""
    return envelopes.delivery_ack(
        to=to, corr_id=corr_id, trace_id=trace_id, ref_id=ref_id, ts=timestamp()
    )


def delivery_ack_of(request: Envelope) -> dict[str, Any]:
    """The positive ``DeliveryAck`` of ``request``, sent to its ``replyTo`` before the reply."""
    assert request.reply_to is not None and request.id is not None
    return delivery_ack(
        to=request.reply_to, corr_id=request.corr_id, trace_id=request.trace_id, ref_id=request.id
    )


def cancel_notice(*, to: str, call_id: str, envelope_id: str) -> dict[str, Any]:
    """The NACK telling an agent that the caller of ``call_id`` stopped waiting (§11.2)."""
    return envelopes.cancel_notice(to=to, call_id=call_id, envelope_id=envelope_id, ts=timestamp())
