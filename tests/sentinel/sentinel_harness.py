"""Sans-I/O helpers for the sentinel's session tests: a router fed by hand, envelope builders."""

from __future__ import annotations

from typing import Any

import orjson

from famefabric.protocol.ids import new_id
from famefabric.routing.permissions import Identity, Permissions
from famefabric.sentinel.actions import Action, Send
from famefabric.sentinel.inflight import InflightRequests
from famefabric.sentinel.limits import SentinelLimits
from famefabric.sentinel.pump import apply
from famefabric.sentinel.router import Router
from famefabric.sentinel.session import ChildSession

S = "sentinel01"


class Harness:
    """A router with sessions fed by hand; every Send is carried out into the queues."""

    def __init__(self, **limits: Any) -> None:
        self.router = Router(
            system_id=S, inflight=InflightRequests(), limits=SentinelLimits(**limits)
        )
        self.now = 100.0

    def session(
        self, node_id: str, *, identity: Identity | None = None, attach: bool = True
    ) -> ChildSession:
        session = ChildSession(self.router, node_id, now=self.now, identity=identity)
        if attach:
            ack = self.ack(self.feed(session, attach_frame(node_id)), session)
            assert ack["frame"]["ok"] is True, ack
        return session

    def feed(self, session: ChildSession, wire: dict[str, Any]) -> list[Action]:
        actions = session.receive(orjson.dumps(wire), self.now)
        apply(actions, self.now)
        return actions

    def taken(self, session: ChildSession) -> list[dict[str, Any]]:
        """Everything queued for ``session``, decoded, credit updates left out."""
        return [
            envelope
            for envelope in (orjson.loads(data) for data in session.outbound.take_all())
            if envelope["frame"]["type"] != "CreditUpdate"
        ]

    def ack(self, actions: list[Action], session: ChildSession) -> dict[str, Any]:
        sent = [a for a in actions if isinstance(a, Send) and a.target is session]
        assert sent, actions
        envelope: dict[str, Any] = orjson.loads(sent[-1].data)
        session.outbound.take_all()
        return envelope


def attach_frame(system_id: str, **frame: Any) -> dict[str, Any]:
    return {
        "id": new_id(),
        "corrId": "attach",
        "frame": {"type": "NodeAttach", "systemId": system_id, "instanceId": "i", **frame},
    }


def control(frame_type: str, **frame: Any) -> dict[str, Any]:
    return {"id": new_id(), "corrId": new_id(), "frame": {"type": frame_type, **frame}}


def request(
    caller: ChildSession, to: str | None, *, rtype: int = 2, meta: Any = None, **fields: Any
) -> dict[str, Any]:
    rpc_id = new_id()
    wire: dict[str, Any] = {
        "id": new_id(),
        "to": to,
        "replyTo": f"__rpc__x@{caller.path}",
        "corrId": rpc_id,
        "rtype": rtype,
        "frame": {
            "type": "Data",
            "payload": {"jsonrpc": "2.0", "id": rpc_id, "method": "echo", "params": {}},
        },
    }
    if meta is not None:
        wire["meta"] = meta
    wire.update(fields)
    return {k: v for k, v in wire.items() if v is not None}


def reply_to(forwarded: dict[str, Any], result: Any = "ok") -> dict[str, Any]:
    rpc_id = forwarded["frame"]["payload"]["id"]
    return {
        "id": new_id(),
        "to": forwarded["replyTo"],
        "corrId": rpc_id,
        "frame": {"type": "Data", "payload": {"jsonrpc": "2.0", "id": rpc_id, "result": result}},
    }


def nack_of(envelopes: list[dict[str, Any]]) -> dict[str, Any]:
    nacks = [e for e in envelopes if e["frame"]["type"] == "DeliveryAck"]
    assert len(nacks) == 1, envelopes
    assert nacks[0]["frame"]["ok"] is False
    return nacks[0]


def identity(
    subject: str, *, serve: tuple[str, ...] = (), call: tuple[str, ...] = (), **kw: Any
) -> Identity:
    return Identity(subject, serve=Permissions(serve), call=Permissions(call), **kw)
