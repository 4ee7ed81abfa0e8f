"""The interop matrix: our client, sentinel and agents against the Naylence reference.

Every ⚑ scenario of CONFORMANCE.md runs through every combination of client
(ours or Naylence), sentinel (ours or Naylence) and agent (ours or
Naylence). One sentinel of each kind serves the whole module, with one agent
of each kind attached to each sentinel under its own addresses:

=================  ======================  ======================
agent              ours                    Naylence
=================  ======================  ======================
echo (C-03..C-06)  ``oecho@fame.fabric``   ``necho@fame.fabric``
tasks (C-07)       ``otasks@fame.fabric``  ``ntasks@fame.fabric``
chat (C-01)        ``ochat@fame.fabric``   ``nchat@fame.fabric``
=================  ======================  ======================

The client scenarios of one combination run as separate processes, several
at a time, the first time a test needs them; their JSON reports are kept for
the module. The all-Naylence combination is the baseline the other runs are
compared with, step by step; where our agent deliberately differs from the
reference, the test asserts our behaviour and says why.

Fault scenarios (C-13, C-15, C-20/C-21) start their own processes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from support.agents import (
    AgentSpec,
    naylence_chat_agent,
    naylence_echo_agent,
    our_chat_agent,
    our_echo_agent,
    start_agents,
)
from support.clients import ClientJob, ClientRun, run_clients
from support.pool import ProcessPool
from support.procs import FAME, ManagedProcess
from support.sentinels import NaylenceSentinel, OurSentinel
from websockets.asyncio.client import ClientConnection, connect

from famefabric.testing.openai_server import OpenAIStubServer

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.asyncio(loop_scope="module"),
]

OURS = "ours"
NAYLENCE = "naylence"

ADDRESSES = {
    OURS: {"echo": "oecho@fame.fabric", "tasks": "otasks@fame.fabric", "chat": "ochat@fame.fabric"},
    NAYLENCE: {
        "echo": "necho@fame.fabric",
        "tasks": "ntasks@fame.fabric",
        "chat": "nchat@fame.fabric",
    },
}
NOBODY = "nobody@fame.fabric"
UNKNOWN_PHYSICAL = "svc@/NoSuchNode"

CALL_TIMEOUT = 10.0
FAST = 3.0
"""Seconds within which a call to an unknown address must fail (never the 30 s timeout)."""


@dataclass(frozen=True)
class Combo:
    """Who plays each role in one run of the scenarios."""

    client: str
    sentinel: str
    agent: str

    @property
    def id(self) -> str:
        return f"{self.client}-client/{self.sentinel}-sentinel/{self.agent}-agent"


BASELINE = Combo(NAYLENCE, NAYLENCE, NAYLENCE)
COMBOS = [
    BASELINE,
    Combo(NAYLENCE, OURS, OURS),
    Combo(OURS, NAYLENCE, NAYLENCE),
    Combo(NAYLENCE, OURS, NAYLENCE),
    Combo(OURS, NAYLENCE, OURS),
    Combo(OURS, OURS, OURS),
    Combo(OURS, OURS, NAYLENCE),
    Combo(NAYLENCE, NAYLENCE, OURS),
]
COMBO_IDS = [combo.id for combo in COMBOS]

# Scenario -> the agent it targets (None: no agent, the address is unbound).
SCENARIO_TARGETS = {
    "ops": "echo",
    "stream": "echo",
    "errors": "echo",
    "unknown": None,
    "a2a": "tasks",
    "a2a_base": "echo",
    "many": "echo",
    "chat": "chat",
    "chat_stream": "chat",
}


@dataclass
class Stack:
    """The module's sentinels (keyed by kind) and the agents attached to them."""

    sentinels: dict[str, OurSentinel | NaylenceSentinel]
    agents: list[ManagedProcess]

    def require_running(self) -> None:
        """Fail with the logs of any sentinel or agent of the stack that has exited."""
        processes = [sentinel.process for sentinel in self.sentinels.values()] + self.agents
        dead = [process for process in processes if not process.is_running]
        if dead:
            names = ", ".join(f"{p.name} (status {p.returncode})" for p in dead)
            raise dead[0].fail(f"processes of the shared stack exited: {names}", *dead[1:])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    interop_venv: Path, module_processes: ProcessPool, openai_stub: OpenAIStubServer
) -> Stack:
    """Both sentinels, each with our and the Naylence echo/tasks and chat agents attached."""
    naylence = await module_processes.naylence_sentinel(node_id="refSentinel01", wait=False)
    ours = await module_processes.our_sentinel(node_id="ourSentinel01")
    sentinels: dict[str, OurSentinel | NaylenceSentinel] = {OURS: ours, NAYLENCE: naylence}

    def specs() -> list[AgentSpec]:
        return [
            our_echo_agent(ADDRESSES[OURS]["echo"], tasks_address=ADDRESSES[OURS]["tasks"]),
            naylence_echo_agent(
                ADDRESSES[NAYLENCE]["echo"], tasks_address=ADDRESSES[NAYLENCE]["tasks"]
            ),
            our_chat_agent(ADDRESSES[OURS]["chat"], openai_stub.url),
            naylence_chat_agent(ADDRESSES[NAYLENCE]["chat"], openai_stub.url),
        ]

    # Agents of our sentinel start while the Naylence sentinel is still starting.
    agents = await start_agents(module_processes, ours, specs())
    await naylence.start()
    agents += await start_agents(module_processes, naylence, specs())
    return Stack(sentinels=sentinels, agents=agents)


