"""The client WebSocket transport writes a burst of sends with few socket writes.

A real ``websockets`` server on 127.0.0.1 receives what our client
:func:`~famefabric.transport.websocket.connect` sends; the client's asyncio
transport is wrapped to count its writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.server import ServerConnection, serve

from famefabric.errors import ConnectionClosed
from famefabric.transport.websocket import WebSocketTransport, connect

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0
"""Seconds any single wait may take before the test fails."""


@dataclass
class Peer:
    """The client end, what the server received, and the client's socket writes."""

    client: WebSocketTransport
    received: asyncio.Queue[bytes | str]
    closed: asyncio.Event
    writes: list[int] = field(default_factory=list)


@asynccontextmanager
async def peer() -> AsyncIterator[Peer]:
    received: asyncio.Queue[bytes | str] = asyncio.Queue()
    closed = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        async for message in connection:
            await received.put(message)
        closed.set()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = await connect(f"ws://127.0.0.1:{port}/burst")
        made = Peer(client, received, closed)
        transport = client.connection.transport
        write: Callable[[bytes], None] = transport.write

        def counting_write(data: bytes) -> None:
            made.writes.append(len(data))
            write(data)

        transport.write = counting_write  # type: ignore[method-assign]
        try:
            yield made
        finally:
            await client.close()


async def take(made: Peer, count: int) -> list[bytes | str]:
    async with asyncio.timeout(WAIT):
        return [await made.received.get() for _ in range(count)]


async def test_sends_of_one_loop_turn_go_out_in_two_writes_in_order() -> None:
    messages = [f"envelope {i}".encode() for i in range(40)]
    async with peer() as made:
        await asyncio.gather(*(made.client.send(message) for message in messages))
        assert await take(made, len(messages)) == messages
        # The first at once, the 39 others together at the end of the turn.
        assert len(made.writes) == 2


async def test_a_lone_send_is_written_at_once() -> None:
    async with peer() as made:
        await made.client.send(b"alone")
        assert made.writes != []  # written before the loop turned
        assert await take(made, 1) == [b"alone"]
        await made.client.send(b"later")
        assert await take(made, 1) == [b"later"]
        assert len(made.writes) == 2


async def test_close_writes_what_is_pending_first() -> None:
    messages = [f"last words {i}".encode() for i in range(5)]
    async with peer() as made:
        for message in messages:
            await made.client.send(message)  # none of these suspends: one turn
        await made.client.close()
        assert await take(made, len(messages)) == messages
        async with asyncio.timeout(WAIT):
            await made.closed.wait()
        with pytest.raises(ConnectionClosed):
            await made.client.send(b"after the close")
