"""Losing a sentinel, and losing a NATS server, under real processes.

Sentinel A is killed with SIGKILL while a caller on B waits for an answer
from an agent on A: B learns that A is gone within the peer timeout and
fails the call at once; the agent, given both sentinels' URLs in
``FAME_DIRECT_ADMISSION_URL``, re-attaches to B and serves again. With a
three-server NATS cluster, killing the server a sentinel uses does not stop
the routing: the NATS client reconnects to another server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from cluster_harness import PEER_TIMEOUT, NatsServer, cluster_sentinel, nats_cluster
from support.agents import our_echo_agent, start_agents
from support.pool import ProcessPool
from support.sentinels import OurSentinel

from famefabric import ConnectionClosed, FameFabric, NoRoute
from famefabric.agent import RemoteAgent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ECHO = "echo@fame.fabric"
DETECT = PEER_TIMEOUT + 1.5
"""Seconds within which a sentinel notices a dead peer: the peer timeout, a heartbeat
check and scheduling slack on a loaded machine."""
REATTACH = 10.0
"""Seconds an agent may take to re-attach to the surviving sentinel (backoff and jitter)."""


@asynccontextmanager
async def attached(sentinel: OurSentinel, *, timeout: float = 10.0) -> AsyncIterator[FameFabric]:
    async with FameFabric.create(admission_url=sentinel.admission_url, call_timeout=timeout) as f:
        yield f


async def call_until_served(echo: RemoteAgent, *, within: float) -> float:
    """Call ``echo`` until it answers (NO_ROUTE while its agent re-attaches); return when."""
    deadline = time.monotonic() + within
    while True:
        try:
            assert await echo.echo("back?") == "back?"
            return time.monotonic()
        except (NoRoute, ConnectionClosed):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.05)


async def test_sentinel_killed_fails_calls_at_once_and_agents_move_to_a_live_one(
    processes: ProcessPool, nats_binary: str
) -> None:
    nats = await NatsServer(processes, nats_binary).start()
    a, b = await asyncio.gather(
        cluster_sentinel(processes, "failA", [nats]), cluster_sentinel(processes, "failB", [nats])
    )
    await asyncio.gather(a.wait_peers("failB"), b.wait_peers("failA"))
    both = f"{a.admission_url},{b.admission_url}"
    spec = our_echo_agent(ECHO)
    spec = replace(spec, env={**spec.env, "FAME_DIRECT_ADMISSION_URL": both})
    (agent,) = await start_agents(processes, a, [spec])
    await b.wait_peer_addresses("failA", 1)

    async with attached(b) as fabric:
        echo = RemoteAgent(ECHO, fabric=fabric)
        assert await echo.echo("before") == "before"
        call = asyncio.ensure_future(echo.sleep(seconds=30.0))
        await agent.wait_for_line(r"^SLEEPING ", within=10, what="the start of the call")
        killed_at = time.monotonic()
        a.process.kill9()
        with pytest.raises((NoRoute, ConnectionClosed)) as caught:
            await call
        failed_after = time.monotonic() - killed_at
        assert failed_after < DETECT, f"the call failed only {failed_after:.2f} s after the kill"
        assert ECHO in str(caught.value)

        served_at = await call_until_served(echo, within=REATTACH)
        body = await b.wait_health(lambda h: h["addresses"] >= 1, what="the agent re-bound on B")
        assert body["cluster"]["peers"] == []
        assert agent.is_running
        # The longest pause this caller saw: from the kill to the first answer again.
        print(f"pause after the kill: {served_at - killed_at:.2f} s")


async def test_nats_server_killed_the_sentinels_reconnect_and_keep_routing(
    processes: ProcessPool, nats_binary: str
) -> None:
    servers = await nats_cluster(processes, nats_binary, 3)
    # A uses server 0 first, B server 1 first; both know all three.
    a = await cluster_sentinel(processes, "natsA", [servers[0], servers[1], servers[2]])
    b = await cluster_sentinel(processes, "natsB", [servers[1], servers[2], servers[0]])
    await asyncio.gather(a.wait_peers("natsB"), b.wait_peers("natsA"))
    (_agent,) = await start_agents(processes, a, [our_echo_agent(ECHO)])
    await b.wait_peer_addresses("natsA", 1)
    first = (await a.wait_health(lambda h: True, what="health"))["cluster"]["server"]
    victim = next(s for s in servers if f"127.0.0.1:{s.port}" == first)

    async with attached(b) as fabric:
        echo = RemoteAgent(ECHO, fabric=fabric)
        results: list[str] = []
        failures: list[BaseException] = []
        stop = asyncio.Event()
        answered = asyncio.Condition()

        async def until_answered(count: int, what: str) -> None:
            """Wait (bounded) until ``count`` calls more than now have been answered."""
            target = len(results) + count
            try:
                async with asyncio.timeout(15), answered:
                    await answered.wait_for(lambda: len(results) >= target)
            except TimeoutError:
                failed = [w.exception() for w in workers if w.done() and not w.cancelled()]
                raise AssertionError(
                    f"{what}: {len(results)} of {target} in 15 s; {failed}"
                ) from None

        async def load(worker: int) -> None:
            i = 0
            while not stop.is_set():
                text = f"w{worker}-{i}"
                for _attempt in range(3):  # a call in flight on the dead server retries
                    try:
                        results.append(await echo.echo(text, _timeout=5.0))
                        async with answered:
                            answered.notify_all()
                        break
                    except (NoRoute, ConnectionClosed, TimeoutError) as exc:
                        failures.append(exc)
                        await asyncio.sleep(0.2)
                else:
                    raise AssertionError(f"{text} failed three times: {failures[-3:]}")
                i += 1

        workers = [asyncio.ensure_future(load(w)) for w in range(4)]
        await until_answered(20, "calls answered before the NATS server is killed")
        victim.process.kill9()
        await a.wait_health(
            lambda h: h["cluster"]["nats"] == "connected" and h["cluster"]["server"] != first,
            what="A reconnected to another NATS server",
            within=10,
        )
        await until_answered(20, "calls answered after the NATS server died")
        stop.set()
        await asyncio.gather(*workers)
        # Only calls in flight when the server died may fail, and each retried successfully.
        assert len(failures) <= 8, failures
