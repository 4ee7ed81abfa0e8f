"""Our own stack as real processes over real WebSockets on 127.0.0.1.

A ``fame sentinel`` process, agents run as scripts (``examples/echo/agent.py``
and our interop echo agent), and callers that are either scripts or a node
inside the test process. Tests that kill or restart a process start their
own; the others share one sentinel and one example echo agent.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio
from support.agents import our_echo_agent, start_agents
from support.pool import ProcessPool
from support.procs import OUR_PYTHON, REPO_ROOT, ManagedProcess, wait_for
from support.sentinels import OurSentinel

from famefabric import ConnectionClosed, FameFabric, NoRoute
from famefabric.agent import RemoteAgent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]

ECHO = "echo@fame.fabric"
NOBODY = "nobody@fame.fabric"
EXAMPLE_AGENT = REPO_ROOT / "examples" / "echo" / "agent.py"
EXAMPLE_CLIENT = REPO_ROOT / "examples" / "echo" / "client.py"
EXAMPLE_OUTPUT = "Hello, fabric!\n[0, 1, 2, 3, 4]\n{'echoed': {'greeting': 'hi'}}\n"
PROMPT = 5.0
"""Seconds within which a caller must learn that its call cannot succeed."""


async def start_example_agent(pool: ProcessPool, sentinel: OurSentinel) -> ManagedProcess:
    """Start ``examples/echo/agent.py`` and wait until the sentinel has its binding."""
    binds = sentinel.bound_count(ECHO)
    agent = pool.spawn("example-agent", [OUR_PYTHON, EXAMPLE_AGENT], env=sentinel.node_env())
    await sentinel.wait_bound(ECHO, count=binds + 1, after=agent)
    return agent


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_sentinel(module_processes: ProcessPool) -> OurSentinel:
    """One sentinel with the example echo agent, for tests that kill nothing."""
    sentinel = await module_processes.our_sentinel(node_id="e2eShared01")
    await start_example_agent(module_processes, sentinel)
    return sentinel


@asynccontextmanager
async def attached(
    sentinel: OurSentinel, *, call_timeout: float = 10.0
) -> AsyncIterator[FameFabric]:
    """A node of the test process attached to ``sentinel``."""
    async with FameFabric.create(
        admission_url=sentinel.admission_url, call_timeout=call_timeout
    ) as fabric:
        yield fabric


async def test_echo_example_client_prints_the_agent_answers(
    shared_sentinel: OurSentinel, processes: ProcessPool
) -> None:
    """The example client's unary call, stream and task all come back through the sentinel."""
    client = processes.spawn(
        "example-client", [OUR_PYTHON, EXAMPLE_CLIENT], env=shared_sentinel.node_env()
    )
    assert await client.wait_exit(20) == 0, client.describe()
    assert client.stdout() == EXAMPLE_OUTPUT, client.describe()


async def test_show_envelopes_prints_envelopes_on_stderr_and_keeps_stdout_clean(
    shared_sentinel: OurSentinel, processes: ProcessPool
) -> None:
    """``FAME_SHOW_ENVELOPES=true`` writes every envelope to stderr, never to stdout."""
    client = processes.spawn(
        "example-client-verbose",
        [OUR_PYTHON, EXAMPLE_CLIENT],
        env=shared_sentinel.node_env({"FAME_SHOW_ENVELOPES": "true"}),
    )
    assert await client.wait_exit(20) == 0, client.describe()
    assert client.stdout() == EXAMPLE_OUTPUT, client.describe()
    stderr = client.stderr()
    assert "sent envelope" in stderr and "received envelope" in stderr, client.describe()
    assert ": NodeAttach " in stderr, client.describe()
    assert "sent envelope to 127.0.0.1:" in stderr, client.describe()
    assert '"method":"echo"' in stderr, client.describe()
    assert '"result":"Hello, fabric!"' in stderr, client.describe()
    # One line per envelope: every line of the trace starts with its UTC time.
    assert all(line[:2].isdigit() for line in stderr.splitlines() if line), client.describe()