class Matrix:
    """Client reports per (client, sentinel, agent, scenario), run on first use.

    Asking for one scenario of a combination runs all the scenarios of that
    combination that have not run yet, at once.
    """

    def __init__(self, stack: Stack, pool: ProcessPool) -> None:
        self._stack = stack
        self._pool = pool
        self._runs: dict[tuple[str, str, str | None, str], ClientRun] = {}

    @staticmethod
    def _key(combo: Combo, scenario: str) -> tuple[str, str, str | None, str]:
        agent = combo.agent if SCENARIO_TARGETS[scenario] is not None else None
        return (combo.client, combo.sentinel, agent, scenario)

    def _job(self, combo: Combo, scenario: str) -> ClientJob:
        target = SCENARIO_TARGETS[scenario]
        address = ADDRESSES[combo.agent][target] if target is not None else NOBODY
        return ClientJob(
            client=combo.client,
            scenario=scenario,
            sentinel=self._stack.sentinels[combo.sentinel],
            address=address,
            timeout=CALL_TIMEOUT,
        )

    async def run(self, combo: Combo, scenario: str) -> ClientRun:
        """The report of ``scenario`` in ``combo`` (running the combination if needed)."""
        key = self._key(combo, scenario)
        if key not in self._runs:
            self._stack.require_running()
            missing = [s for s in SCENARIO_TARGETS if self._key(combo, s) not in self._runs]
            runs = await run_clients(self._pool, [self._job(combo, s) for s in missing], parallel=8)
            for name, client_run in zip(missing, runs, strict=True):
                self._runs[self._key(combo, name)] = client_run
        return self._runs[key]


@pytest.fixture(scope="module")
def matrix(stack: Stack, module_processes: ProcessPool) -> Matrix:
    """Lazily computed client reports of every combination."""
    return Matrix(stack, module_processes)


def step(run: ClientRun, name: str) -> dict[str, Any]:
    """One step of a report, with a readable failure when it is missing."""
    return run.step(name)


def explain(run: ClientRun) -> str:
    """The whole report, for assertion messages."""
    return json.dumps(run.report, indent=1)[:6000]


def assert_clean_exit(run: ClientRun) -> None:
    """Our client must not leave tracebacks behind (unawaited tasks, errors at exit)."""
    if run.job.client == OURS:
        assert "Traceback" not in run.process.stderr(), run.process.describe()


def error_of(record: dict[str, Any]) -> str:
    return str(record.get("error", ""))


def task_state(value: Any) -> str | None:
    """The state of a Task (or status event) in wire JSON."""
    if isinstance(value, dict) and isinstance(value.get("status"), dict):
        state = value["status"].get("state")
        return state if isinstance(state, str) else None
    return None


