"""The reader's fairness: a connection with a backlog lets the others run (no sockets)."""

from __future__ import annotations

import asyncio
import itertools

import orjson
import pytest
from sentinel_harness import Harness, request

from famefabric.errors import ConnectionClosed
from famefabric.sentinel import pump


class BufferedTransport:
    """A transport that already holds ``messages``: ``receive`` never suspends."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages
        self.taken = 0

    @property
    def description(self) -> str:
        return "buffered"

    async def send(self, message: bytes) -> None:
        pass

    async def receive(self) -> bytes:
        if self.taken == len(self.messages):
            raise ConnectionClosed("buffered: no more messages")
        self.taken += 1
        return self.messages[self.taken - 1]

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


@pytest.mark.parametrize("backlog", [pump.FAIR_SHARE * 3, 1000])
async def test_a_reader_with_a_backlog_yields_to_the_loop_every_fair_share(backlog: int) -> None:
    h = Harness()
    flooder = h.session("flooder")
    messages = [orjson.dumps(request(flooder, "nobody@fame.fabric")) for _ in range(backlog)]
    transport = BufferedTransport(messages)
    seen: list[int] = []

    async def other_connection() -> None:
        while transport.taken < backlog:
            seen.append(transport.taken)
            await asyncio.sleep(0)

    other = asyncio.create_task(other_connection())
    await asyncio.wait_for(pump.run(flooder, transport, idle_timeout=None), 10)
    await asyncio.wait_for(other, 10)
    # The other task ran again and again while the backlog was read, never more than a
    # fair share of messages apart.
    assert len(seen) >= backlog // pump.FAIR_SHARE - 1
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert max(gaps) <= pump.FAIR_SHARE, gaps
