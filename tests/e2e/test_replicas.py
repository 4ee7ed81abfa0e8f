"""Conversations that outlive their chat agent, and replicas that share them.

Real processes on 127.0.0.1: ``fame sentinel``, one or more ``fame agent chat``
on one SQLite file or one Redis server, and callers that are either a node of
this process (``FameFabric`` and ``Agent.remote_by_address``) or ``fame chat``
itself. The stub LLM answers ``echo(N): <question>``, N being the number of
messages it was sent, so a reply tells how much history the agent used: the
k-th question of a conversation (from 0) is answered ``echo(2k+2)`` when every
earlier exchange was sent along.

Processes are killed with SIGKILL, so nothing is flushed or released on the
way out. A killed agent still holds the store lease of a turn it was
answering; another replica takes the conversation's next turn once that lease
expires (``LEASE_TTL`` seconds after the turn began), which bounds how long a
retry may wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pexpect
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from support.agents import AgentSpec, our_chat_agent, start_agents, wait_agent_ready
from support.clients import ClientJob, run_clients
from support.pool import ProcessPool
from support.procs import FAME, OUR_PYTHON, REPO_ROOT, ManagedProcess, base_env, wait_for
from support.sentinels import OurSentinel

from famefabric import Agent, ConnectionClosed, FameFabric, NoRoute, RemoteError
from famefabric.agent import RemoteAgent
from famefabric.chat.agent import LEASE_TTL
from famefabric.chat.conversation import ConversationState
from famefabric.chat.store import open_store
from famefabric.protocol.ids import new_id
from famefabric.testing import Delay, OpenAIStubServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

CHAT = "chat@fame.fabric"
ENSURE_REDIS = REPO_ROOT / "scripts" / "ensure-redis.sh"
SLOW_LLM = 6.0
"""Seconds the stub LLM takes to answer the turn that a test cuts short."""
PROMPT = 3.0
"""Seconds within which a caller learns that the agent answering its turn died: well
before the LLM would have answered, so the caller did not wait for it."""
STORE_DOWN_PROMPT = 8.0
"""Seconds within which a turn fails while the store is unreachable."""
LEASE_EXPIRY = LEASE_TTL + 10.0
"""Seconds a retry of a cut turn may take: the dead agent's lease must expire first."""


# -- the stub LLM, Redis and the chat agents ---------------------------------------


@pytest.fixture
def llm() -> Iterator[OpenAIStubServer]:
    """A stub LLM of the test's own, so that its queue and records are the test's alone."""
    with OpenAIStubServer() as server:
        yield server


def _redis_is_required() -> bool:
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get("FAME_REQUIRE_REDIS") == "1"


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """The path of redis-server, found (or installed, as root) by ``scripts/ensure-redis.sh``.

    Skips the test when there is none, unless ``CI`` or ``FAME_REQUIRE_REDIS=1`` is set.
    """
    done = subprocess.run(
        ["bash", os.fspath(ENSURE_REDIS)], capture_output=True, text=True, timeout=600, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return lines[-1]
    message = f"redis-server is not available ({done.stderr.strip() or done.returncode})"
    if _redis_is_required():
        pytest.fail(f"{message}; CI or FAME_REQUIRE_REDIS=1 requires the Redis tests to run")
    pytest.skip(message)


class RedisProcess:
    """A redis-server of the test's own on a free port, which the test may kill and start again.

    ``redis-server --port 0`` would disable TCP, so it gets a free port chosen
    beforehand (:meth:`start_new` creates and starts one).

    Args:
        pool: owns the process; its data directory goes next to the logs.
        binary: the path of redis-server.
        persistent: keep every write in an append-only file synced at once,
            so that the data survives even SIGKILL; otherwise keep nothing.
    """

    def __init__(self, pool: ProcessPool, binary: str, *, persistent: bool) -> None:
        self.port = free_port()
        data = pool.log_dir / f"redis-{self.port}"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if persistent else "no",
            "--appendfsync",
            "always",
            "--dir",
            os.fspath(data),
        ]
        self.process = pool.spawn(f"redis-{self.port}", argv, start=False)

    @classmethod
    async def start_new(cls, pool: ProcessPool, binary: str, *, persistent: bool) -> RedisProcess:
        """Create a server and wait until it takes connections."""
        redis = cls(pool, binary, persistent=persistent)
        await redis.start()
        return redis

    @property
    def url(self) -> str:
        """The URL of its database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start the server and wait until it takes connections."""
        self.process.start()
        await self.process.wait_for_line(
            r"Ready to accept connections", within=10, what="that it accepts connections"
        )

    def kill9(self) -> None:
        """Kill the server with SIGKILL."""
        self.process.kill9()


