"""A node that stops reading must not stall anybody else (real WebSockets, one sentinel)."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import orjson
import pytest
from test_server import RawNode, running, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from famefabric.sentinel.limits import SentinelLimits

WRITE_DEADLINE = 1.0


async def echo_agent(agent: RawNode) -> None:
    """Answer every request with its params, until cancelled."""
    while True:
        message = await agent.ws.recv()
        envelope: dict[str, Any] = orjson.loads(message)
        if envelope["frame"]["type"] == "Data":
            await agent.reply(envelope, envelope["frame"]["payload"]["params"])


async def test_a_slow_reader_is_disconnected_and_never_stalls_a_victim(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = SentinelLimits(write_deadline=WRITE_DEADLINE)
    async with running(limits=limits) as sentinel:
        agent = await RawNode.open(sentinel, "echoAgent")
        await agent.bind("echo@fame.fabric")
        serving = asyncio.create_task(echo_agent(agent))
        victim = await RawNode.open(sentinel, "victim")
        # The slow reader's client stops taking messages off the socket at once.
        slow = await RawNode.open(sentinel, "slowReader", max_queue=1)
        blob = "x" * 200_000
        for _ in range(100):  # 20 MB of replies that it will never read
            await slow.request("echo@fame.fabric", params={"blob": blob})
        sent_all = time.monotonic()

        latencies: list[float] = []
        closed_after: float | None = None
        for n in range(200):
            started = time.monotonic()
            sent = await victim.request("echo@fame.fabric", params={"n": n})
            reply = await victim.receive()
            latencies.append(time.monotonic() - started)
            assert reply["corrId"] == sent.corr_id
            assert reply["frame"]["payload"]["result"] == {"n": n}
            if closed_after is None and not sentinel.table.has_node("slowReader"):
                closed_after = time.monotonic() - sent_all
        await wait_for(lambda: not sentinel.table.has_node("slowReader"))
        if closed_after is None:
            closed_after = time.monotonic() - sent_all
        # Its socket was full, so the close reason may not reach it; the link is gone anyway.
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await slow.ws.recv()

        p99 = statistics.quantiles(latencies, n=100)[98]
        assert p99 < 0.2, f"victim p99 {p99 * 1000:.0f} ms while a reader was slow"
        assert "slowReader: closing the connection, slow consumer" in caplog.text
        assert closed_after < WRITE_DEADLINE + 2.0, f"slow reader closed after {closed_after:.1f} s"
        serving.cancel()
        await victim.close()
        await agent.close()


async def test_a_reader_that_keeps_up_is_never_called_slow() -> None:
    limits = SentinelLimits(write_deadline=WRITE_DEADLINE)
    async with running(limits=limits) as sentinel:
        agent = await RawNode.open(sentinel, "echoAgent")
        await agent.bind("echo@fame.fabric")
        serving = asyncio.create_task(echo_agent(agent))
        url = f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream/fastReader"
        reader = RawNode(await connect(url, compression=None), "fastReader")
        await reader.attach()
        sent = [await reader.request("echo@fame.fabric", params={"n": n}) for n in range(500)]
        replies = [await reader.receive() for _ in sent]
        assert sorted(r["corrId"] for r in replies) == sorted(s.corr_id for s in sent)
        assert reader.ws.close_code is None
        serving.cancel()
        await reader.close()
        await agent.close()
