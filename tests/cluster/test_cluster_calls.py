"""Calls across sentinels: real nats-server, real ``fame sentinel`` processes, real agents.

Two sentinels A and B share one NATS server; our echo agent attaches to A
and the caller, a node of this process, attaches to B. Everything a caller
can do with one sentinel works the same across the two: unary calls,
streams, error replies, ``NO_ROUTE`` at once for an address nobody serves,
cancel notices, and a prompt NACK when the agent dies mid-call.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from cluster_harness import ClusterSentinel, NatsServer, cluster_sentinel
from support.agents import our_echo_agent, start_agents
from support.clients import ClientJob, run_client
from support.pool import ProcessPool
from support.procs import ManagedProcess

from famefabric import ConnectionClosed, FameFabric, NoRoute, OperationTimeout, RemoteError
from famefabric.agent import RemoteAgent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]

ECHO = "echo@fame.fabric"
NOBODY = "nobody@fame.fabric"
PROMPT = 2.0
"""Seconds within which a caller must learn that its call cannot succeed."""


@dataclass
class TwoSentinels:
    nats: NatsServer
    a: ClusterSentinel
    b: ClusterSentinel
    agent: ManagedProcess


@asynccontextmanager
async def attached(
    sentinel: ClusterSentinel, *, timeout: float = 10.0
) -> AsyncIterator[FameFabric]:
    """A node of the test process attached to ``sentinel``."""
    async with FameFabric.create(admission_url=sentinel.admission_url, call_timeout=timeout) as f:
        yield f


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(module_processes: ProcessPool, nats_binary: str) -> TwoSentinels:
    """NATS, sentinels A and B, and our echo agent on A, once B knows it."""
    nats = await NatsServer(module_processes, nats_binary).start()
    a, b = await asyncio.gather(
        cluster_sentinel(module_processes, "clusterA", [nats]),
        cluster_sentinel(module_processes, "clusterB", [nats]),
    )
    await asyncio.gather(a.wait_peers("clusterB"), b.wait_peers("clusterA"))
    (agent,) = await start_agents(module_processes, a, [our_echo_agent(ECHO)])
    await b.wait_peer_addresses("clusterA", 1)
    return TwoSentinels(nats, a, b, agent)


async def test_unary_stream_and_error_replies_cross_sentinels(pair: TwoSentinels) -> None:
    """A caller on B gets the same answers from the agent on A as it would on one sentinel."""
    async with attached(pair.b) as fabric:
        echo = RemoteAgent(ECHO, fabric=fabric)
        assert await echo.echo("across") == "across"
        assert await echo.add(x=2, y=3) == 5
        assert [item async for item in echo.count(5)] == [{"i": i} for i in range(5)]
        with pytest.raises(RemoteError, match="kaboom"):
            await echo.fail()
        seen: list[int] = []
        with pytest.raises(RemoteError, match="failed after 3"):
            async for item in echo.count_then_fail(3):
                seen.append(item)
        assert seen == [0, 1, 2]
        many = await asyncio.gather(*(echo.echo(f"m{i}") for i in range(50)))
        assert many == [f"m{i}" for i in range(50)]


async def test_address_served_nowhere_fails_at_once_with_no_route(pair: TwoSentinels) -> None:
    async with attached(pair.b) as fabric:
        nobody = RemoteAgent(NOBODY, fabric=fabric)
        started = time.monotonic()
        with pytest.raises(NoRoute, match=re.escape(NOBODY)):
            await nobody.echo("anyone?")
        assert time.monotonic() - started < PROMPT


async def test_health_lists_the_members_and_their_addresses(pair: TwoSentinels) -> None:
    body = await pair.b.wait_peer_addresses("clusterA", 1)
    cluster = body["cluster"]
    assert cluster["nats"] == "connected"
    assert cluster["server"] == f"127.0.0.1:{pair.nats.port}"
    (peer,) = cluster["peers"]
    assert peer["systemId"] == "clusterA" and peer["nodes"] == 1
    assert 0 <= peer["lastSeen"] < 1.0


async def test_agent_killed_mid_call_fails_the_remote_caller_at_once(
    module_processes: ProcessPool, pair: TwoSentinels
) -> None:
    """The agent's sentinel NACKs the call to the caller's sentinel, which fails it at once."""
    (victim,) = await start_agents(module_processes, pair.a, [our_echo_agent("victim@fame.fabric")])
    await pair.b.wait_peer_addresses("clusterA", 2)
    async with attached(pair.b) as fabric:
        victim_agent = RemoteAgent("victim@fame.fabric", fabric=fabric)
        call = asyncio.ensure_future(victim_agent.sleep(seconds=8.0))
        await victim.wait_for_line(r"^SLEEPING ", within=10, what="the start of the call")
        killed_at = time.monotonic()
        victim.kill9()
        with pytest.raises((NoRoute, ConnectionClosed)) as caught:
            await call
        assert time.monotonic() - killed_at < PROMPT
        assert "victim@fame.fabric" in str(caught.value)


async def test_cancel_crosses_the_cluster_to_the_agent(pair: TwoSentinels) -> None:
    """A caller on B gives up: the agent on A gets the cancel notice and stops the handler."""
    async with attached(pair.b) as fabric:
        echo = RemoteAgent(ECHO, fabric=fabric)
        cancelled = pair.agent.count(r"^CANCELLED ", stream="stdout")
        call = asyncio.ensure_future(echo.sleep(seconds=20.0))
        await pair.agent.wait_until(
            lambda: pair.agent.count(r"^SLEEPING 20", stream="stdout") > cancelled,
            within=10,
            what="the start of the call",
        )
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await pair.agent.wait_until(
            lambda: pair.agent.count(r"^CANCELLED 20", stream="stdout") > cancelled,
            within=PROMPT,
            what="the cancel notice reached the agent",
        )
        assert await echo.echo("still fine") == "still fine"


async def test_deadline_cancels_the_remote_handler_and_big_replies_fail_fast(
    pair: TwoSentinels,
) -> None:
    """A call past its deadline is cancelled on the agent across the cluster; a reply over
    the envelope limit comes back as the agent's error, not as a hang."""
    async with attached(pair.b) as fabric:
        echo = RemoteAgent(ECHO, fabric=fabric)
        cancelled = pair.agent.count(r"^CANCELLED 7", stream="stdout")
        started = time.monotonic()
        with pytest.raises(OperationTimeout):
            await echo.sleep(seconds=7.0, _timeout=0.5)
        assert time.monotonic() - started < 0.5 + PROMPT
        await pair.agent.wait_until(
            lambda: pair.agent.count(r"^CANCELLED 7", stream="stdout") > cancelled,
            within=PROMPT,
            what="the handler past its deadline was cancelled",
        )
        with pytest.raises(RemoteError, match="too large to send"):
            await echo.big(400_000)
        # Per-source order across the cluster: a long stream arrives complete and in order.
        assert [item async for item in echo.count(300)] == [{"i": i} for i in range(300)]