def chat_replica(llm_url: str, store: str) -> AgentSpec:
    """``fame agent chat`` at chat@fame.fabric on ``store``, logging each conversation it starts."""
    spec = our_chat_agent(CHAT, llm_url)
    return replace(spec, name="chat-replica", env={**spec.env, "CHAT_STORE": store})


async def start_again(agent: ManagedProcess, spec: AgentSpec) -> None:
    """Start a killed agent with the same command and wait until it serves again."""
    agent.start()
    await wait_agent_ready(agent, spec)


def started_conversations(agent: ManagedProcess) -> set[str]:
    """The conversations the agent's current run has started."""
    return set(re.findall(r"conversation (\S+) started", agent.stderr()))


# -- conversations: what the stub answers, and what the store holds ------------------


def answer(turn: int, question: str) -> str:
    """What the stub answers to the ``turn``-th question (from 0) given the whole history."""
    return f"echo({2 * turn + 2}): {question}"


def history_of(questions: Sequence[str]) -> list[dict[str, str]]:
    """The stored history of a conversation whose questions were all answered in order."""
    history: list[dict[str, str]] = []
    for turn, question in enumerate(questions):
        history.append({"role": "user", "content": question})
        history.append({"role": "assistant", "content": answer(turn, question)})
    return history


def messages(state: ConversationState | None) -> list[dict[str, str]] | None:
    """A stored state's history as dictionaries (None when there is no conversation)."""
    return None if state is None else [message.to_dict() for message in state.history]


async def load(store: str, conversation_id: str) -> ConversationState | None:
    """Read one conversation from the store directly, as another process would."""
    async with open_store(store) as opened:
        return await opened.load(conversation_id)


@asynccontextmanager
async def chat_client(
    sentinel: OurSentinel, *, call_timeout: float = 30.0
) -> AsyncIterator[RemoteAgent]:
    """A node of this process attached to ``sentinel``, and a proxy of the chat agent."""
    async with FameFabric.create(
        admission_url=sentinel.admission_url, call_timeout=call_timeout
    ) as fabric:
        yield Agent.remote_by_address(CHAT, fabric=fabric)


async def start_conversation(
    chat: RemoteAgent, conversation_id: str, *, exchanges: int = 20
) -> None:
    """Start a conversation that keeps ``exchanges`` exchanges of history."""
    task = await chat.start_task(id=conversation_id, history_length=exchanges, timeout=10.0)
    assert task.id == conversation_id