def status_data(value: Any) -> Any:
    """The data of the first DataPart of a Task's status message."""
    message = value.get("status", {}).get("message") if isinstance(value, dict) else None
    for part in (message or {}).get("parts", []):
        if part.get("type") == "data":
            return part.get("data")
    return None


def artifact_steps(items: list[Any]) -> list[int]:
    """The ``step`` numbers of the artifact events of a subscription stream."""
    steps = []
    for item in items:
        if isinstance(item, dict) and "artifact" in item:
            for part in item["artifact"].get("parts", []):
                if part.get("type") == "data":
                    steps.append(part["data"]["step"])
    return steps


# ---------------------------------------------------------------------------
# C-03, C-04, C-06: operations, streams, errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
async def test_unary_operations_return_the_reference_values(combo: Combo, matrix: Matrix) -> None:
    """C-03: kwargs, positional args and a None result come back as from the reference."""
    run = await matrix.run(combo, "ops")
    baseline = await matrix.run(BASELINE, "ops")
    expected = {"echo": "hello", "echo_positional": "positional", "add": 7, "nothing": None}
    for name, value in expected.items():
        assert step(baseline, name)["value"] == value, explain(baseline)
        record = step(run, name)
        assert record["ok"], explain(run)
        assert record["value"] == step(baseline, name)["value"], explain(run)
    assert_clean_exit(run)


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
async def test_streams_yield_items_then_end_or_fail_like_the_reference(
    combo: Combo, matrix: Matrix
) -> None:
    """C-04: items then the end marker; an empty stream; an error after two items."""
    run = await matrix.run(combo, "stream")
    baseline = await matrix.run(BASELINE, "stream")
    for name in ("count", "count_zero", "count_then_fail"):
        ours, reference = step(run, name), step(baseline, name)
        assert ours["ok"] == reference["ok"], explain(run)
        assert ours["items"] == reference["items"], explain(run)
    assert step(run, "count")["items"] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert "failed after 2" in error_of(step(run, "count_then_fail")), explain(run)
    assert_clean_exit(run)


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
async def test_operation_errors_reach_the_caller_with_their_message(
    combo: Combo, matrix: Matrix
) -> None:
    """C-06: raised exceptions, unknown methods and missing arguments."""
    run = await matrix.run(combo, "errors")
    for name in ("boom", "unknown_method", "bad_args", "raw_unknown_method", "fail"):
        assert not step(run, name)["ok"], explain(run)
    assert "kaboom" in error_of(step(run, "boom"))
    assert "kaboom" in error_of(step(run, "fail"))
    assert "Method not found" in error_of(step(run, "unknown_method"))
    assert "Method not found" in error_of(step(run, "raw_unknown_method"))
    bad_args = error_of(step(run, "bad_args"))
    if combo.agent == NAYLENCE:
        assert "missing 1 required positional argument: 'y'" in bad_args, explain(run)
    else:
        # Ours answers -32602 "invalid params", naming the method and the
        # missing parameter, where the reference sends Python's TypeError text.
        assert "invalid params for EchoAgent.add" in bad_args, explain(run)
        assert "'y'" in bad_args, explain(run)
    assert_clean_exit(run)


# ---------------------------------------------------------------------------
# C-05: unknown addresses
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
async def test_calls_to_unknown_addresses_fail_fast_naming_the_address(
    combo: Combo, matrix: Matrix
) -> None:
    """C-05: the sentinel NACKs at once; the caller fails well before any timeout."""
    run = await matrix.run(combo, "unknown")
    for name, address in (
        ("invoke_unbound_logical", NOBODY),
        ("invoke_unknown_physical", UNKNOWN_PHYSICAL),
    ):
        record = step(run, name)
        assert not record["ok"], explain(run)
        assert address in error_of(record), explain(run)
        assert record["secs"] < FAST, explain(run)
    streamed = step(run, "stream_unbound_logical")
    assert streamed["secs"] < FAST, explain(run)
    if combo.client == NAYLENCE:
        # The reference client turns a NACK in a stream into one -32099 error item (§7.7).
        baseline = step(await matrix.run(BASELINE, "unknown"), "stream_unbound_logical")
        assert streamed["ok"] == baseline["ok"], explain(run)
        (item,) = streamed["items"]
        assert item["error"]["code"] == -32099, explain(run)
        assert "NO_ROUTE" in item["error"]["message"], explain(run)
        assert NOBODY in item["error"]["message"], explain(run)
    else:
        # Our client raises NoRoute from the iteration instead.
        assert not streamed["ok"], explain(run)
        assert streamed["items"] == [], explain(run)
        assert NOBODY in error_of(streamed), explain(run)
    assert_clean_exit(run)


