"""Pending calls: futures and stream buffers keyed by correlation id."""

from __future__ import annotations

import pytest

from famefabric.errors import ConnectionClosed, FabricError, NoRoute, RemoteError
from famefabric.node.correlation import STREAM_BUFFER, PendingCall, PendingCalls, remote_error


def unary(call_id: str = "c1") -> PendingCall:
    return PendingCall(call_id, f"env-{call_id}", "echo@fame.fabric", "echo", streaming=False)


def streaming(call_id: str = "s1") -> PendingCall:
    return PendingCall(call_id, f"env-{call_id}", "echo@fame.fabric", "count", streaming=True)


async def test_a_reply_resolves_the_call_and_leaves_the_table() -> None:
    table = PendingCalls()
    call = unary()
    table.add(call)
    assert table.on_reply("c1", {"jsonrpc": "2.0", "id": "c1", "result": 42}) is call
    assert len(table) == 0
    assert call.future is not None and await call.future == 42


async def test_an_error_reply_fails_the_call_with_remote_error() -> None:
    table = PendingCalls()
    call = unary()
    table.add(call)
    table.on_reply(
        "c1",
        {"jsonrpc": "2.0", "id": "c1", "error": {"code": -32601, "message": "Method not found"}},
    )
    assert call.future is not None
    with pytest.raises(RemoteError) as caught:
        await call.future
    assert (caught.value.code, caught.value.message, caught.value.data) == (
        -32601,
        "Method not found",
        None,
    )


def test_remote_error_tolerates_odd_shapes() -> None:
    error = remote_error({"code": "x", "message": 5})
    assert (error.code, error.message) == (-32603, "5")


async def test_replies_for_unknown_calls_are_ignored() -> None:
    table = PendingCalls()
    assert table.on_reply("nobody", {"jsonrpc": "2.0", "id": "nobody", "result": 1}) is None
    assert table.on_reply(None, {}) is None


async def test_a_nack_needs_the_matching_ref_id() -> None:
    table = PendingCalls()
    call = unary()
    table.add(call)
    assert table.on_nack("c1", "some-other-envelope", "NO_ROUTE", "x") is None
    assert len(table) == 1
    assert (
        table.on_nack("c1", "env-c1", "CHILD_UNREACHABLE", "Unroutable to echo@fame.fabric") is call
    )
    assert len(table) == 0
    assert call.future is not None
    with pytest.raises(NoRoute) as caught:
        await call.future
    assert caught.value.code == "CHILD_UNREACHABLE"
    assert caught.value.reason == "Unroutable to echo@fame.fabric"


async def test_stream_buffers_items_until_the_end_marker() -> None:
    table = PendingCalls()
    call = streaming()
    table.add(call)
    for item in (1, {"a": None}, [2]):
        table.on_reply("s1", {"jsonrpc": "2.0", "id": "s1", "result": item})
    assert len(table) == 1
    table.on_reply("s1", {"jsonrpc": "2.0", "id": "s1"})
    assert len(table) == 0
    items = []
    while True:
        has_item, item = await call.next_item()
        if not has_item:
            break
        items.append(item)
    assert items == [1, {"a": None}, [2]]


async def test_stream_error_is_raised_after_the_buffered_items() -> None:
    call = streaming()
    call.accept({"jsonrpc": "2.0", "id": "s1", "result": 1})
    call.accept(
        {"jsonrpc": "2.0", "id": "s1", "error": {"code": -32603, "message": "failed after 1"}}
    )
    assert await call.next_item() == (True, 1)
    with pytest.raises(RemoteError, match="failed after 1"):
        await call.next_item()


async def test_stream_overflow_fails_the_stream() -> None:
    call = streaming()
    for i in range(STREAM_BUFFER):
        assert not call.accept({"jsonrpc": "2.0", "id": "s1", "result": i})
    assert call.accept({"jsonrpc": "2.0", "id": "s1", "result": "one too many"})
    for i in range(STREAM_BUFFER):
        assert await call.next_item() == (True, i)
    with pytest.raises(FabricError, match=f"consumer fell {STREAM_BUFFER} items behind"):
        await call.next_item()


async def test_dropping_a_connection_fails_only_the_calls_sent_on_it() -> None:
    table = PendingCalls()
    on_old, on_new, queued = unary("a"), unary("b"), unary("c")
    on_old.generation, on_new.generation = 1, 2
    for call in (on_old, on_new, queued):
        table.add(call)
    failed = table.fail_sent_on(1, lambda call: ConnectionClosed(f"lost {call.call_id}"))
    assert failed == [on_old]
    assert len(table) == 2
    assert on_old.future is not None
    with pytest.raises(ConnectionClosed, match="lost a"):
        await on_old.future
    table.fail_all(lambda call: ConnectionClosed("closing"))
    assert len(table) == 0
    for call in (on_new, queued):
        assert call.future is not None
        with pytest.raises(ConnectionClosed):
            await call.future


async def test_discard_marks_the_call_done_and_ignores_late_replies() -> None:
    table = PendingCalls()
    call = unary()
    table.add(call)
    table.discard(call)
    table.discard(call)
    assert call.done and len(table) == 0
    assert table.on_reply("c1", {"jsonrpc": "2.0", "id": "c1", "result": 1}) is None
    call.fail(ConnectionClosed("late"))
    assert call.future is not None and not call.future.done()