def fame(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``fame`` command to its end; stdin is empty."""
    return subprocess.run(
        [os.fspath(FAME), *args],
        input="",
        env=base_env(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def store_url(path: Path) -> str:
    """The ``CHAT_STORE`` of an SQLite file."""
    return f"sqlite:///{path}"


# -- restart on the same SQLite file ----------------------------------------------


async def test_a_conversation_outlives_a_kill_9_of_its_agent_and_fame_chat_resumes_it(
    processes: ProcessPool, llm: OpenAIStubServer, tmp_path: Path
) -> None:
    """Three turns, SIGKILL, the same agent on the same file: the fourth turn sees them all."""
    store = store_url(tmp_path / "conversations.db")
    sentinel = await processes.our_sentinel(node_id="resumeSentinel1")
    spec = chat_replica(llm.url, store)
    (agent,) = await start_agents(processes, sentinel, [spec])
    conversation = new_id()
    questions = ["my name is Ada", "I like tea", "and biscuits"]
    async with chat_client(sentinel) as chat:
        await start_conversation(chat, conversation)
        for turn, question in enumerate(questions):
            reply = await chat.run_turn(conversation, question, turn_id=new_id())
            assert reply == answer(turn, question)

    agent.kill9()
    await start_again(agent, spec)

    resumed = processes.spawn(
        "fame-chat-resume",
        [FAME, "chat", "--conversation", conversation, "--keep"],
        env=sentinel.node_env(),
        stdin_pipe=True,
    )
    resumed.send_stdin(b"what is my name?\n")
    assert await resumed.wait_exit(30) == 0, resumed.describe()
    output = resumed.stdout()
    assert f"conversation {conversation} resumed (6 messages; kept on exit)" in output, (
        resumed.describe()
    )
    assert "A> echo(8): what is my name?" in output, resumed.describe()
    assert f"resume it with  fame chat --conversation {conversation}" in output

    shown = fame("conversations", "--store", store, "show", conversation)
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)
    assert stored["id"] == conversation
    kept = [{"role": m["role"], "content": m["content"]} for m in stored["history"]]
    assert kept == history_of([*questions, "what is my name?"])
    # Each reply carries the token usage the LLM reported for its turn.
    assert all("usage" in m for m in stored["history"] if m["role"] == "assistant")


# -- SIGKILL in the middle of a turn ----------------------------------------------


async def test_a_turn_cut_by_a_kill_9_fails_promptly_leaves_no_half_turn_and_commits_once_on_retry(
    processes: ProcessPool, llm: OpenAIStubServer, tmp_path: Path
) -> None:
    """The caller learns of the crash at once; the retry under the same turn id counts once."""
    store = store_url(tmp_path / "conversations.db")
    sentinel = await processes.our_sentinel(node_id="cutSentinel01")
    spec = chat_replica(llm.url, store)
    (agent,) = await start_agents(processes, sentinel, [spec])
    conversation = new_id()
    async with chat_client(sentinel, call_timeout=LEASE_EXPIRY) as chat:
        await start_conversation(chat, conversation)
        assert await chat.run_turn(conversation, "first", turn_id=new_id()) == answer(0, "first")

        cut = new_id()
        llm.enqueue(Delay(SLOW_LLM))
        asked = len(llm.requests)
        call = asyncio.ensure_future(chat.run_turn(conversation, "second", turn_id=cut))
        await asyncio.to_thread(llm.wait_for_requests, asked + 1, 10.0)
        killed_at = time.monotonic()
        agent.kill9()
        with pytest.raises(NoRoute) as caught:
            await call
        assert time.monotonic() - killed_at < PROMPT
        assert caught.value.code == "CHILD_UNREACHABLE"
        assert CHAT in str(caught.value) and "disconnected before replying" in str(caught.value)
        assert messages(await load(store, conversation)) == history_of(["first"])

        await start_again(agent, spec)
        retried = await chat.run_turn(conversation, "second", turn_id=cut)
        assert retried == answer(1, "second")
        asked = len(llm.requests)
        assert await chat.run_turn(conversation, "second", turn_id=cut) == retried
        assert len(llm.requests) == asked, "a remembered turn must not ask the model again"

    state = await load(store, conversation)
    assert messages(state) == history_of(["first", "second"])
    assert state is not None and state.version == 2


# -- two replicas on one store ------------------------------------------------------


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def shared_store(
    request: pytest.FixtureRequest, processes: ProcessPool, tmp_path: Path
) -> str:
    """The store URL that the replicas share: one SQLite file, or one Redis server."""
    if request.param == "sqlite":
        return store_url(tmp_path / "conversations.db")
    binary: str = request.getfixturevalue("redis_binary")
    return (await RedisProcess.start_new(processes, binary, persistent=False)).url


async def test_two_replicas_share_conversations_and_the_survivor_of_a_kill_9_carries_them_on(
    processes: ProcessPool, llm: OpenAIStubServer, shared_store: str
) -> None:
    """20 conversations spread over both; the survivor goes on with the dead one's, history and all."""
    sentinel = await processes.our_sentinel(node_id="twoSentinel01")
    spec = chat_replica(llm.url, shared_store)
    replicas = await start_agents(processes, sentinel, [spec, spec])
    conversations = [f"shared-{index:02d}-{new_id()}" for index in range(20)]

    async def first_turn(chat: RemoteAgent, conversation: str) -> None:
        await start_conversation(chat, conversation)
        assert await chat.run_turn(conversation, "hello", turn_id=new_id()) == answer(0, "hello")

    async with chat_client(sentinel, call_timeout=LEASE_EXPIRY) as chat:
        await asyncio.gather(*(first_turn(chat, conversation) for conversation in conversations))
        served = [started_conversations(replica) for replica in replicas]
        assert all(served), f"a replica served no conversation: {served}"
        assert served[0] | served[1] == set(conversations) and not served[0] & served[1]

        victim, survivor = replicas
        in_flight, *idle = sorted(served[0])
        cut = new_id()
        llm.enqueue(Delay(SLOW_LLM))
        asked = len(llm.requests)
        call = asyncio.ensure_future(chat.run_turn(in_flight, "and then?", turn_id=cut))
        await asyncio.to_thread(llm.wait_for_requests, asked + 1, 10.0)
        killed_at = time.monotonic()
        victim.kill9()
        with pytest.raises(NoRoute) as caught:
            await call
        assert time.monotonic() - killed_at < PROMPT
        assert caught.value.code == "CHILD_UNREACHABLE" and CHAT in str(caught.value)
        assert messages(await load(shared_store, in_flight)) == history_of(["hello"])

        # Only the survivor is left: it answers the dead replica's conversations,
        # and the history it sends shows it read them from the store.
        replies = await asyncio.gather(
            *(chat.run_turn(conversation, "and then?", turn_id=new_id()) for conversation in idle)
        )
        assert replies == [answer(1, "and then?")] * len(idle)
        assert survivor.is_running

        assert await chat.run_turn(in_flight, "and then?", turn_id=cut) == answer(1, "and then?")
        assert await chat.run_turn(in_flight, "and then?", turn_id=cut) == answer(1, "and then?")

    for conversation in conversations:
        expected = ["hello", "and then?"] if conversation in served[0] else ["hello"]
        assert messages(await load(shared_store, conversation)) == history_of(expected)


# -- a sentinel restart under a REPL ------------------------------------------------


async def test_fame_chat_reconnects_after_a_sentinel_restart_and_answers_the_next_question(
    processes: ProcessPool, llm: OpenAIStubServer, tmp_path: Path
) -> None:
    """Same id, same port: the REPL says it reconnects, the agent binds again by itself."""
    sentinel = await processes.our_sentinel(node_id="restartSentinel1")
    spec = chat_replica(llm.url, store_url(tmp_path / "conversations.db"))
    (agent,) = await start_agents(processes, sentinel, [spec])
    child = pexpect.spawn(
        os.fspath(FAME), ["chat"], env=base_env(sentinel.node_env()), encoding="utf-8", timeout=20
    )
    try:
        child.expect(r"conversation \S+ \(type exit")
        child.expect_exact("Q> ")
        child.sendline("before the restart")
        child.expect(r"A> echo\(2\): before the restart\r\n")
        child.expect_exact("Q> ")

        await sentinel.restart()
        child.expect(r"\[connection to the sentinel lost; reconnecting in \d+\.\d s\]")
        child.expect_exact("[reconnected]")
        await sentinel.wait_bound(CHAT, after=agent, within=20)

        child.sendline("after the restart")
        child.expect(r"A> echo\(4\): after the restart\r\n")
        child.expect_exact("Q> ")
        child.sendline("exit")
        child.expect_exact("goodbye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert agent.is_running


# -- a Redis restart under a running agent ----------------------------------------


async def _kill_redis_fail_a_turn_and_start_it_again(
    chat: RemoteAgent, redis: RedisProcess, conversation: str
) -> None:
    redis.kill9()
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        await chat.run_turn(conversation, "anyone home?", turn_id=new_id())
    assert time.monotonic() - started < STORE_DOWN_PROMPT
    assert caught.value.data == {"code": "store_unavailable"}
    assert f"conversation store {redis.url} is unavailable" in caught.value.message
    await redis.start()


async def test_turns_fail_clearly_while_redis_is_down_and_a_persisted_conversation_goes_on(
    processes: ProcessPool, llm: OpenAIStubServer, redis_binary: str
) -> None:
    """With an append-only file synced on every write, a killed Redis keeps the conversation."""
    redis = await RedisProcess.start_new(processes, redis_binary, persistent=True)
    sentinel = await processes.our_sentinel(node_id="redisSentinel01")
    await start_agents(processes, sentinel, [chat_replica(llm.url, redis.url)])
    conversation = new_id()
    async with chat_client(sentinel) as chat:
        await start_conversation(chat, conversation)
        assert await chat.run_turn(conversation, "one", turn_id=new_id()) == answer(0, "one")

        await _kill_redis_fail_a_turn_and_start_it_again(chat, redis, conversation)

        assert await chat.run_turn(conversation, "two", turn_id=new_id()) == answer(1, "two")
    assert messages(await load(redis.url, conversation)) == history_of(["one", "two"])


async def test_a_conversation_lost_with_an_unpersisted_redis_gets_a_clear_no_conversation_error(
    processes: ProcessPool, llm: OpenAIStubServer, redis_binary: str
) -> None:
    """Without persistence, Redis comes back empty: the turn says so, and a new start works."""
    redis = await RedisProcess.start_new(processes, redis_binary, persistent=False)
    sentinel = await processes.our_sentinel(node_id="redisSentinel02")
    await start_agents(processes, sentinel, [chat_replica(llm.url, redis.url)])
    conversation = new_id()
    async with chat_client(sentinel) as chat:
        await start_conversation(chat, conversation)
        assert await chat.run_turn(conversation, "one", turn_id=new_id()) == answer(0, "one")

        await _kill_redis_fail_a_turn_and_start_it_again(chat, redis, conversation)

        with pytest.raises(RemoteError) as caught:
            await chat.run_turn(conversation, "two", turn_id=new_id())
        assert caught.value.data == {"code": "conversation_not_found"}
        assert f"no conversation {conversation!r}" in caught.value.message
        await start_conversation(chat, conversation)
        assert await chat.run_turn(conversation, "two", turn_id=new_id()) == answer(0, "two")


# -- load: 200 conversations x 20 turns over 3 replicas, one of them killed ----------

CONVERSATIONS = 200
TURNS = 20
CONCURRENCY = 50
MAX_ATTEMPTS = 10
VICTIM_CALLS = 5  # turns of the victim's conversations in flight when it is killed


def load_question(conversation: str, turn: int) -> str:
    """The ``turn``-th question of a conversation of the load."""
    return f"question {turn} of {conversation}"


@dataclass
class Load:
    """Drives many conversations through a proxy; retries route failures under the same turn id."""

    chat: RemoteAgent
    done: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    halfway: asyncio.Event = field(default_factory=asyncio.Event)
    asking: set[str] = field(default_factory=set)  # conversations with a turn in flight

    async def start(self, conversation: str) -> None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                await start_conversation(self.chat, conversation)
                return
            except (NoRoute, ConnectionClosed) as exc:
                self.retries[type(exc).__name__] += 1
            except RemoteError as exc:
                # A start whose answer was lost with its replica did happen.
                if attempt and exc.data == {"code": "conversation_exists"}:
                    return
                raise
        raise AssertionError(f"could not start {conversation} in {MAX_ATTEMPTS} attempts")

    async def turn(self, conversation: str, turn: int) -> None:
        question = load_question(conversation, turn)
        turn_id = f"{conversation}/{turn}"
        for _ in range(MAX_ATTEMPTS):
            self.asking.add(conversation)
            try:
                reply = await self.chat.run_turn(conversation, question, turn_id=turn_id)
                break
            except (NoRoute, ConnectionClosed) as exc:
                self.retries[type(exc).__name__] += 1
            finally:
                self.asking.discard(conversation)
        else:
            raise AssertionError(f"turn {turn_id} failed {MAX_ATTEMPTS} times")
        if reply != answer(turn, question):
            self.wrong.append(f"{turn_id}: {reply!r}")
        self.done += 1
        if self.done == CONVERSATIONS * TURNS // 2:
            self.halfway.set()

    async def conversation(self, conversation: str, slots: asyncio.Semaphore) -> None:
        async with slots:
            await self.start(conversation)
            for turn in range(TURNS):
                await self.turn(conversation, turn)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_200_conversations_over_3_replicas_lose_and_duplicate_no_turn_across_a_kill_9(
    processes: ProcessPool, redis_binary: str
) -> None:
    """4,000 turns, 50 conversations at a time; halfway a replica is killed and started again."""
    redis = await RedisProcess.start_new(processes, redis_binary, persistent=False)
    llm = processes.spawn(
        "llm", [OUR_PYTHON, "-m", "famefabric.testing.openai_server", "--port", "0"]
    )
    llm_url = (await llm.wait_for_line(r"^listening on (\S+)", within=20)).group(1)
    sentinel = await processes.our_sentinel(node_id="loadSentinel01")
    spec = chat_replica(llm_url, redis.url)
    replicas = await start_agents(processes, sentinel, [spec] * 3)
    victim = replicas[0]
    conversations = [f"load-{index:03d}-{new_id()}" for index in range(CONVERSATIONS)]

    async with chat_client(sentinel, call_timeout=LEASE_EXPIRY) as chat:
        driver = Load(chat)

        cut: set[str] = set()

        def asking_the_victim() -> set[str]:
            # Its log names the conversations it started: read anew each time, as halfway
            # is when a wave of conversations is being started.
            return driver.asking & started_conversations(victim)

        async def kill_and_restart_halfway() -> None:
            await driver.halfway.wait()
            # Kill only while turns of the victim's own conversations are in flight, so the
            # kill is known to cut calls.
            assert await wait_for(lambda: len(asking_the_victim()) >= VICTIM_CALLS, within=30), (
                f"no {VICTIM_CALLS} turns of the victim's conversations were ever in flight at once"
            )
            cut.update(asking_the_victim())
            victim.kill9()
            await start_again(victim, spec)

        slots = asyncio.Semaphore(CONCURRENCY)
        fault = asyncio.ensure_future(kill_and_restart_halfway())
        try:
            await asyncio.gather(*(driver.conversation(c, slots) for c in conversations))
            await fault
        finally:
            fault.cancel()

    print(f"killed with {len(cut)} of its conversations asking; retries {driver.retries}")
    assert driver.wrong == [], f"{len(driver.wrong)} replies lacked history: {driver.wrong[:5]}"
    assert sum(driver.retries.values()) > 0, (
        f"the kill cut no call ({len(cut)} of the victim's conversations were asking): "
        "the test proved nothing"
    )
    assert started_conversations(victim), "the restarted replica took no conversation"
    async with open_store(redis.url) as store:
        for conversation in conversations:
            state = await store.load(conversation)
            expected = history_of([load_question(conversation, turn) for turn in range(TURNS)])
            assert messages(state) == expected, f"{conversation} is not its {TURNS} turns in order"
            assert state is not None and state.version == TURNS


# -- 100 conversations at once over 3 replicas: every turn answered, no lease left ----

AT_ONCE = 100
AT_ONCE_TURNS = 12
TURN_WITHIN = 30.0
"""Seconds a turn may take under this load (a few, on a loaded machine)."""


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_100_conversations_at_once_over_3_replicas_answer_every_turn_and_leave_no_lease(
    processes: ProcessPool, redis_binary: str
) -> None:
    """Turns that end while their lease is being renewed give the lease back and answer.

    A turn's lease renewer used to stop only on a cancel, which redis-py now and
    then swallows: the renewer then renewed the lease forever, the turn never
    answered, and the conversation's next turn found it busy on another replica.
    """
    redis = await RedisProcess.start_new(processes, redis_binary, persistent=False)
    llm = processes.spawn(
        "llm", [OUR_PYTHON, "-m", "famefabric.testing.openai_server", "--port", "0"]
    )
    llm_url = (await llm.wait_for_line(r"^listening on (\S+)", within=20)).group(1)
    sentinel = await processes.our_sentinel(node_id="atOnceSentinel1")
    await start_agents(processes, sentinel, [chat_replica(llm_url, redis.url)] * 3)
    conversations = [f"at-once-{index:03d}-{new_id()}" for index in range(AT_ONCE)]
    slowest = 0.0

    async def converse(chat: RemoteAgent, conversation: str) -> None:
        nonlocal slowest
        await start_conversation(chat, conversation)
        for turn in range(AT_ONCE_TURNS):
            question = load_question(conversation, turn)
            started = time.monotonic()
            reply = await chat.run_turn(conversation, question, turn_id=f"{conversation}/{turn}")
            slowest = max(slowest, time.monotonic() - started)
            assert reply == answer(turn, question)

    async with chat_client(sentinel, call_timeout=TURN_WITHIN) as chat:
        await asyncio.gather(*(converse(chat, conversation) for conversation in conversations))

    async with redis_client(redis.url) as client:
        leases = [key async for key in client.scan_iter(match="famefabric:chat:lease:*")]
    assert leases == [], f"{len(leases)} leases outlived their turns (slowest turn {slowest:.1f} s)"
    async with open_store(redis.url) as store:
        for conversation in conversations:
            state = await store.load(conversation)
            assert state is not None and state.version == AT_ONCE_TURNS


@asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain Redis client, to look at keys the store does not show."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


# -- a Naylence client through our sentinel to two of our replicas ------------------


@pytest.mark.interop
async def test_a_naylence_client_holds_a_conversation_with_two_of_our_replicas_behind_our_sentinel(
    interop_venv: Path, processes: ProcessPool, llm: OpenAIStubServer, tmp_path: Path
) -> None:
    """The reference client's chat scenario passes, served by one of the two replicas."""
    sentinel = await processes.our_sentinel(node_id="interopSentinel1")
    spec = chat_replica(llm.url, store_url(tmp_path / "conversations.db"))
    replicas = await start_agents(processes, sentinel, [spec, spec])
    (run,) = await run_clients(processes, [ClientJob("naylence", "chat", sentinel, address=CHAT)])
    steps = {step["step"]: step for step in run.steps}
    report = json.dumps(run.report)[:2000]
    conversation = steps["start_task"]["value"]["id"]
    # The scenario opens with an empty message, which our agent does not send to the model.
    assert steps["run_turn_1"]["value"] == "echo(1): ", report
    assert steps["run_turn_2"]["value"] == "echo(3): hello there", report
    assert steps["end_conversation"]["ok"], report
    assert f"no conversation {conversation!r}" in steps["run_turn_after_end"]["error"], report
    assert steps["start_task_duplicate"]["ok"], report
    assert "already exists" in steps["start_task_duplicate_again"]["error"], report
    assert steps["end_conversation_cleanup"]["ok"], report
    servers = [replica for replica in replicas if conversation in started_conversations(replica)]
    assert len(servers) == 1, "one replica, the conversation's, should have served it"