# ---------------------------------------------------------------------------
# C-07, C-35: A2A
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
async def test_a2a_background_tasks_run_subscribe_and_cancel_like_the_reference(
    combo: Combo, matrix: Matrix
) -> None:
    """C-07: send, get, subscribe (+ unsubscribe), cancel, errors and run_task."""
    run = await matrix.run(combo, "a2a")
    assert task_state(step(run, "tasks_send")["value"]) == "working", explain(run)
    # The task takes 0.4 s; a slow machine may see it finished already.
    assert task_state(step(run, "tasks_get")["value"]) in ("working", "completed"), explain(run)

    subscription = step(run, "tasks_sendSubscribe")
    assert subscription["ok"], explain(run)
    items = subscription["items"]
    assert task_state(items[-1]) == "completed", explain(run)
    assert status_data(items[-1]) == {"done": 2}, explain(run)
    steps = artifact_steps(items)
    if combo.agent == OURS:
        # Ours replays the artifacts produced before the subscription too. It
        # starts with the current status when the task still runs; a task that
        # finished before the subscription (a slow machine, a slower sentinel)
        # has only its terminal status, after the replayed artifacts.
        assert steps == [1, 2], explain(run)
        states = [task_state(item) for item in items if task_state(item) is not None]
        assert states in (["working", "completed"], ["completed"]), explain(run)
        if states[0] == "working":
            assert task_state(items[0]) == "working", explain(run)
    else:
        assert steps == sorted(steps) and steps[-1:] == [2], explain(run)

    after = step(run, "tasks_get_after")["value"]
    assert task_state(after) == "completed" and status_data(after) == {"done": 2}, explain(run)
    assert task_state(step(run, "tasks_send_2")["value"]) == "working", explain(run)
    assert task_state(step(run, "tasks_cancel")["value"]) == "canceled", explain(run)

    expected_errors = {
        "tasks_get_unknown": "Internal error",
        "tasks_resubscribe_raw": "Method not found",
        "tasks_pushNotification_get_raw": "Push Notification is not supported",
        "tasks_send_invalid_params_raw": "Request payload validation error",
        "run_task_failing": "task asked to fail",
    }
    for name, text in expected_errors.items():
        record = step(run, name)
        assert not record["ok"] and text in error_of(record), explain(run)
    if combo.client == OURS:
        # Our client also shows the error's data, which names the task.
        assert "nope" in error_of(step(run, "tasks_get_unknown")), explain(run)
    assert step(run, "run_task_ok")["value"] == {"done": 2}, explain(run)
    assert_clean_exit(run)


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
async def test_a2a_on_a_plain_agent_runs_tasks_synchronously(combo: Combo, matrix: Matrix) -> None:
    """C-35: tasks/send runs run_task; get, cancel and subscribe as each agent defines them."""
    run = await matrix.run(combo, "a2a_base")
    for name, payload in (("tasks_send_text", "hi"), ("tasks_send_data", {"a": 1})):
        task = step(run, name)["value"]
        assert task_state(task) == "completed", explain(run)
        assert status_data(task) == {"echo": payload, "task": task["id"]}, explain(run)
    assert step(run, "run_task")["value"]["echo"] == {"a": 2}, explain(run)
    cancel = step(run, "tasks_cancel_unsupported")
    assert not cancel["ok"] and "Task cannot be canceled" in error_of(cancel), explain(run)

    get = step(run, "tasks_get_unsupported")
    subscribe = step(run, "tasks_sendSubscribe_polling")
    if combo.agent == NAYLENCE:
        assert "does not support operation 'get_task_status'" in error_of(get), explain(run)
        # The reference agent answers tasks/sendUnsubscribe with an error, which
        # fails the subscription at its end (PROTOCOL.md §11.2).
        assert not subscribe["ok"], explain(run)
        assert "unsubscribe_task" in error_of(subscribe), explain(run)
    else:
        # Ours answers tasks/get for the tasks it ran, and tasks/sendUnsubscribe
        # with success, so the subscription works (CONFORMANCE C-35, "Ours").
        assert get["ok"] and task_state(get["value"]) == "completed", explain(run)
        assert subscribe["ok"], explain(run)
        assert task_state(subscribe["items"][-1]) == "completed", explain(run)
    assert_clean_exit(run)