async def test_call_to_an_unknown_address_fails_at_once_naming_it(
    shared_sentinel: OurSentinel,
) -> None:
    """A call nobody can serve is NACKed by the sentinel; it never waits for the timeout."""
    async with attached(shared_sentinel) as fabric:
        nobody = RemoteAgent(NOBODY, fabric=fabric)
        started = time.monotonic()
        with pytest.raises(NoRoute, match=re.escape(NOBODY)) as caught:
            await nobody.echo("anyone?")
        assert time.monotonic() - started < 2.0
        assert caught.value.address == NOBODY

        started = time.monotonic()
        with pytest.raises(NoRoute, match=re.escape(NOBODY)):
            async for _ in nobody.count(3):
                pass
        assert time.monotonic() - started < 2.0


@pytest_asyncio.fixture(loop_scope="module")
async def sentinel(processes: ProcessPool) -> OurSentinel:
    """A sentinel of the test's own, which the test may kill or restart."""
    return await processes.our_sentinel(node_id="e2eOwn01")


async def test_caller_gets_a_prompt_error_when_the_agent_is_killed_mid_call(
    sentinel: OurSentinel, processes: ProcessPool
) -> None:
    """SIGKILL during a call: the sentinel NACKs it, the caller fails in seconds, not 10 s."""
    (agent,) = await start_agents(processes, sentinel, [our_echo_agent(ECHO)])
    async with attached(sentinel) as fabric:
        echo = RemoteAgent(ECHO, fabric=fabric)
        call = asyncio.ensure_future(echo.sleep(seconds=8.0))
        await agent.wait_for_line(r"^SLEEPING ", within=10, what="the start of the call")
        killed_at = time.monotonic()
        agent.kill9()
        with pytest.raises((NoRoute, ConnectionClosed)) as caught:
            await call
        assert time.monotonic() - killed_at < PROMPT
        assert ECHO in str(caught.value)

        # The binding went with the agent: the next call is refused at once.
        started = time.monotonic()
        with pytest.raises(NoRoute, match=re.escape(ECHO)):
            await echo.echo("still there?")
        assert time.monotonic() - started < 2.0


async def test_agent_rebinds_after_a_sentinel_restart_and_the_next_call_works(
    sentinel: OurSentinel, processes: ProcessPool
) -> None:
    """Same id, same port: the agent re-attaches and re-binds; a live client calls it again."""
    await start_example_agent(processes, sentinel)
    async with attached(sentinel, call_timeout=15.0) as fabric:
        echo = RemoteAgent(ECHO, fabric=fabric)
        assert await echo.echo("before") == "before"

        await sentinel.restart()
        await sentinel.wait_bound(ECHO, within=20)

        assert await echo.echo("after") == "after"
        assert fabric.node.sentinel_id == sentinel.node_id


async def test_two_replicas_share_an_address_and_the_survivor_serves_alone(
    sentinel: OurSentinel, processes: ProcessPool
) -> None:
    """Both replicas answer calls to one address; killing one leaves the other serving."""
    first, second = await start_agents(
        processes, sentinel, [our_echo_agent(ECHO), our_echo_agent(ECHO)]
    )
    ids = {process: await _ready_id(process) for process in (first, second)}
    async with attached(sentinel) as fabric:
        echo = RemoteAgent(ECHO, fabric=fabric)
        answers = {await echo.whoami() for _ in range(30)}
        assert answers == set(ids.values())

        first.kill9()
        await _wait_detached(sentinel, ids[first])
        answers_after = [await echo.whoami() for _ in range(20)]
        assert set(answers_after) == {ids[second]}


async def _ready_id(process: ManagedProcess) -> str:
    match = await process.wait_for_line(r"^READY agent id=(\S+)", within=1)
    return match.group(1)


async def _wait_detached(sentinel: OurSentinel, node_id: str) -> None:
    pattern = f"node {node_id} detached"
    if not await wait_for(lambda: pattern in sentinel.process.stderr(), within=PROMPT):
        raise sentinel.process.fail(f"the sentinel did not log {pattern!r} within {PROMPT:g} s")


async def test_the_example_agent_says_when_it_serves_and_the_sentinel_when_it_is_bound(
    processes: ProcessPool,
) -> None:
    sentinel = await processes.our_sentinel(node_id="e2eServing01")
    agent = await start_example_agent(processes, sentinel)
    await agent.wait_for_line("EchoAgent serving echo@fame.fabric", stream="stderr", within=10)
    await sentinel.process.wait_for_line(
        re.compile(r"INFO famefabric\.sentinel.*bound echo@fame\.fabric"),
        stream="stderr",
        within=10,
    )
