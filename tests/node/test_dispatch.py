"""Bound addresses: which handler serves an envelope, binding on the wire, replies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fake_sentinel import WAIT, FakeSentinel, Wire

from famefabric.errors import FabricError, LocalProtocolError
from famefabric.node import Node
from famefabric.node.dispatch import Binding, Bindings
from famefabric.protocol.frames import Data, DeliveryAck, Envelope

URL = "ws://fake:8000/fame/v1/attach/ws/downstream"


async def ignore(envelope: Envelope) -> None:
    return None


def table(*addresses: str, capabilities: tuple[str, ...] = ()) -> Bindings:
    bindings = Bindings()
    for address in addresses:
        bindings.add(Binding(address, ignore, capabilities))
    return bindings


@pytest.mark.parametrize(
    ("bound", "to", "served_by"),
    [
        ("echo@fame.fabric", "echo@fame.fabric", "echo@fame.fabric"),
        ("echo@fame.fabric", "echo@/S/N", "echo@fame.fabric"),
        ("echo@fame.fabric", "echo@N.fame.fabric", "echo@fame.fabric"),
        ("echo@*.fame.fabric", "echo@fame.fabric", "echo@*.fame.fabric"),
        ("echo@*.fame.fabric", "echo@any.fame.fabric", "echo@*.fame.fabric"),
        ("echo@*.fame.fabric", "echo@N.fame.fabric", "echo@*.fame.fabric"),
        ("echo@fame.fabric", "ghost@/S/N", None),
        ("echo@fame.fabric", "echo@/S/other", None),
        ("echo@fame.fabric", "echo@other.fame.fabric", None),
        ("echo@fame.fabric", "chat@fame.fabric", None),
        ("echo@*.fame.fabric", "echo@other.domain", None),
    ],
)
def test_resolve_finds_the_binding_that_serves_an_address(
    bound: str, to: str, served_by: str | None
) -> None:
    binding = table(bound).resolve(to, path="/S/N", system_id="N")
    assert (binding.address if binding else None) == served_by


def test_resolve_without_bindings_or_path() -> None:
    assert Bindings().resolve("echo@fame.fabric", path="/S/N", system_id="N") is None
    assert table("echo@fame.fabric").resolve("echo@/S/N", path=None, system_id="N") is None


def test_capability_routed_envelopes_go_to_a_binding_with_every_capability() -> None:
    bindings = table("a@fame.fabric", capabilities=("cap.one",))
    bindings.add(Binding("b@fame.fabric", ignore, ("cap.one", "cap.two")))
    found = bindings.by_capabilities(("cap.two", "cap.one"))
    assert found is not None and found.address == "b@fame.fabric"
    assert bindings.by_capabilities(("cap.three",)) is None


def make_node(sentinel: FakeSentinel, **options: Any) -> Node:
    options.setdefault("default_timeout", WAIT)
    return Node(admission_url=URL, connect=sentinel.connect, **options)


class Recorder:
    """A handler that records envelopes and answers requests with their params."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.seen: asyncio.Queue[Envelope] = asyncio.Queue()

    async def __call__(self, envelope: Envelope) -> None:
        self.seen.put_nowait(envelope)
        frame = envelope.frame
        if (
            isinstance(frame, Data)
            and isinstance(frame.payload, dict)
            and "method" in frame.payload
        ):
            payload = frame.payload
            await self.node.reply(
                envelope, {"jsonrpc": "2.0", "id": payload["id"], "result": payload["params"]}
            )

    async def next(self) -> Envelope:
        async with asyncio.timeout(WAIT):
            return await self.seen.get()


def request(to: str, *, rpc_id: str = "rpc-1", corr_id: str | None = None, **fields: Any) -> Wire:
    return {
        "id": "requestenvelope1",
        "traceId": "trace0000000001",
        "to": to,
        "replyTo": "__rpc__caller00000001@/S0/caller",
        "rtype": 2,
        "corrId": corr_id or rpc_id,
        "frame": {
            "type": "Data",
            "payload": {"jsonrpc": "2.0", "id": rpc_id, "method": "echo", "params": [1]},
        },
        **fields,
    }


