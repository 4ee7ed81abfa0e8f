"""Every envelope our nodes and sentinel build, as wire objects (PROTOCOL.md §3, §4, §8, §9).

Each builder returns the JSON object of one envelope (camelCase keys, no
null members), ready for one ``orjson.dumps``: the send and forwarding paths
work on dicts, not on :class:`~famefabric.protocol.frames.Envelope`
dataclasses, to stay fast. The flow fields (``flowId``, ``seqId``,
``flowFlags``) are stamped per hop by the connection that sends the object
(:meth:`famefabric.protocol.flow.FlowState.stamp_wire`), except where a
builder says otherwise.

This layer reads no clock: callers pass ``ts`` (``famefabric.clock.timestamp()``).

``rtype`` bits (§8.1) are named here too: a ``Data`` envelope whose ``rtype``
has :data:`EXPECTS_RESPONSE` bits is a request; :func:`is_request_rtype`.
"""

from __future__ import annotations

from typing import Any

from famefabric.errors import JSONValue
from famefabric.protocol.codec import frame_to_dict
from famefabric.protocol.frames import (
    FLOW_ACK,
    FLOW_RESET,
    INITIAL_CREDITS,
    RTYPE_REPLY,
    RTYPE_STREAM,
    Frame,
)
from famefabric.protocol.ids import new_id

VERSION = "1.0"

EXPECTS_RESPONSE = RTYPE_REPLY | RTYPE_STREAM
"""``rtype`` bits of a request that expects replies: a unary reply or a stream."""

CANCELLED = "CANCELLED"
"""NACK code of the notice a caller sends when it stops waiting (§11.2)."""


def is_request_rtype(rtype: object) -> bool:
    """Tell whether an ``rtype`` value marks a request that expects a response."""
    return type(rtype) is int and bool(rtype & EXPECTS_RESPONSE)


def request(
    *,
    envelope_id: str,
    call_id: str,
    to: str,
    method: str,
    params: JSONValue,
    rtype: int,
    ts: str,
    meta: dict[str, JSONValue] | None = None,
) -> dict[str, Any]:
    """A JSON-RPC request ``Data`` whose ``corrId`` is the JSON-RPC id (§8.2).

    ``replyTo`` is left out: the connection that sends it fills it in.
    """
    wire: dict[str, Any] = {
        "version": VERSION,
        "id": envelope_id,
        "traceId": new_id(),
        "to": to,
        "rtype": rtype,
        "corrId": call_id,
        "frame": {
            "type": "Data",
            "payload": {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params},
        },
        "ts": ts,
    }
    if meta:
        wire["meta"] = meta
    return wire


def reply(
    *, to: str | None, corr_id: str | None, trace_id: str | None, payload: JSONValue, ts: str
) -> dict[str, Any]:
    """A reply or stream item ``Data`` to a request's ``replyTo`` (§8.2, §8.3)."""
    return {
        "version": VERSION,
        "id": new_id(),
        "traceId": trace_id or new_id(),
        "to": to,
        "corrId": corr_id,
        "frame": {"type": "Data", "payload": payload},
        "ts": ts,
    }


def delivery_ack(
    *, to: str, corr_id: str | None, trace_id: str | None, ref_id: str, ts: str
) -> dict[str, Any]:
    """A positive ``DeliveryAck`` for an envelope whose ``rtype`` asked for one (§8.4)."""
    return {
        "version": VERSION,
        "id": new_id(),
        "traceId": trace_id or new_id(),
        "to": to,
        "corrId": corr_id,
        "frame": {"type": "DeliveryAck", "ok": True, "refId": ref_id},
        "ts": ts,
    }


def nack(
    *,
    to: str,
    corr_id: str | None,
    ref_id: str,
    code: str,
    reason: str,
    ts: str,
    trace_id: str | None = None,
    sid: str | None = None,
) -> dict[str, Any]:
    """A negative ``DeliveryAck`` (NACK) with the ``RESET`` flow flag (§7.6, §11.2)."""
    wire: dict[str, Any] = {
        "version": VERSION,
        "id": new_id(),
        "traceId": trace_id or new_id(),
        "to": to,
        "corrId": corr_id,
        "flowFlags": FLOW_RESET,
        "frame": {
            "type": "DeliveryAck",
            "ok": False,
            "code": code,
            "reason": reason,
            "refId": ref_id,
        },
        "ts": ts,
    }
    if sid is not None:
        wire["sid"] = sid
    return wire


def cancel_notice(*, to: str, call_id: str, envelope_id: str, ts: str) -> dict[str, Any]:
    """The NACK telling an agent that the caller of ``call_id`` stopped waiting (§11.2)."""
    return nack(
        to=to,
        corr_id=call_id,
        ref_id=envelope_id,
        code=CANCELLED,
        reason="the caller stopped waiting",
        ts=ts,
    )


def credit_update(flow_id: str, *, ts: str, credits: int = INITIAL_CREDITS) -> dict[str, Any]:
    """A hop-local ``CreditUpdate`` granting ``credits`` on ``flow_id`` (§4.9, §9).

    It carries its own flow fields (``seqId`` 0, ``ACK``): it is not stamped.
    """
    return {
        "version": VERSION,
        "id": new_id(),
        "traceId": new_id(),
        "flowId": flow_id,
        "seqId": 0,
        "flowFlags": FLOW_ACK,
        "frame": {"type": "CreditUpdate", "flowId": flow_id, "credits": credits},
        "ts": ts,
    }


def control_request(
    frame: dict[str, Any],
    *,
    envelope_id: str,
    corr_id: str,
    reply_to: str,
    rtype: int,
    ts: str,
) -> dict[str, Any]:
    """A node's control frame (``AddressBind``, ``CapabilityAdvertise``, …) asking for an ack."""
    return {
        "version": VERSION,
        "id": envelope_id,
        "traceId": new_id(),
        "replyTo": reply_to,
        "rtype": rtype,
        "corrId": corr_id,
        "frame": frame,
        "ts": ts,
    }


def heartbeat(*, ts: str) -> dict[str, Any]:
    """A ``NodeHeartbeat`` with a fresh ``corrId`` (§4.6)."""
    return {
        "version": VERSION,
        "id": new_id(),
        "traceId": new_id(),
        "corrId": new_id(),
        "frame": {"type": "NodeHeartbeat"},
        "ts": ts,
    }


def answer(
    frame: Frame,
    *,
    trace_id: str | None,
    corr_id: str | None,
    sid: str | None,
    ts: str,
) -> dict[str, Any]:
    """The sentinel's answer (an ack frame) to a node's control envelope (§4, §5.1).

    ``traceId`` and ``corrId`` echo the request's.
    """
    wire: dict[str, Any] = {"version": VERSION, "id": new_id()}
    if sid is not None:
        wire["sid"] = sid
    wire["traceId"] = trace_id or new_id()
    if corr_id is not None:
        wire["corrId"] = corr_id
    wire["frame"] = frame_to_dict(frame)
    wire["ts"] = ts
    return wire