# ---------------------------------------------------------------------------
# C-27/C-28: credits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
async def test_eighty_sequential_calls_all_succeed_across_credit_windows(
    combo: Combo, matrix: Matrix
) -> None:
    """C-27/C-28: 80 calls cross several 32-credit windows on every hop; none stalls."""
    run = await matrix.run(combo, "many")
    record = step(run, "many")
    assert record["ok"] and record["value"] == 80, record
    assert_clean_exit(run)


# ---------------------------------------------------------------------------
# C-01: the stateful conversation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
async def test_stateful_conversation_keeps_history_and_ends(combo: Combo, matrix: Matrix) -> None:
    """C-01: start, two turns with history, end; a turn after the end fails; duplicates."""
    run = await matrix.run(combo, "chat")
    start = step(run, "start_task")
    assert start["ok"] and task_state(start["value"]) == "working", explain(run)
    conversation = start["value"]["id"]
    # The stub counts the messages it is sent. The reference sends the opening
    # empty message as a user message (system + user, then + assistant + user);
    # ours never sends or stores a blank user message: it asks the assistant to
    # speak without new input, so one message fewer reaches the model each turn.
    if combo.agent == NAYLENCE:
        assert step(run, "run_turn_1")["value"] == "echo(2): ", explain(run)
        assert step(run, "run_turn_2")["value"] == "echo(4): hello there", explain(run)
    else:
        assert step(run, "run_turn_1")["value"] == "echo(1): ", explain(run)
        assert step(run, "run_turn_2")["value"] == "echo(3): hello there", explain(run)
    ended = step(run, "end_conversation")
    assert ended["ok"] and ended["value"] is None, explain(run)

    after_end = step(run, "run_turn_after_end")
    assert not after_end["ok"], explain(run)
    assert step(run, "start_task_duplicate")["ok"], explain(run)
    duplicate = step(run, "start_task_duplicate_again")
    assert not duplicate["ok"], explain(run)
    assert step(run, "end_conversation_cleanup")["ok"], explain(run)
    if combo.agent == NAYLENCE:
        assert f"Invalid task: {conversation}" in error_of(after_end), explain(run)
        assert "Internal error" in error_of(duplicate), explain(run)
    else:
        # Ours names the conversation and says what to do instead of the
        # reference's "Invalid task" / "Internal error".
        assert f"no conversation {conversation!r}" in error_of(after_end), explain(run)
        assert "already exists" in error_of(duplicate), explain(run)
    assert_clean_exit(run)


def chat_transcript(stdout: str) -> list[str]:
    """The answer lines of a ``fame chat`` session."""
    return [line for line in stdout.splitlines() if line.startswith("A> ")]


@pytest.mark.parametrize(
    ("sentinel_kind", "agent_kind"),
    [(NAYLENCE, NAYLENCE), (OURS, OURS), (NAYLENCE, OURS), (OURS, NAYLENCE)],
    ids=lambda kind: str(kind),
)
async def test_fame_chat_answers_piped_questions(
    sentinel_kind: str, agent_kind: str, stack: Stack, module_processes: ProcessPool
) -> None:
    """``fame chat`` with questions on stdin, one per line, prints one ``A> `` line each."""
    stack.require_running()
    sentinel = stack.sentinels[sentinel_kind]
    chat = module_processes.spawn(
        "fame-chat",
        [
            FAME,
            "chat",
            "--address",
            ADDRESSES[agent_kind]["chat"],
            "--system-prompt",
            "You are terse",
            "--timeout",
            "10",
        ],
        env=sentinel.node_env(),
        stdin_pipe=True,
    )
    chat.send_stdin(b"hello\nhow are you\n")
    status = await chat.wait_exit(30)
    assert status == 0, chat.describe()
    assert chat_transcript(chat.stdout()) == [
        "A> echo(2): hello",
        "A> echo(4): how are you",
    ], chat.describe()