async def test_bind_sends_bind_then_advertise_and_waits_for_acks(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        await node.bind("echo@fame.fabric", Recorder(node))
        bind, advertise = await sentinel.current.next(), await sentinel.current.next()
        path = node.assigned_path
        assert bind["frame"] == {
            "type": "AddressBind",
            "address": "echo@fame.fabric",
            "physicalPath": path,
        }
        assert advertise["frame"] == {
            "type": "CapabilityAdvertise",
            "capabilities": ["fame.capability.agent"],
            "address": "echo@fame.fabric",
        }
        for control in (bind, advertise):
            assert control["replyTo"] == f"__sys__@{path}"
            assert control["rtype"] == 1
            assert len(control["corrId"]) == 16
            assert "to" not in control


async def test_bind_refused_raises_naming_the_address(sentinel: FakeSentinel) -> None:
    sentinel.control_ok = False
    async with make_node(sentinel) as node:
        with pytest.raises(
            FabricError,
            match=r"cannot bind 'echo@fame.fabric': the sentinel refused \(DENIED: bindings are closed\)",
        ):
            await node.bind("echo@fame.fabric", Recorder(node))
        # Not remembered: nothing is delivered to it.
        await sentinel.current.send(request("echo@fame.fabric"))
        reply = await sentinel.current.next("Data")
        assert reply["frame"]["payload"]["error"]["code"] == -32601


async def test_bind_rejects_an_invalid_address(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        with pytest.raises(LocalProtocolError, match="cannot bind 'echo': invalid address"):
            await node.bind("echo", Recorder(node))


async def test_requests_reach_the_handler_under_every_form_of_the_address(
    sentinel: FakeSentinel,
) -> None:
    async with make_node(sentinel) as node:
        handler = Recorder(node)
        await node.bind("echo@fame.fabric", handler, capabilities=())
        connection = sentinel.current
        for to in (
            "echo@fame.fabric",
            f"echo@{node.assigned_path}",
            f"echo@{node.system_id}.fame.fabric",
        ):
            await connection.send(request(to))
            assert (await handler.next()).to == to
            await connection.next("Data")


async def test_reply_uses_the_json_rpc_id_as_correlation_and_keeps_the_trace(
    sentinel: FakeSentinel,
) -> None:
    async with make_node(sentinel) as node:
        await node.bind("echo@fame.fabric", Recorder(node))
        await sentinel.current.send(
            request("echo@fame.fabric", rpc_id="rpc-id-1", corr_id="corr-1")
        )
        reply = await sentinel.current.next("Data")
        assert reply["to"] == "__rpc__caller00000001@/S0/caller"
        assert reply["corrId"] == "rpc-id-1"
        assert reply["traceId"] == "trace0000000001"
        assert "replyTo" not in reply and "rtype" not in reply
        assert reply["frame"]["payload"] == {"jsonrpc": "2.0", "id": "rpc-id-1", "result": [1]}


async def test_reply_to_an_at_least_once_request_acknowledges_it_first(
    sentinel: FakeSentinel,
) -> None:
    async with make_node(sentinel) as node:

        async def two_replies(envelope: Envelope) -> None:
            await node.reply(envelope, {"jsonrpc": "2.0", "id": "rpc-1", "result": 1})
            await node.reply(envelope, {"jsonrpc": "2.0", "id": "rpc-1"})

        await node.bind("echo@fame.fabric", two_replies)
        await sentinel.current.send(request("echo@fame.fabric", rtype=3))
        ack = await sentinel.current.next()
        while ack["frame"]["type"] != "DeliveryAck":
            ack = await sentinel.current.next()
        assert ack["to"] == "__rpc__caller00000001@/S0/caller"
        assert ack["corrId"] == "rpc-1"
        assert ack["frame"] == {"type": "DeliveryAck", "ok": True, "refId": "requestenvelope1"}
        first, second = await sentinel.current.next(), await sentinel.current.next()
        assert [first["frame"]["type"], second["frame"]["type"]] == ["Data", "Data"]


async def test_request_without_reply_to_is_not_answered(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        handler = Recorder(node)
        await node.bind("echo@fame.fabric", handler, capabilities=())
        await sentinel.current.next("AddressBind")
        wire = request("echo@fame.fabric")
        del wire["replyTo"]
        await sentinel.current.send(wire)
        await handler.next()
        await sentinel.current.send(request("echo@fame.fabric", rpc_id="second"))
        reply = await sentinel.current.next("Data")
        assert reply["corrId"] == "second"


async def test_cancel_notices_reach_the_handler(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        handler = Recorder(node)
        await node.bind("echo@fame.fabric", handler)
        notice = {
            "to": "echo@fame.fabric",
            "corrId": "rpc-1",
            "frame": {"type": "DeliveryAck", "ok": False, "code": "CANCELLED", "refId": "x"},
        }
        await sentinel.current.send(notice)
        seen = await handler.next()
        assert isinstance(seen.frame, DeliveryAck) and seen.corr_id == "rpc-1"


async def test_handlers_run_concurrently(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        release = asyncio.Event()
        started: list[str] = []

        async def slow(envelope: Envelope) -> None:
            started.append(envelope.corr_id or "")
            if len(started) == 3:
                release.set()
            await release.wait()
            await node.reply(envelope, {"jsonrpc": "2.0", "id": envelope.corr_id, "result": "done"})

        await node.bind("slow@fame.fabric", slow)
        for i in range(3):
            await sentinel.current.send(request("slow@fame.fabric", rpc_id=f"r{i}"))
        replies = [await sentinel.current.next("Data") for _ in range(3)]
        assert sorted(r["corrId"] for r in replies) == ["r0", "r1", "r2"]


async def test_unbound_name_at_our_path_is_dropped_and_answered(
    sentinel: FakeSentinel, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_node(sentinel) as node:
        handler = Recorder(node)
        await node.bind("echo@fame.fabric", handler)
        ghost = f"ghost@{node.assigned_path}"
        with caplog.at_level(logging.WARNING, logger="famefabric.node"):
            await sentinel.current.send(request(ghost))
            reply = await sentinel.current.next("Data")
        assert reply["corrId"] == "rpc-1"
        assert reply["frame"]["payload"]["error"] == {
            "code": -32601,
            "message": f"no handler for {ghost} on this node",
        }
        assert any(
            f"dropping Data for {ghost}: no handler" in r.getMessage() for r in caplog.records
        )
        # The reader is still serving the bound address.
        await sentinel.current.send(request("echo@fame.fabric", rpc_id="after"))
        assert (await sentinel.current.next("Data"))["corrId"] == "after"


async def test_a_failing_handler_does_not_stop_the_reader(
    sentinel: FakeSentinel, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_node(sentinel) as node:
        calls = 0

        async def flaky(envelope: Envelope) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ValueError("kaboom")
            await node.reply(envelope, {"jsonrpc": "2.0", "id": envelope.corr_id, "result": "ok"})

        await node.bind("flaky@fame.fabric", flaky)
        with caplog.at_level(logging.ERROR, logger="famefabric.node"):
            await sentinel.current.send(request("flaky@fame.fabric", rpc_id="first"))
            await sentinel.current.send(request("flaky@fame.fabric", rpc_id="second"))
            assert (await sentinel.current.next("Data"))["corrId"] == "second"
        assert any("handler for flaky@fame.fabric failed" in r.getMessage() for r in caplog.records)


async def test_unbind_stops_delivery(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        await node.bind("echo@fame.fabric", Recorder(node))
        await node.unbind("echo@fame.fabric")
        kinds = [w["frame"]["type"] for w in sentinel.current.all[1:]]
        assert kinds == [
            "AddressBind",
            "CapabilityAdvertise",
            "AddressUnbind",
            "CapabilityWithdraw",
        ]
        await sentinel.current.send(request("echo@fame.fabric"))
        reply = await sentinel.current.next("Data")
        assert reply["frame"]["payload"]["error"]["code"] == -32601


async def test_a_node_calls_its_own_address_in_process(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        await node.bind("echo@fame.fabric", Recorder(node))
        assert await node.call("echo@fame.fabric", "echo", {"x": 1}, timeout=1) == {"x": 1}
        await node.bind("count@fame.fabric", count_handler(node))
        assert [item async for item in node.stream("count@fame.fabric", "count", 3)] == [0, 1, 2]
        sent = [w["frame"]["type"] for w in sentinel.current.all]
        assert "Data" not in sent


def count_handler(node: Node) -> Any:
    async def count(envelope: Envelope) -> None:
        assert isinstance(envelope.frame, Data)
        payload = envelope.frame.payload
        for i in range(payload["params"]):
            await node.reply(envelope, {"jsonrpc": "2.0", "id": payload["id"], "result": i})
        await node.reply(envelope, {"jsonrpc": "2.0", "id": payload["id"]})

    return count


async def test_acks_in_the_system_inbox_are_ignored_quietly(
    sentinel: FakeSentinel, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_node(sentinel) as node:
        with caplog.at_level(logging.WARNING, logger="famefabric.node"):
            await sentinel.current.send(
                {
                    "to": f"__sys__@{node.assigned_path}",
                    "corrId": "c",
                    "frame": {"type": "DeliveryAck", "ok": True, "refId": "r"},
                }
            )
            await sentinel.current.send(request(f"ghost@{node.assigned_path}"))
            await sentinel.current.next("Data")
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "ghost@" in warnings[0]


async def test_capability_routed_requests_reach_the_advertising_binding(
    sentinel: FakeSentinel,
) -> None:
    async with make_node(sentinel) as node:
        handler = Recorder(node)
        await node.bind("echo@fame.fabric", handler, capabilities=("cap.math",))
        wire = request("echo@fame.fabric", capabilities=["cap.math"])
        del wire["to"]
        await sentinel.current.send(wire)
        assert (await handler.next()).capabilities == ("cap.math",)
        assert (await sentinel.current.next("Data"))["frame"]["payload"]["result"] == [1]
        wire = request("echo@fame.fabric", rpc_id="r2", capabilities=["cap.other"])
        del wire["to"]
        await sentinel.current.send(wire)
        reply = await sentinel.current.next("Data")
        assert reply["frame"]["payload"]["error"]["message"] == (
            "no handler for capabilities ['cap.other'] on this node"
        )
