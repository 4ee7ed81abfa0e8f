"""The application envelopes a node writes, as wire objects (PROTOCOL.md §3, §8).

Each builder returns the JSON object of one envelope with camelCase keys,
ready for :meth:`famefabric.node.link.Link.encode`, which adds ``sid`` and
the flow fields. Building the object directly (rather than an
:class:`~famefabric.protocol.frames.Envelope` first) keeps the send path to
one dict and one ``orjson.dumps``.
"""

from __future__ import annotations

import time
from typing import Any

from famefabric.clock import timestamp
from famefabric.errors import JSONValue
from famefabric.protocol.frames import FLOW_RESET, Envelope
from famefabric.protocol.ids import new_id

CANCELLED = "CANCELLED"
"""NACK code of the notice a caller sends when it stops waiting."""


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

    ``replyTo`` is left out: it is filled by the connection that sends it.
    With a ``timeout``, ``meta.deadline`` carries the caller's deadline in
    unix milliseconds, so that an agent can skip work nobody waits for.
    """
    wire: dict[str, Any] = {
        "version": "1.0",
        "id": envelope_id,
        "traceId": new_id(),
        "to": to,
        "rtype": rtype,
        "corrId": call_id,
        "frame": {
            "type": "Data",
            "payload": {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params},
        },
        "ts": timestamp(),
    }
    if timeout is not None or meta:
        extra = dict(meta or {})
        if timeout is not None:
            extra.setdefault("deadline", int((time.time() + timeout) * 1000))
        wire["meta"] = extra
    return wire


def reply(request: Envelope, payload: dict[str, Any]) -> dict[str, Any]:
    """A reply ``Data``: ``corrId`` = the JSON-RPC id (§8.2), the request's ``traceId``."""
    rpc_id = payload.get("id") if isinstance(payload, dict) else None
    return {
        "version": "1.0",
        "id": new_id(),
        "traceId": request.trace_id or new_id(),
        "to": request.reply_to,
        "corrId": str(rpc_id) if rpc_id is not None else request.corr_id,
        "frame": {"type": "Data", "payload": payload},
        "ts": timestamp(),
    }


def delivery_ack(
    *, to: str, corr_id: str | None, trace_id: str | None, ref_id: str
) -> dict[str, Any]:
    """A positive ``DeliveryAck`` for an envelope whose ``rtype`` asked for one (§8.4)."""
    return {
        "version": "1.0",
        "id": new_id(),
        "traceId": trace_id or new_id(),
        "to": to,
        "corrId": corr_id,
        "frame": {"type": "DeliveryAck", "ok": True, "refId": ref_id},
        "ts": timestamp(),
    }


def cancel_notice(*, to: str, call_id: str, envelope_id: str) -> dict[str, Any]:
    """The NACK telling an agent that the caller of ``call_id`` stopped waiting (§11.2)."""
    return {
        "version": "1.0",
        "id": new_id(),
        "traceId": new_id(),
        "to": to,
        "corrId": call_id,
        "flowFlags": FLOW_RESET,
        "frame": {
            "type": "DeliveryAck",
            "ok": False,
            "code": CANCELLED,
            "reason": "the caller stopped waiting",
            "refId": envelope_id,
        },
        "ts": timestamp(),
    }