REPLICA = "replica@fame.fabric"
CONVERSATIONS = 50
TURNS = 10


async def test_replicas_on_two_sentinels_keep_each_conversation_on_one_replica(
    module_processes: ProcessPool, pair: TwoSentinels
) -> None:
    """50 conversations x 10 calls, alternating callers on A and B: one replica per key.

    Both sentinels pick with rendezvous hashing over the cluster-wide replica
    set, so a key's calls reach the same replica whichever sentinel the caller
    is attached to; the keys spread over both replicas.
    """
    (on_a,) = await start_agents(module_processes, pair.a, [our_echo_agent(REPLICA)])
    (on_b,) = await start_agents(module_processes, pair.b, [our_echo_agent(REPLICA)])
    await asyncio.gather(
        pair.a.wait_peer_addresses("clusterB", 1), pair.b.wait_peer_addresses("clusterA", 2)
    )
    async with attached(pair.a) as fabric_a, attached(pair.b) as fabric_b:
        callers = [RemoteAgent(REPLICA, fabric=fabric_a), RemoteAgent(REPLICA, fabric=fabric_b)]

        async def conversation(k: int) -> set[str]:
            served = set()
            for turn in range(TURNS):
                served.add(await callers[turn % 2].whoami(f"conversation-{k}"))
            return served

        served = await asyncio.gather(*(conversation(k) for k in range(CONVERSATIONS)))
    assert all(len(replicas) == 1 for replicas in served), served
    used = {next(iter(replicas)) for replicas in served}
    assert len(used) == 2, f"every conversation went to {used}"
    on_a.terminate()
    on_b.terminate()


@pytest.mark.interop
async def test_a_naylence_client_on_b_calls_our_agent_on_a(
    interop_venv: Path, module_processes: ProcessPool, pair: TwoSentinels
) -> None:
    """The reference client, attached to sentinel B, gets our agent's answers from sentinel A."""
    ops = await run_client(module_processes, ClientJob("naylence", "ops", pair.b, ECHO, 10.0))
    expected = {"echo": "hello", "echo_positional": "positional", "add": 7, "nothing": None}
    for name, value in expected.items():
        record = ops.step(name)
        assert record["ok"] and record["value"] == value, ops.report
    streams = await run_client(
        module_processes, ClientJob("naylence", "stream", pair.b, ECHO, 10.0)
    )
    assert streams.step("count")["items"] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert streams.step("count_zero")["items"] == []
    unknown = await run_client(
        module_processes, ClientJob("naylence", "unknown", pair.b, NOBODY, 10.0)
    )
    record = unknown.step("invoke_unbound_logical")
    assert not record["ok"] and NOBODY in str(record) and record["secs"] < PROMPT