# ---------------------------------------------------------------------------
# C-40: malformed input
# ---------------------------------------------------------------------------


def _envelope(frame: dict[str, Any], **fields: Any) -> bytes:
    body = {"version": "1.0", "id": f"raw{time.monotonic_ns()}", **fields, "frame": frame}
    return json.dumps(body).encode()


async def _read_until_acked(
    connection: ClientConnection, corr_ids: set[str], within: float
) -> set[str]:
    acked: set[str] = set()
    async with asyncio.timeout(within):
        while acked != corr_ids:
            message = await connection.recv()
            envelope = json.loads(message)
            if envelope.get("frame", {}).get("type") == "NodeHeartbeatAck":
                acked.add(envelope.get("corrId"))
    return acked


@pytest.mark.parametrize("sentinel_kind", [OURS, NAYLENCE])
async def test_malformed_envelopes_are_dropped_and_the_connection_keeps_working(
    sentinel_kind: str, stack: Stack
) -> None:
    """C-40: garbage, unknown frames, no frame, a bad ``to``; heartbeats are still acked."""
    sentinel = stack.sentinels[sentinel_kind]
    node_id = f"raw{sentinel_kind}Node{time.monotonic_ns() % 100000}"
    url = f"{sentinel.admission_url}/{node_id}"
    async with connect(url, compression=None, open_timeout=5) as connection:
        attach = {
            "type": "NodeAttach",
            "originType": "downstream",
            "systemId": node_id,
            "instanceId": "rawInstance0001",
            "acceptedLogicals": ["fame.fabric"],
            "callbackGrants": [],
        }
        await connection.send(_envelope(attach, corrId="attach-1", traceId="trace-1"))
        async with asyncio.timeout(5):
            while True:
                envelope = json.loads(await connection.recv())
                if envelope["frame"]["type"] == "NodeAttachAck":
                    break
        assert envelope["frame"]["ok"] is True, envelope
        path = envelope["frame"]["assignedPath"]

        await connection.send(b"\x00\x01 this is not JSON")
        await connection.send(_envelope({"type": "NoSuchFrame"}, corrId="unknown-frame"))
        await connection.send(json.dumps({"id": "no-frame", "corrId": "no-frame"}).encode())
        request = {
            "type": "Data",
            "payload": {"jsonrpc": "2.0", "id": "r1", "method": "echo", "params": {}},
        }
        await connection.send(
            _envelope(request, to="not an address", replyTo=f"__rpc__raw@{path}", corrId="r1")
        )
        await connection.send(
            json.dumps(
                {
                    "version": "2.0",
                    "id": "future-version",
                    "corrId": "hb-future",
                    "someNewField": {"x": 1},
                    "frame": {"type": "NodeHeartbeat", "someNewFrameField": True},
                }
            ).encode()
        )
        await connection.send(
            json.dumps({"frame": {"type": "NodeHeartbeat"}, "corrId": "hb-minimal"}).encode()
        )
        acked = await _read_until_acked(connection, {"hb-future", "hb-minimal"}, within=5)
        assert acked == {"hb-future", "hb-minimal"}


# ---------------------------------------------------------------------------
# C-13: two copies of our client
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sentinel_kind", [OURS, NAYLENCE])
async def test_two_copies_of_our_client_get_different_ids_and_both_succeed(
    sentinel_kind: str, stack: Stack, module_processes: ProcessPool
) -> None:
    """C-13: our nodes pick random ids, so two copies of one script never replace each other."""
    stack.require_running()
    sentinel = stack.sentinels[sentinel_kind]
    job = ClientJob(OURS, "ops", sentinel, ADDRESSES[sentinel_kind]["echo"], CALL_TIMEOUT)
    first, second = await run_clients(module_processes, [job, job], parallel=2)
    assert first.report["node_id"] != second.report["node_id"]
    for run in (first, second):
        assert all(record["ok"] for record in run.steps), explain(run)


