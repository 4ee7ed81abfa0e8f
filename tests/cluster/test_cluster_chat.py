"""Conversations across a sentinel kill: chat replicas on Redis behind two sentinels.

Real processes: nats-server, sentinels A and B, redis-server, the stub LLM,
three ``fame agent chat`` replicas (two attached to A, one to B, each given
both sentinels' URLs) and two callers in this process (one attached to A,
one to B, each also given both URLs). Halfway through the load, A is killed
with SIGKILL: the replicas and the caller on A re-attach to B, calls cut by
the kill fail at once and are retried under the same turn id, and every
conversation ends with exactly its turns, in order, in Redis.

The issue's figure: 100 conversations x 20 turns, 50 at a time (about a
minute on two loaded cores; the longest pause a caller sees, a few seconds,
stays well under the call timeout). ``CONVERSATIONS``, ``TURNS`` and
``CONCURRENCY`` scale it; the assertions do not change.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest
from cluster_harness import NatsServer, cluster_sentinel
from support.agents import our_chat_agent, start_agents
from support.pool import ProcessPool
from support.procs import OUR_PYTHON, REPO_ROOT

from famefabric import ConnectionClosed, FameFabric, NoRoute, RemoteError
from famefabric.agent import RemoteAgent
from famefabric.chat.agent import LEASE_TTL
from famefabric.chat.store import open_store
from famefabric.protocol.ids import new_id
from famefabric.testing import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

CHAT = "chat@fame.fabric"
CONVERSATIONS = 100
TURNS = 20
MAX_ATTEMPTS = 10
CONCURRENCY = 50
"""Conversations in progress at once (the rest wait for a slot)."""
ENSURE_REDIS = REPO_ROOT / "scripts" / "ensure-redis.sh"


@pytest.fixture(scope="session")
def redis_binary() -> str:
    done = subprocess.run(
        ["bash", os.fspath(ENSURE_REDIS)], capture_output=True, text=True, timeout=600, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return lines[-1]
    message = f"redis-server is not available ({done.stderr.strip() or done.returncode})"
    required = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    if required or os.environ.get("FAME_REQUIRE_REDIS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def answer(turn: int, question: str) -> str:
    """What the stub LLM answers to the ``turn``-th question given the whole history."""
    return f"echo({2 * turn + 2}): {question}"


def question_of(conversation: str, turn: int) -> str:
    return f"question {turn} of {conversation}"


@dataclass
class Load:
    """Drives conversations; retries calls cut by the kill under the same turn id."""

    callers: list[RemoteAgent]
    done: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    longest_pause: float = 0.0
    halfway: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, chat: RemoteAgent, conversation: str) -> None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                task = await chat.start_task(id=conversation, history_length=TURNS, timeout=10.0)
                assert task.id == conversation
                return
            except (NoRoute, ConnectionClosed) as exc:
                self.retries[type(exc).__name__] += 1
                await asyncio.sleep(0.1)
            except RemoteError as exc:
                if attempt and exc.data == {"code": "conversation_exists"}:
                    return  # the first start happened; its answer was lost with the link
                raise
        raise AssertionError(f"could not start {conversation} in {MAX_ATTEMPTS} attempts")

    async def turn(self, chat: RemoteAgent, conversation: str, turn: int) -> None:
        question = question_of(conversation, turn)
        turn_id = f"{conversation}/{turn}"
        started = time.monotonic()
        for _ in range(MAX_ATTEMPTS):
            try:
                reply = await chat.run_turn(conversation, question, turn_id=turn_id)
                break
            except (NoRoute, ConnectionClosed) as exc:
                self.retries[type(exc).__name__] += 1
                await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"turn {turn_id} failed {MAX_ATTEMPTS} times")
        self.longest_pause = max(self.longest_pause, time.monotonic() - started)
        if reply != answer(turn, question):
            self.wrong.append(f"{turn_id}: {reply!r}")
        self.done += 1
        if self.done == CONVERSATIONS * TURNS // 2:
            self.halfway.set()

    async def conversation(self, index: int, conversation: str, slots: asyncio.Semaphore) -> None:
        chat = self.callers[index % len(self.callers)]
        async with slots:
            await self.start(chat, conversation)
            for turn in range(TURNS):
                await self.turn(chat, conversation, turn)


async def test_conversations_lose_and_duplicate_no_turn_when_a_sentinel_is_killed(
    processes: ProcessPool, nats_binary: str, redis_binary: str
) -> None:
    redis_port = free_port()
    redis = processes.spawn(
        "redis",
        [redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
    )
    await redis.wait_for_line(r"Ready to accept connections", within=10, what="ready")
    store = f"redis://127.0.0.1:{redis_port}/0"
    llm = processes.spawn(
        "llm", [OUR_PYTHON, "-m", "famefabric.testing.openai_server", "--port", "0"]
    )
    llm_url = (await llm.wait_for_line(r"^listening on (\S+)", within=20, what="ready")).group(1)
    nats = await NatsServer(processes, nats_binary).start()
    a, b = await asyncio.gather(
        cluster_sentinel(processes, "chatA", [nats]), cluster_sentinel(processes, "chatB", [nats])
    )
    await asyncio.gather(a.wait_peers("chatB"), b.wait_peers("chatA"))
    a_first = f"{a.admission_url},{b.admission_url}"
    b_first = f"{b.admission_url},{a.admission_url}"
    base = our_chat_agent(CHAT, llm_url)
    env = {**base.env, "CHAT_STORE": store}
    on_a = replace(base, env={**env, "FAME_DIRECT_ADMISSION_URL": a_first})
    on_b = replace(base, env={**env, "FAME_DIRECT_ADMISSION_URL": b_first})
    await start_agents(processes, a, [on_a, on_a])
    await start_agents(processes, b, [on_b])
    await b.wait_peer_addresses("chatA", 1)
    await a.wait_peer_addresses("chatB", 1)
    conversations = [f"cluster-{i:03d}-{new_id()}" for i in range(CONVERSATIONS)]
    call_timeout = LEASE_TTL + 10.0

    async with (
        FameFabric.create(admission_url=a_first, call_timeout=call_timeout) as via_a,
        FameFabric.create(admission_url=b_first, call_timeout=call_timeout) as via_b,
    ):
        driver = Load([RemoteAgent(CHAT, fabric=via_a), RemoteAgent(CHAT, fabric=via_b)])

        async def kill_a_halfway() -> None:
            await driver.halfway.wait()
            a.process.kill9()

        fault = asyncio.ensure_future(kill_a_halfway())
        slots = asyncio.Semaphore(CONCURRENCY)
        try:
            await asyncio.gather(
                *(driver.conversation(i, c, slots) for i, c in enumerate(conversations))
            )
            await fault
        finally:
            fault.cancel()

    print(f"longest pause a caller saw: {driver.longest_pause:.2f} s; retries {driver.retries}")
    assert not a.process.is_running
    assert driver.wrong == [], f"{len(driver.wrong)} replies lacked history: {driver.wrong[:5]}"
    assert sum(driver.retries.values()) > 0, "the kill cut no call: the test proved nothing"
    async with open_store(store) as opened:
        for conversation in conversations:
            state = await opened.load(conversation)
            assert state is not None, f"{conversation} is missing"
            history = [message.to_dict() for message in state.history]
            expected = []
            for turn in range(TURNS):
                question = question_of(conversation, turn)
                expected += [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer(turn, question)},
                ]
            assert history == expected, f"{conversation} is not its {TURNS} turns in order"
            assert state.version == TURNS
