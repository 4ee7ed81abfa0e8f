"""Calls and streams through a scripted sentinel: correlation, errors, cancel notices."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from typing import Any

import pytest
from fake_sentinel import WAIT, FakeConnection, FakeSentinel, Wire

from famefabric.errors import (
    ConnectionClosed,
    FabricError,
    LocalProtocolError,
    NoRoute,
    OperationTimeout,
    RemoteError,
)
from famefabric.node import Node
from famefabric.node.correlation import STREAM_BUFFER
from famefabric.protocol.frames import Data, Envelope

URL = "ws://fake:8000/fame/v1/attach/ws/downstream"


def make_node(sentinel: FakeSentinel, **options: Any) -> Node:
    options.setdefault("default_timeout", WAIT)
    return Node(admission_url=URL, connect=sentinel.connect, **options)


def assert_cancel_notice(notice: Wire, request: Wire) -> None:
    assert notice["to"] == request["to"]
    assert notice["corrId"] == request["corrId"]
    assert notice["frame"]["type"] == "DeliveryAck"
    assert notice["frame"]["ok"] is False
    assert notice["frame"]["code"] == "CANCELLED"
    assert notice["frame"]["refId"] == request["id"]
    assert "replyTo" not in notice


async def test_call_sends_a_request_shaped_like_the_reference(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        task = asyncio.create_task(
            node.call("echo@fame.fabric", "echo", {"args": [], "kwargs": {"text": "hi"}}, timeout=5)
        )
        connection = sentinel.current
        request = await connection.request()
        payload = request["frame"]["payload"]
        assert payload == {
            "jsonrpc": "2.0",
            "id": payload["id"],
            "method": "echo",
            "params": {"args": [], "kwargs": {"text": "hi"}},
        }
        assert request["corrId"] == payload["id"]
        assert request["rtype"] == 2
        assert request["to"] == "echo@fame.fabric"
        assert request["replyTo"] == node.reply_address
        deadline = request["meta"]["deadline"]
        assert abs(deadline - (time.time() + 5) * 1000) < 1000
        await connection.result(request, "hi")
        async with asyncio.timeout(WAIT):
            assert await task == "hi"
        assert node.pending_calls == 0


async def test_call_returns_none_for_a_response_without_result(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        task = asyncio.create_task(node.call("echo@fame.fabric", "nothing", None))
        request = await sentinel.current.request()
        await sentinel.current.answer(request, {"jsonrpc": "2.0", "id": request["corrId"]})
        async with asyncio.timeout(WAIT):
            assert await task is None


async def test_call_raises_remote_error_with_code_message_and_data(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        task = asyncio.create_task(node.call("echo@fame.fabric", "tasks/get", {}))
        request = await sentinel.current.request()
        error = {"code": -32603, "message": "Internal error", "data": "Duplicate task: C"}
        await sentinel.current.answer(
            request, {"jsonrpc": "2.0", "id": request["corrId"], "error": error}
        )
        with pytest.raises(RemoteError) as caught:
            async with asyncio.timeout(WAIT):
                await task
        assert (caught.value.code, caught.value.message, caught.value.data) == (
            -32603,
            "Internal error",
            "Duplicate task: C",
        )


async def test_nack_fails_the_call_immediately_with_no_route(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        task = asyncio.create_task(node.call("nobody@fame.fabric", "echo", {}, timeout=60))
        request = await sentinel.current.request()
        started = time.monotonic()
        await sentinel.current.nack(request)
        with pytest.raises(NoRoute) as caught:
            async with asyncio.timeout(WAIT):
                await task
        assert time.monotonic() - started < 1.0
        assert caught.value.address == "nobody@fame.fabric"
        assert caught.value.code == "NO_ROUTE"
        assert caught.value.reason == "Unroutable to nobody@fame.fabric"
        assert node.pending_calls == 0


async def test_nack_with_another_ref_id_is_ignored(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        task = asyncio.create_task(node.call("echo@fame.fabric", "echo", 1))
        request = await sentinel.current.request()
        await sentinel.current.nack({**request, "id": "someotherenvelope"})
        await sentinel.current.result(request, 1)
        async with asyncio.timeout(WAIT):
            assert await task == 1


async def test_timeout_raises_and_sends_a_cancel_notice(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        with pytest.raises(
            OperationTimeout, match=r"^no reply from 'slow@fame.fabric' to work within 0.05 s$"
        ):
            await node.call("slow@fame.fabric", "work", {}, timeout=0.05)
        request = await sentinel.current.request()
        notice = await sentinel.current.next("DeliveryAck")
        assert_cancel_notice(notice, request)
        assert node.pending_calls == 0
        # A late reply is dropped quietly.
        await sentinel.current.result(request, "late")


async def test_cancelling_a_call_sends_a_cancel_notice(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        task = asyncio.create_task(node.call("slow@fame.fabric", "work", {}))
        request = await sentinel.current.request()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        assert_cancel_notice(await sentinel.current.next("DeliveryAck"), request)
        assert node.pending_calls == 0


async def test_call_to_an_invalid_address_is_refused(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        with pytest.raises(LocalProtocolError, match="cannot call 'nobody': invalid address"):
            await node.call("nobody", "echo", {})


async def test_unserialisable_params_are_refused(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        with pytest.raises(LocalProtocolError, match="not JSON"):
            await node.call("echo@fame.fabric", "echo", {"x": object()})
        assert node.pending_calls == 0


async def test_many_calls_leave_nothing_behind(sentinel: FakeSentinel) -> None:
    sentinel.on_envelope = sentinel.echo
    sentinel.record = False
    async with make_node(sentinel) as node:
        for i in range(200):  # warm up caches and the allocator
            await node.call("echo@fame.fabric", "echo", i)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for i in range(2000):
                assert await node.call("echo@fame.fabric", "echo", {"i": i}) == {"i": i}
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        assert node.pending_calls == 0
        growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        # The reference client keeps ~4 KB per call; 2,000 calls would be ~8 MB.
        assert growth < 64 * 1024, growth


async def test_concurrent_calls_are_matched_by_correlation_id(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        tasks = [asyncio.create_task(node.call("echo@fame.fabric", "echo", i)) for i in range(50)]
        requests = [await sentinel.current.request() for _ in range(50)]
        for request in reversed(requests):
            await sentinel.current.result(request, request["frame"]["payload"]["params"] * 10)
        async with asyncio.timeout(WAIT):
            assert await asyncio.gather(*tasks) == [i * 10 for i in range(50)]


async def answer_stream(
    connection: FakeConnection, request: Wire, items: list[Any], end: Any
) -> None:
    for item in items:
        await connection.result(request, item)
    if end is not None:
        await connection.answer(request, end)


async def test_stream_yields_items_until_the_end_marker(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        received: list[Any] = []

        async def consume() -> None:
            async for item in node.stream("echo@fame.fabric", "count", {"n": 3}):
                received.append(item)

        task = asyncio.create_task(consume())
        request = await sentinel.current.request()
        assert request["rtype"] == 4
        assert request["corrId"] == request["frame"]["payload"]["id"]
        rpc_id = request["corrId"]
        await answer_stream(
            sentinel.current, request, [{"i": 0}, {"i": 1}, 2], {"jsonrpc": "2.0", "id": rpc_id}
        )
        async with asyncio.timeout(WAIT):
            await task
        assert received == [{"i": 0}, {"i": 1}, 2]
        assert node.pending_calls == 0


async def test_stream_treats_an_explicit_null_result_as_the_end(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        stream = node.stream("echo@fame.fabric", "count", {})
        first = asyncio.create_task(anext(stream))
        request = await sentinel.current.request()
        await answer_stream(
            sentinel.current,
            request,
            [7],
            {"jsonrpc": "2.0", "id": request["corrId"], "result": None},
        )
        async with asyncio.timeout(WAIT):
            assert await first == 7
            assert [item async for item in stream] == []


async def test_stream_error_after_items_raises_remote_error(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        received: list[Any] = []

        async def consume() -> None:
            async for item in node.stream("echo@fame.fabric", "count_then_fail", {}):
                received.append(item)

        task = asyncio.create_task(consume())
        request = await sentinel.current.request()
        error = {
            "jsonrpc": "2.0",
            "id": request["corrId"],
            "error": {"code": -32603, "message": "failed after 2"},
        }
        await answer_stream(sentinel.current, request, [0, 1], error)
        with pytest.raises(RemoteError, match="failed after 2"):
            async with asyncio.timeout(WAIT):
                await task
        assert received == [0, 1]
        assert node.pending_calls == 0


async def test_stream_nack_raises_no_route(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        task = asyncio.create_task(anext(node.stream("nobody@fame.fabric", "count", {})))
        request = await sentinel.current.request()
        await sentinel.current.nack(request)
        with pytest.raises(NoRoute, match=r"nobody@fame\.fabric"):
            async with asyncio.timeout(WAIT):
                await task


async def test_stream_idle_timeout_raises_and_sends_a_cancel_notice(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        stream = node.stream("slow@fame.fabric", "count", {}, idle_timeout=0.1)
        task = asyncio.create_task(anext(stream))
        request = await sentinel.current.request()
        await sentinel.current.result(request, 1)
        assert await asyncio.wait_for(task, WAIT) == 1
        with pytest.raises(
            OperationTimeout, match=r"^stream from 'slow@fame.fabric' went quiet for 0.1 s$"
        ):
            await anext(stream)
        assert_cancel_notice(await sentinel.current.next("DeliveryAck"), request)
        assert node.pending_calls == 0
        with pytest.raises(StopAsyncIteration):
            await anext(stream)


async def test_stream_overall_timeout(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        stream = node.stream("slow@fame.fabric", "count", {}, timeout=0.1, idle_timeout=10)
        with pytest.raises(OperationTimeout, match=r"did not end within 0\.1 s"):
            async for _ in stream:
                pass
        request = await sentinel.current.request()
        assert "deadline" in request["meta"]
        assert_cancel_notice(await sentinel.current.next("DeliveryAck"), request)


async def test_closing_a_stream_early_sends_a_cancel_notice(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        stream = node.stream("echo@fame.fabric", "count", {})
        task = asyncio.create_task(anext(stream))
        request = await sentinel.current.request()
        await sentinel.current.result(request, 0)
        assert await asyncio.wait_for(task, WAIT) == 0
        await stream.aclose()
        assert_cancel_notice(await sentinel.current.next("DeliveryAck"), request)
        assert node.pending_calls == 0
        await stream.aclose()


async def test_breaking_out_of_a_stream_sends_a_cancel_notice(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:

        async def first_item() -> Any:
            async for item in node.stream("echo@fame.fabric", "count", {}):
                return item
            return None

        task = asyncio.create_task(first_item())
        request = await sentinel.current.request()
        await sentinel.current.result(request, 5)
        assert await asyncio.wait_for(task, WAIT) == 5
        gc.collect()
        assert_cancel_notice(await sentinel.current.next("DeliveryAck"), request)
        assert node.pending_calls == 0


async def test_cancelling_a_stream_consumer_sends_a_cancel_notice(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        stream = node.stream("echo@fame.fabric", "count", {})
        task = asyncio.create_task(anext(stream))
        request = await sentinel.current.request()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        assert_cancel_notice(await sentinel.current.next("DeliveryAck"), request)
        assert node.pending_calls == 0


async def test_stream_that_is_never_iterated_sends_nothing(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        async with node.stream("echo@fame.fabric", "count", {}):
            pass
        await node.send(Envelope(to="probe@fame.fabric", frame=Data(payload="probe")))
        first = await sentinel.current.next()
        assert first["to"] == "probe@fame.fabric"


async def test_stream_overflow_fails_and_stops_the_agent(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        stream = node.stream("echo@fame.fabric", "flood", {})
        task = asyncio.create_task(anext(stream))
        request = await sentinel.current.request()
        for i in range(STREAM_BUFFER + 2):
            await sentinel.current.result(request, i)
        assert await asyncio.wait_for(task, WAIT) == 0
        # Let the reader take everything in before consuming.
        await sentinel.current.send({"frame": {"type": "NodeHeartbeatAck"}})
        async with asyncio.timeout(WAIT):
            with pytest.raises(FabricError, match="overflowed"):
                async for _ in stream:
                    pass
        assert_cancel_notice(await sentinel.current.next("DeliveryAck"), request)


async def test_at_least_once_reply_is_acknowledged(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        task = asyncio.create_task(node.call("echo@fame.fabric", "echo", 1))
        request = await sentinel.current.request()
        await sentinel.current.answer(
            request,
            {"jsonrpc": "2.0", "id": request["corrId"], "result": 1},
            id="replyenvelope001",
            replyTo="__sys__@/S0/agent",
            rtype=1,
        )
        assert await asyncio.wait_for(task, WAIT) == 1
        ack = await sentinel.current.next("DeliveryAck")
        assert ack["to"] == "__sys__@/S0/agent"
        assert ack["corrId"] == request["corrId"]
        assert ack["frame"] == {"type": "DeliveryAck", "ok": True, "refId": "replyenvelope001"}


async def test_call_after_close_raises_connection_closed(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        pass
    with pytest.raises(ConnectionClosed):
        await node.call("echo@fame.fabric", "echo", 1)


async def test_close_fails_pending_calls(sentinel: FakeSentinel) -> None:
    async with make_node(sentinel) as node:
        task = asyncio.create_task(node.call("echo@fame.fabric", "echo", 1))
        await sentinel.current.request()
        await node.close()
        with pytest.raises(
            ConnectionClosed, match=r"closed while calling echo on echo@fame\.fabric"
        ):
            await asyncio.wait_for(task, WAIT)