# ---------------------------------------------------------------------------
# C-15, C-20/C-21: faults (own processes)
# ---------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def restartable_stack(
    interop_venv: Path, processes: ProcessPool
) -> AsyncIterator[tuple[OurSentinel, list[ManagedProcess]]]:
    """Our sentinel with a Naylence and our echo agent, for tests that restart or kill."""
    sentinel = await processes.our_sentinel(node_id="ourRestarted01")
    agents = await start_agents(
        processes,
        sentinel,
        [our_echo_agent(ADDRESSES[OURS]["echo"]), naylence_echo_agent(ADDRESSES[NAYLENCE]["echo"])],
    )
    yield sentinel, agents


async def test_agents_reattach_and_serve_after_our_sentinel_restarts(
    restartable_stack: tuple[OurSentinel, list[ManagedProcess]], processes: ProcessPool
) -> None:
    """C-20/C-21: same id, same port: our and the Naylence agent re-bind and answer again."""
    sentinel, agents = restartable_stack
    addresses = [ADDRESSES[OURS]["echo"], ADDRESSES[NAYLENCE]["echo"]]
    jobs = [ClientJob(OURS, "echo", sentinel, address, CALL_TIMEOUT) for address in addresses]
    for run in await run_clients(processes, jobs):
        assert step(run, "echo")["ok"], explain(run)

    await sentinel.restart()
    for address in addresses:
        await sentinel.wait_bound(address, within=20)
    for agent in agents:
        assert agent.is_running, agent.describe()

    for run in await run_clients(processes, jobs):
        record = step(run, "echo")
        assert record["ok"] and record["value"] == "hello", explain(run)


async def test_our_caller_fails_promptly_when_our_agent_dies_mid_call(
    interop_venv: Path, processes: ProcessPool
) -> None:
    """C-15: our sentinel NACKs the in-flight request; our caller does not wait 10 s (or 30)."""
    sentinel = await processes.our_sentinel(node_id="ourMidCall01")
    (agent,) = await start_agents(processes, sentinel, [our_echo_agent(ADDRESSES[OURS]["echo"])])
    client = processes.spawn(
        "our-client-sleep",
        ClientJob(OURS, "sleep", sentinel, ADDRESSES[OURS]["echo"], CALL_TIMEOUT).argv(),
        env=sentinel.node_env(),
    )
    await agent.wait_for_line(r"^SLEEPING ", within=15, what="the start of the sleep call")
    killed_at = time.monotonic()
    agent.kill9()
    await client.wait_exit(CALL_TIMEOUT + 5)
    elapsed = time.monotonic() - killed_at
    report = json.loads(client.stdout().splitlines()[-1])
    (record,) = report["steps"]
    assert not record["ok"], report
    assert elapsed < 5.0, f"the caller took {elapsed:.1f} s after the kill: {report}"
    error = error_of(record)
    assert re.search(r"disconnected|CHILD_UNREACHABLE|connection", error), report
    assert ADDRESSES[OURS]["echo"] in error, report


@pytest.mark.parametrize(
    "combo",
    [combo for combo in COMBOS if combo.agent == OURS],
    ids=[combo.id for combo in COMBOS if combo.agent == OURS],
)
async def test_streaming_turn_of_our_chat_agent_reaches_either_client(
    combo: Combo, matrix: Matrix
) -> None:
    """A Naylence client (and ours) consumes ``stream_turn`` piece by piece."""
    run = await matrix.run(combo, "chat_stream")
    items = step(run, "stream_turn")
    assert items["ok"], explain(run)
    pieces = [str(item) for item in items["items"]]
    assert len(pieces) > 1, explain(run)
    assert "".join(pieces) == "echo(2): hello there", explain(run)
    assert step(run, "end_conversation")["ok"], explain(run)
