"""Node lifecycle over a memory transport: attach, credits, send, close."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import pytest
from fake_sentinel import WAIT, FakeSentinel

from famefabric.envelope_log import EnvelopePrinter
from famefabric.errors import ConfigurationError, ConnectionClosed, LocalProtocolError
from famefabric.node import AttachRefused, LinkState, Node, NodeEvent
from famefabric.protocol.frames import Data, Envelope
from famefabric.protocol.ids import source_id

URL = "ws://fake:8000/fame/v1/attach/ws/downstream"


def make_node(sentinel: FakeSentinel, **options: Any) -> Node:
    options.setdefault("admission_url", URL)
    options.setdefault("default_timeout", WAIT)
    return Node(connect=sentinel.connect, **options)


async def test_attach_sends_node_attach_and_keeps_what_the_ack_says(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel, accepted_logicals=("fame.fabric",)) as node:
        connection = sentinel.current
        assert sentinel.urls == [f"{URL}/{node.system_id}"]
        assert connection.attach is not None
        attach = connection.attach
        assert attach["frame"] == {
            "type": "NodeAttach",
            "originType": "downstream",
            "systemId": node.system_id,
            "instanceId": attach["frame"]["instanceId"],
            "acceptedLogicals": ["fame.fabric"],
            "callbackGrants": [],
        }
        assert len(attach["frame"]["instanceId"]) == 16
        assert attach["seqId"] == 0 and attach["flowFlags"] == 1
        for absent in ("sid", "to", "replyTo", "rtype"):
            assert absent not in attach
        assert node.is_attached
        assert node.assigned_path == f"/S0/{node.system_id}"
        assert node.sentinel_id == "S0"
        assert node.routing_epoch == "epoch1"
        assert node.reply_address is not None
        assert node.reply_address.startswith("__rpc__")
        assert node.reply_address.endswith(f"@/S0/{node.system_id}")
    assert not node.is_attached
    assert connection.close_code == 1000


async def test_default_system_ids_differ_between_nodes(sentinel: FakeSentinel) -> None:
    first, second = make_node(sentinel), make_node(sentinel)
    assert first.system_id != second.system_id
    assert len(first.system_id) == 16


async def test_attach_refusal_raises_with_the_url_and_reason(sentinel: FakeSentinel) -> None:
    sentinel.attach_ok = False
    node = make_node(sentinel, system_id="n1")
    with pytest.raises(AttachRefused) as caught:
        await node.__aenter__()
    assert str(caught.value) == f"cannot attach to {URL}/n1: the sentinel refused: not welcome here"
    assert isinstance(caught.value, ConnectionClosed)


async def test_unreachable_sentinel_fails_fast_naming_the_url(sentinel: FakeSentinel) -> None:
    sentinel.refuse = ConnectionRefusedError("connection refused")
    node = make_node(sentinel, system_id="n1")
    with pytest.raises(
        ConnectionClosed, match=r"cannot connect to ws://fake:8000/.*/n1: connection refused"
    ):
        await node.__aenter__()
    assert len(sentinel.urls) == 1


async def test_initial_attempts_retry_with_backoff_then_give_up(sentinel: FakeSentinel) -> None:
    sentinel.refuse = ConnectionRefusedError("connection refused")
    events: list[NodeEvent] = []
    node = make_node(
        sentinel, system_id="n1", max_initial_attempts=3, backoff=lambda: iter([0.0] * 9)
    )
    node.add_listener(events.append)
    with pytest.raises(ConnectionClosed, match=r"cannot attach to .*/n1 after 3 attempts"):
        await node.__aenter__()
    assert len(sentinel.urls) == 3
    assert [e.kind for e in events] == ["reconnecting", "reconnecting"]


async def test_http_403_at_first_connect_is_not_retried(sentinel: FakeSentinel) -> None:
    sentinel.refuse = AttachRefused("refused with HTTP 403", status=403, reason="Forbidden")
    node = make_node(sentinel, max_initial_attempts=0, backoff=lambda: iter([0.0] * 9))
    with pytest.raises(ConnectionClosed, match="HTTP 403"):
        await node.__aenter__()
    assert len(sentinel.urls) == 1


async def test_a_401_refusal_is_final_and_keeps_its_status_and_reason(
    sentinel: FakeSentinel,
) -> None:
    sentinel.refuse = AttachRefused("refused with HTTP 401", status=401, reason="token expired")
    node = make_node(sentinel, max_initial_attempts=0, backoff=lambda: iter([0.0] * 9))
    with pytest.raises(AttachRefused) as caught:
        await node.__aenter__()
    assert (caught.value.status, caught.value.reason) == (401, "token expired")
    assert len(sentinel.urls) == 1
    assert node.state is LinkState.CLOSED


async def test_a_401_on_reconnect_stops_reconnecting(sentinel: FakeSentinel) -> None:
    node = make_node(sentinel, backoff=lambda: iter([0.0] * 100))
    events = Events(node)
    async with node:
        assert node.state is LinkState.READY
        sentinel.refuse = AttachRefused(
            "refused with HTTP 401: bad token", status=401, reason="bad token"
        )
        await sentinel.current.close()
        await events.wait("disconnected")
        gave_up = await events.wait("disconnected")
        assert gave_up.detail.startswith("gave up reconnecting: ")
        assert "bad token" in gave_up.detail
        assert node.state is LinkState.GAVE_UP
        with pytest.raises(ConnectionClosed, match="connection to sentinel is lost"):
            await node.send(Envelope(to="x@fame.fabric", frame=Data(payload=1)))
    assert len(sentinel.urls) == 2  # the first attach and one refused attempt
    assert node.state is LinkState.CLOSED


class RenewingNode(Node):
    """A node whose token provider could fetch a new token."""

    def _can_renew_token(self) -> bool:
        return True


async def test_a_401_is_retried_when_a_new_token_can_be_fetched(sentinel: FakeSentinel) -> None:
    attempts = 0

    def delays() -> Any:
        nonlocal attempts
        for _ in range(100):
            attempts += 1
            if attempts == 3:
                sentinel.refuse = None  # the new token is accepted
            yield 0.0

    node = RenewingNode(admission_url=URL, connect=sentinel.connect, backoff=delays)
    events = Events(node)
    async with node:
        sentinel.refuse = AttachRefused("refused with HTTP 401", status=401, reason="expired")
        await sentinel.current.close()
        await sentinel.nth_attach(2)
        await events.wait("attached")
        await events.wait("attached")
        assert node.state is LinkState.READY
    assert len(sentinel.urls) == 4  # first attach, two refusals, the renewed attach


async def test_closing_while_the_first_attach_waits_fails_the_attach(
    sentinel: FakeSentinel,
) -> None:
    sentinel.refuse = ConnectionRefusedError("connection refused")
    node = make_node(sentinel, max_initial_attempts=0, backoff=lambda: iter([30.0]))
    events = Events(node)
    entering = asyncio.ensure_future(node.__aenter__())
    await events.wait("reconnecting")  # sleeping before the second attempt
    assert node.state is LinkState.CONNECTING
    await node.close()
    with pytest.raises(ConnectionClosed, match="was closed while attaching"):
        await asyncio.wait_for(entering, WAIT)
    assert node.state is LinkState.CLOSED


async def test_states_follow_the_connection(sentinel: FakeSentinel) -> None:
    node = make_node(sentinel, backoff=lambda: iter([0.0] * 100))
    events = Events(node)
    assert node.state is LinkState.NEW
    async with node:
        assert node.state is LinkState.READY
        await node.bind("echo@fame.fabric", await echo_handler_for(node))
        sentinel.ack_control = False  # the re-bind after the next attach waits
        await sentinel.current.close()
        await events.wait("disconnected")
        await events.wait("attached")
        assert node.state is LinkState.RESTORING  # re-binding: envelopes queue
        assert node.is_attached
        sentinel.ack_control = True
        await sentinel.current.next("AddressBind")
    assert node.state is LinkState.CLOSED


async def test_initial_attempts_succeed_once_the_sentinel_answers(sentinel: FakeSentinel) -> None:
    sentinel.refuse = ConnectionRefusedError("connection refused")
    attempts = 0

    def delays() -> Any:
        for _ in range(5):
            nonlocal attempts
            attempts += 1
            if attempts == 2:
                sentinel.refuse = None
            yield 0.0

    async with make_node(sentinel, max_initial_attempts=0, backoff=delays) as node:
        assert node.is_attached
    assert len(sentinel.urls) == 3


async def test_attach_timeout(sentinel: FakeSentinel) -> None:
    async def never_answer(url: str) -> Any:
        from famefabric.transport.memory import memory_pair

        node_end, other = memory_pair()
        hold.append(other)
        return node_end

    hold: list[Any] = []
    node = Node(admission_url=URL, connect=never_answer, system_id="n1", attach_timeout=0.05)
    with pytest.raises(ConnectionClosed, match=r"no NodeAttachAck within 0.05 s"):
        await node.__aenter__()


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="admission_url='http://x' is not a WebSocket URL"):
        Node(admission_url="http://x")
    with pytest.raises(ConfigurationError, match="heartbeat_interval=0"):
        Node(heartbeat_interval=0)
    with pytest.raises(ConfigurationError, match="system_id='a/b' is not a valid path segment"):
        Node(system_id="a/b")


async def test_credit_update_after_every_24_envelopes_per_flow(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        connection = sentinel.current
        # The attach ack was the first envelope on the sentinel's flow.
        for _ in range(47):
            await connection.send({"frame": {"type": "NodeHeartbeatAck", "ok": True}})
        credits = [await connection.next("CreditUpdate"), await connection.next("CreditUpdate")]
        for credit in credits:
            assert credit["frame"] == {
                "type": "CreditUpdate",
                "flowId": "sentinelflow0000",
                "credits": 32,
            }
            assert credit["flowId"] == "sentinelflow0000"
            assert credit["seqId"] == 0 and credit["flowFlags"] == 2
            assert "sid" not in credit and "corrId" not in credit
        # Exactly at the 24th and 48th envelope of the flow.
        kinds = [w["frame"]["type"] for w in connection.all]
        assert kinds.count("CreditUpdate") == 2
        # Another flow has its own count.
        for _ in range(24):
            await connection.send(
                {"flowId": "otherflow0000000", "frame": {"type": "NodeHeartbeatAck"}}
            )
        credit = await connection.next("CreditUpdate")
        assert credit["frame"]["flowId"] == "otherflow0000000"
        assert node.is_attached


async def test_send_fills_ids_and_flow_fields(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        connection = sentinel.current
        await node.send(Envelope(to="x@fame.fabric", frame=Data(payload="one")))
        await node.send(Envelope(to="x@fame.fabric", frame=Data(payload="two")))
        first, second = await connection.request(), await connection.request()
        attach = connection.attach
        assert attach is not None
        assert first["frame"] == {"type": "Data", "payload": "one"}
        assert first["sid"] == source_id(f"/S0/{node.system_id}")
        assert len(first["id"]) == 16 and len(first["traceId"]) == 16
        assert first["ts"].endswith("Z")
        assert first["flowId"] == second["flowId"] == attach["flowId"]
        assert (first["seqId"], first["flowFlags"]) == (1, 0)
        assert (second["seqId"], second["flowFlags"]) == (2, 0)


async def test_oversize_envelope_is_refused(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        big = Envelope(to="x@fame.fabric", frame=Data(payload="x" * 262_144))
        with pytest.raises(
            LocalProtocolError,
            match=r"cannot send Data envelope to 'x@fame.fabric': it is 26\d+ bytes, more than the 262144 bytes",
        ):
            await node.send(big)
        await node.send(Envelope(to="x@fame.fabric", frame=Data(payload="x" * 200_000)))
        assert len((await sentinel.current.request())["frame"]["payload"]) == 200_000


async def test_close_is_idempotent_and_refuses_later_sends(sentinel: FakeSentinel) -> None:
    events: list[NodeEvent] = []
    node = make_node(sentinel)
    node.add_listener(events.append)
    async with node:
        await node.close()
        await node.close()
        with pytest.raises(ConnectionClosed, match=r"cannot send data frame: node .* is closed"):
            await node.send(Envelope(to="x@fame.fabric", frame=Data(payload=1)))
    await node.close()
    async with asyncio.timeout(WAIT):
        await sentinel.current.closed.wait()
    assert sentinel.current.close_code == 1000
    assert [e.kind for e in events] == ["attached", "disconnected"]


async def test_show_envelopes_prints_sent_and_received(sentinel: FakeSentinel) -> None:
    stream = io.StringIO()
    printer = EnvelopePrinter(stream=stream, colour=False)
    async with make_node(sentinel, show_envelopes=True, printer=printer):
        pass
    text = stream.getvalue()
    assert ": NodeAttach " in text and "sent envelope" in text
    assert ": NodeAttachAck " in text and "received envelope" in text


async def test_malformed_messages_are_dropped_and_the_reader_keeps_going(
    sentinel: FakeSentinel, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel.on_envelope = sentinel.echo
    async with make_node(sentinel) as node:
        connection = sentinel.current
        with caplog.at_level(logging.WARNING, logger="famefabric.node"):
            await connection.send_raw(b"not json")
            await connection.send_raw(b'{"no": "frame"}')
            await connection.send_raw(b'{"frame": {"type": "NodeAtach"}}')
            await connection.send_raw(b'{"to": "bad address", "frame": {"type": "Data"}}')
            await connection.send_raw('{"frame": {"type": "NodeHello"}}')
            assert await node.call("echo@fame.fabric", "echo", {"x": 1}) == {"x": 1}
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 4
        assert "unknown frame type 'NodeAtach'" in warnings[2]


class Events:
    """Collects node events; lets a test wait for one."""

    def __init__(self, node: Node) -> None:
        self.queue: asyncio.Queue[NodeEvent] = asyncio.Queue()
        self.seen: list[NodeEvent] = []
        node.add_listener(self._on)

    def _on(self, event: NodeEvent) -> None:
        self.seen.append(event)
        self.queue.put_nowait(event)

    async def wait(self, kind: str) -> NodeEvent:
        async with asyncio.timeout(WAIT):
            while True:
                event = await self.queue.get()
                if event.kind == kind:
                    return event


async def echo_handler_for(node: Node) -> Any:
    async def echo(envelope: Envelope) -> None:
        assert isinstance(envelope.frame, Data)
        payload = envelope.frame.payload
        await node.reply(
            envelope, {"jsonrpc": "2.0", "id": payload["id"], "result": payload["params"]}
        )

    return echo


async def test_heartbeats_are_sent_every_interval_and_acknowledged(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel, heartbeat_interval=0.01, heartbeat_timeout=5) as node:
        beats = [await sentinel.current.next("NodeHeartbeat") for _ in range(3)]
        assert [b["frame"] for b in beats] == [{"type": "NodeHeartbeat"}] * 3
        assert len({b["corrId"] for b in beats}) == 3
        assert all("to" not in b and "replyTo" not in b and "rtype" not in b for b in beats)
        assert node.is_attached


async def test_missing_heartbeat_acks_close_the_link_and_reconnect(sentinel: FakeSentinel) -> None:
    sentinel.ack_heartbeats = False
    node = make_node(
        sentinel,
        heartbeat_interval=0.01,
        heartbeat_timeout=0.05,
        backoff=lambda: iter([0.0] * 100),
    )
    events = Events(node)
    async with node:
        await node.bind("echo@fame.fabric", await echo_handler_for(node))
        first = await sentinel.nth_attach(1)
        async with asyncio.timeout(WAIT):
            await first.closed.wait()
        sentinel.ack_heartbeats = True
        assert first.close_code == 1000
        second = await sentinel.nth_attach(2)
        assert first.attach is not None and second.attach is not None
        assert first.attach["frame"]["instanceId"] != second.attach["frame"]["instanceId"]
        disconnected = await events.wait("disconnected")
        assert disconnected.detail.startswith("connection to sentinel is dead: ")
        reconnecting = await events.wait("reconnecting")
        assert reconnecting.delay == 0.0
        await events.wait("attached")
        rebind = await second.next("AddressBind")
        assert rebind["frame"]["address"] == "echo@fame.fabric"
        assert node.is_attached


async def test_a_new_routing_epoch_in_a_heartbeat_ack_triggers_a_rebind(
    sentinel: FakeSentinel,
) -> None:
    async with make_node(sentinel, heartbeat_interval=0.01, heartbeat_timeout=5) as node:
        await node.bind("echo@fame.fabric", await echo_handler_for(node))
        connection = sentinel.current
        await connection.next("CapabilityAdvertise")
        sentinel.epoch = "epoch2"
        rebind = await connection.next("AddressBind")
        assert rebind["frame"]["address"] == "echo@fame.fabric"
        await connection.next("CapabilityAdvertise")
        assert node.routing_epoch == "epoch2"
        assert len(sentinel.connections) == 1


async def test_call_in_flight_fails_at_once_when_the_link_drops(sentinel: FakeSentinel) -> None:
    node = make_node(sentinel, backoff=lambda: iter([0.0] * 100))
    async with node:
        task = asyncio.create_task(node.call("echo@fame.fabric", "work", {}, timeout=30))
        await sentinel.current.request()
        await sentinel.current.close(1000, "sentinel shutting down")
        with pytest.raises(ConnectionClosed) as caught:
            async with asyncio.timeout(WAIT):
                await task
        assert str(caught.value) == (
            "connection to sentinel lost while calling work on echo@fame.fabric; "
            "the call may or may not have run"
        )
        await sentinel.nth_attach(2)


async def test_reconnect_rebinds_and_recomputes_the_reply_address(sentinel: FakeSentinel) -> None:
    sentinel.on_envelope = sentinel.echo
    node = make_node(sentinel, backoff=lambda: iter([0.0] * 100))
    events = Events(node)
    async with node:
        await node.bind("echo@fame.fabric", await echo_handler_for(node))
        old_reply = node.reply_address
        sentinel.sentinel_id = "S1"
        sentinel.epoch = "epoch2"
        await sentinel.current.close()
        second = await sentinel.nth_attach(2)
        await events.wait("attached")
        await events.wait("attached")
        assert node.assigned_path == f"/S1/{node.system_id}"
        assert node.sentinel_id == "S1" and node.routing_epoch == "epoch2"
        assert node.reply_address != old_reply
        assert node.reply_address is not None and node.reply_address.endswith(
            f"@/S1/{node.system_id}"
        )
        bind = await second.next("AddressBind")
        assert bind["frame"]["physicalPath"] == f"/S1/{node.system_id}"
        assert await node.call("other@fame.fabric", "echo", 5) == 5
        request = next(w for w in second.all if w["frame"]["type"] == "Data")
        assert request["replyTo"] == node.reply_address


async def test_envelopes_sent_while_disconnected_are_flushed_after_reattach(
    sentinel: FakeSentinel,
) -> None:
    node = make_node(sentinel, backoff=lambda: iter([0.001] * 10_000))
    events = Events(node)
    async with node:
        await node.bind("echo@fame.fabric", await echo_handler_for(node))
        sentinel.refuse = ConnectionRefusedError("sentinel down")
        await sentinel.current.close()
        await events.wait("disconnected")
        assert not node.is_attached
        await node.send(Envelope(to="x@fame.fabric", frame=Data(payload="queued-1")))
        task = asyncio.create_task(node.call("echo2@fame.fabric", "echo", "queued-2", timeout=5))
        await asyncio.sleep(0)  # one turn: the call queues its request without waiting
        assert node.pending_calls == 1
        await node.send(Envelope(to="x@fame.fabric", frame=Data(payload="queued-3")))
        sentinel.refuse = None
        connection = await sentinel.nth_attach(2)
        kinds = []
        for _ in range(5):
            wire = await connection.next()
            kinds.append((wire["frame"]["type"], wire["frame"].get("payload")))
        assert kinds[:2] == [("AddressBind", None), ("CapabilityAdvertise", None)]
        assert kinds[2] == ("Data", "queued-1")
        assert kinds[3][0] == "Data" and kinds[3][1]["params"] == "queued-2"
        assert kinds[4] == ("Data", "queued-3")
        request = connection.all[4]  # after NodeAttach, bind, advertise, queued-1
        assert request["replyTo"] == node.reply_address
        await connection.result(request, "done")
        assert await asyncio.wait_for(task, WAIT) == "done"


async def test_queue_is_bounded_while_disconnected(sentinel: FakeSentinel) -> None:
    node = make_node(sentinel, backoff=lambda: iter([0.001] * 10_000), max_queued=1)
    events = Events(node)
    async with node:
        sentinel.refuse = ConnectionRefusedError("sentinel down")
        await sentinel.current.close()
        await events.wait("disconnected")
        await node.send(Envelope(to="x@fame.fabric", frame=Data(payload=1)))
        with pytest.raises(ConnectionClosed, match="1 envelopes are already queued"):
            await node.send(Envelope(to="x@fame.fabric", frame=Data(payload=2)))


async def test_without_reconnect_the_node_stays_down(sentinel: FakeSentinel) -> None:
    node = make_node(sentinel, reconnect=False)
    events = Events(node)
    async with node:
        await sentinel.current.close()
        await events.wait("disconnected")
        with pytest.raises(ConnectionClosed, match="connection to sentinel is lost"):
            await node.call("echo@fame.fabric", "echo", 1)
    assert len(sentinel.connections) == 1


async def test_running_out_of_backoff_delays_gives_up(sentinel: FakeSentinel) -> None:
    node = make_node(sentinel, backoff=lambda: iter([0.0, 0.0]))
    events = Events(node)
    async with node:
        sentinel.refuse = ConnectionRefusedError("sentinel down")
        await sentinel.current.close()
        await events.wait("disconnected")
        gave_up = await events.wait("disconnected")
        assert "gave up reconnecting" in gave_up.detail
        with pytest.raises(ConnectionClosed):
            await node.send(Envelope(to="x@fame.fabric", frame=Data(payload=1)))
    assert len(sentinel.urls) == 3


async def test_body_exception_propagates_unwrapped(sentinel: FakeSentinel) -> None:
    with pytest.raises(KeyError):
        async with make_node(sentinel):
            raise KeyError("mine")


async def test_sending_before_start_says_how_to_start(sentinel: FakeSentinel) -> None:
    node = make_node(sentinel)
    with pytest.raises(
        ConnectionClosed, match=r"is not started \(enter 'async with Node\(\.\.\.\)' first\)"
    ):
        await node.send(Envelope(to="x@fame.fabric", frame=Data(payload=1)))


async def test_a_binding_made_before_start_is_sent_after_the_attach(sentinel: FakeSentinel) -> None:
    node = make_node(sentinel)
    await node.bind("echo@fame.fabric", await echo_handler_for(node))
    async with node:
        bind = await sentinel.current.next("AddressBind")
        assert bind["frame"]["address"] == "echo@fame.fabric"
        await sentinel.current.next("CapabilityAdvertise")


def test_package_exports_the_public_names_it_defines() -> None:
    import famefabric.node as package

    assert sorted(package.__all__) == [
        "AttachRefused",
        "Handler",
        "LinkState",
        "Node",
        "NodeEvent",
        "Stream",
        "backoff_delays",
        "is_retryable",
    ]
    for name in package.__all__:
        value = getattr(package, name)
        module = getattr(value, "__module__", "")
        # AttachRefused lives with every other exception, in famefabric.errors.
        assert module.startswith("famefabric.node.") or name in ("Handler", "AttachRefused"), name
