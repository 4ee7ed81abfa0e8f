"""Per-connection state: flow stamping, credit cadence, bounds, and the close protocol."""

from __future__ import annotations

import asyncio

import pytest

from famefabric.errors import ConnectionClosed
from famefabric.sentinel.connection import MAX_FLOWS, MAX_PENDING, ChildConnection
from famefabric.transport import memory_pair


async def make_connection() -> tuple[ChildConnection, object]:
    node_end, sentinel_end = memory_pair()
    loop = asyncio.get_running_loop()
    connection = ChildConnection(sentinel_end, "child", sentinel_path="/S", now=loop.time())
    return connection, node_end


async def test_each_connection_has_its_own_flow_epoch_and_path() -> None:
    first, _ = await make_connection()
    second, _ = await make_connection()
    assert first.path == "/S/child"
    assert first.flow_id != second.flow_id
    assert first.epoch != second.epoch
    assert len(first.epoch) == 16


async def test_sequence_ids_count_per_flow_with_syn_first() -> None:
    connection, _ = await make_connection()
    assert connection.stamp("f") == (0, 1)
    assert connection.stamp("f") == (1, 0)
    assert connection.stamp("g") == (0, 1)
    connection.forget_flows(["f"])
    assert connection.stamp("f") == (0, 1)


async def test_credits_are_due_after_every_24_envelopes_of_a_flow() -> None:
    connection, _ = await make_connection()
    due = [n for n in range(1, 73) if connection.count_received("f")]
    assert due == [24, 48, 72]
    assert connection.received_flows() == ["f"]


async def test_flow_state_is_bounded() -> None:
    connection, _ = await make_connection()
    for n in range(MAX_FLOWS + 10):
        connection.stamp(f"f{n}")
        connection.count_received(f"f{n}")
    assert len(connection.received_flows()) == MAX_FLOWS
    assert connection.stamp("f0") == (0, 1)  # the oldest was forgotten


async def test_the_pre_attach_buffer_is_bounded() -> None:
    connection, _ = await make_connection()
    for _ in range(MAX_PENDING):
        assert connection.buffer({"frame": {"type": "Data"}}, 10)
    assert not connection.buffer({"frame": {"type": "Data"}}, 10)
    assert len(connection.take_pending()) == MAX_PENDING
    assert connection.pending == []


async def test_supervise_closes_an_idle_link() -> None:
    connection, node_end = await make_connection()
    async with asyncio.timeout(2):
        await connection.supervise(0.05)
    assert connection.closing
    with pytest.raises(ConnectionClosed) as closed:
        await node_end.receive()  # type: ignore[attr-defined]
    assert closed.value.code == 1000


async def test_supervise_closes_on_request_with_the_first_code() -> None:
    connection, node_end = await make_connection()
    async with asyncio.TaskGroup() as task_group:
        task_group.create_task(connection.supervise(None))
        connection.request_close(1008, "refused")
        connection.request_close(1000, "later")
    with pytest.raises(ConnectionClosed) as closed:
        await node_end.receive()  # type: ignore[attr-defined]
    assert (closed.value.code, closed.value.reason) == (1008, "refused")


async def test_traffic_keeps_a_link_open_past_the_idle_timeout() -> None:
    connection, _ = await make_connection()
    loop = asyncio.get_running_loop()
    async with asyncio.TaskGroup() as task_group:
        supervisor = task_group.create_task(connection.supervise(0.1))
        for _ in range(6):
            connection.last_seen = loop.time()
            await asyncio.sleep(0.04)
        assert not connection.closing
        supervisor.cancel()
