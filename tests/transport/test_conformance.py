"""What every transport promises, checked on each one the same way.

The same tests run over the in-memory pair and over a real WebSocket on
127.0.0.1 (our client ``connect`` against a ``websockets`` server, each end
wrapped in :class:`WebSocketTransport`). A new transport joins by adding a
pair factory to ``PAIRS``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest
from websockets.asyncio.server import ServerConnection, serve

from famefabric.errors import ConnectionClosed
from famefabric.transport.base import Transport
from famefabric.transport.memory import MemoryTransport, memory_pair
from famefabric.transport.websocket import WebSocketTransport, connect

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0
"""Seconds any single receive may take before the test fails."""


@dataclass
class Pair:
    """Two connected ends, and how to make one of them send a text message."""

    left: Transport
    right: Transport
    send_text: Callable[[Transport, str], Awaitable[None]]


async def _memory_text(end: Transport, text: str) -> None:
    assert isinstance(end, MemoryTransport)
    await end.send(text)  # type: ignore[arg-type]  # text reaches the peer as str


async def _websocket_text(end: Transport, text: str) -> None:
    assert isinstance(end, WebSocketTransport)
    await end.connection.send(text)


@asynccontextmanager
async def memory() -> AsyncIterator[Pair]:
    left, right = memory_pair()
    try:
        yield Pair(left, right, _memory_text)
    finally:
        await left.close()


@asynccontextmanager
async def websocket() -> AsyncIterator[Pair]:
    accepted: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(connection: ServerConnection) -> None:
        await accepted.put(connection)
        await connection.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = await connect(f"ws://127.0.0.1:{port}/pair")
        async with asyncio.timeout(WAIT):
            connection = await accepted.get()
        far = WebSocketTransport(connection, description=f"peer of port {port}")
        try:
            yield Pair(client, far, _websocket_text)
        finally:
            await client.close()
            await far.close()


PAIRS: dict[str, Callable[[], AbstractAsyncContextManager[Pair]]] = {
    "memory": memory,
    "websocket": websocket,
}


@pytest.fixture(params=sorted(PAIRS))
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    async with PAIRS[request.param]() as made:
        yield made


async def receive(end: Transport) -> bytes | str:
    async with asyncio.timeout(WAIT):
        return await end.receive()


async def test_messages_arrive_whole_and_in_order_in_both_directions(pair: Pair) -> None:
    messages = [b"", b"x", b"\x00\xff" * 1000, *(f"m{i}".encode() for i in range(50))]
    for message in messages:
        await pair.left.send(message)
    for message in reversed(messages):
        await pair.right.send(message)
    assert [await receive(pair.right) for _ in messages] == messages
    assert [await receive(pair.left) for _ in messages] == list(reversed(messages))


async def test_a_message_of_the_largest_envelope_size_goes_through(pair: Pair) -> None:
    message = bytes(range(256)) * 1024  # 262 144 bytes
    await pair.left.send(message)
    assert await receive(pair.right) == message


async def test_concurrent_senders_on_one_end_keep_each_senders_order(pair: Pair) -> None:
    async def sender(tag: str) -> None:
        for i in range(40):
            await pair.left.send(f"{tag}{i:02d}".encode())

    await asyncio.gather(sender("a"), sender("b"), sender("c"))
    received = [await receive(pair.right) for _ in range(120)]
    assert isinstance(received[0], bytes)
    for tag in "abc":
        mine = [m for m in received if isinstance(m, bytes) and m.startswith(tag.encode())]
        assert mine == [f"{tag}{i:02d}".encode() for i in range(40)]


async def test_text_messages_are_received_as_str(pair: Pair) -> None:
    await pair.send_text(pair.left, '{"frame": {"type": "NodeHeartbeat"}}')
    assert await receive(pair.right) == '{"frame": {"type": "NodeHeartbeat"}}'


async def test_a_close_reaches_a_pending_receive_with_its_code_and_reason(pair: Pair) -> None:
    waiting = asyncio.ensure_future(receive(pair.left))
    await asyncio.sleep(0)  # let the receive start waiting
    await pair.right.close(1008, "refused")
    with pytest.raises(ConnectionClosed) as closed:
        await waiting
    assert (closed.value.code, closed.value.reason) == (1008, "refused")


async def test_messages_sent_before_a_close_are_delivered_first(pair: Pair) -> None:
    await pair.left.send(b"one")
    await pair.left.send(b"two")
    await pair.left.close(1000, "done")
    assert await receive(pair.right) == b"one"
    assert await receive(pair.right) == b"two"
    with pytest.raises(ConnectionClosed) as closed:
        await receive(pair.right)
    assert closed.value.code == 1000


async def test_sending_after_a_close_raises_connection_closed_on_either_end(pair: Pair) -> None:
    await pair.left.close(1000, "bye")
    with pytest.raises(ConnectionClosed):
        await pair.left.send(b"late")
    with pytest.raises(ConnectionClosed):
        await receive(pair.right)
    with pytest.raises(ConnectionClosed):
        await pair.right.send(b"late too")


async def test_close_is_idempotent_and_the_first_code_wins(pair: Pair) -> None:
    await pair.left.close(1001, "going away")
    await pair.left.close(1000, "again")
    await pair.right.close()
    with pytest.raises(ConnectionClosed) as closed:
        await receive(pair.right)
    assert (closed.value.code, closed.value.reason) == (1001, "going away")


async def test_every_end_describes_itself(pair: Pair) -> None:
    for end in (pair.left, pair.right):
        assert isinstance(end.description, str) and end.description
