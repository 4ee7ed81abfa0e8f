"""Run a named interop scenario with our client (famefabric proxies).

Usage::

    FAME_DIRECT_ADMISSION_URL=ws://127.0.0.1:8123/fame/v1/attach/ws/downstream \\
        .venv/bin/python tests/interop/agents/our_client.py \\
        SCENARIO [ADDRESS] [--timeout SECONDS] [--count N] [--seconds S]

The scenarios, their steps and their default targets are those of the
Naylence client peer (``tests/interop/peers/naylence_client.py``), so that
the two clients' reports can be compared step by step, plus three used by
fault tests: ``sleep`` (one ``sleep(--seconds)`` call), ``whoami``
(``--count`` calls to ``whoami``; ``value`` lists the answers) and ``echo``
(one ``echo`` call).

Prints exactly one JSON object on stdout::

    {"scenario": ..., "target": ..., "node_id": ..., "secs": ...,
     "steps": [{"step": ..., "ok": bool, "value" | "items": ...,
                "error": "ExcType: message", "secs": ...}]}

Unary steps report ``value``, streams ``items`` (what arrived before the end
or the error). A2A results are reported as their wire JSON. Every call is
bounded by ``--timeout`` seconds (default 10). Exit status: 0 when the
scenario ran, 1 when the node could not attach, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from famefabric import Agent, FameFabric, make_task_params
from famefabric.agent.a2a import _Wire
from famefabric.protocol.ids import new_id

Scenario = Callable[["Runner", str], Awaitable[None]]

DEFAULT_TIMEOUT = 10.0
CHAT_PROMPT = "You are a helpful assistant speaking Pirate"


def to_json(value: Any) -> Any:
    """Convert results (A2A models, tuples, ...) to plain JSON values."""
    if isinstance(value, _Wire):
        return value.to_wire()
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def describe(exc: BaseException, timeout: float) -> str:
    """Render an exception as ``"ExcType: message"``."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"TimeoutError: no answer within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"


class Runner:
    """Runs the steps of one scenario and records their outcomes.

    Args:
        fabric: the attached fabric.
        timeout: seconds each call (or stream) may take.
        count: calls made by the ``whoami`` scenario.
        seconds: the duration asked of ``sleep`` by the ``sleep`` scenario.
    """

    def __init__(
        self, fabric: FameFabric, timeout: float, *, count: int = 10, seconds: float = 8.0
    ) -> None:
        self.fabric = fabric
        self.timeout = timeout
        self.count = count
        self.seconds = seconds
        self.steps: list[dict[str, Any]] = []

    def proxy(self, address: str) -> Any:
        """Return the generic proxy for ``address``."""
        return Agent.remote_by_address(address, fabric=self.fabric)

    def raw(self, address: str, method: str, params: Any) -> Awaitable[Any]:
        """Call ``method`` with exactly ``params`` (no args/kwargs wrapping)."""
        return self.fabric.node.call(address, method, params, timeout=self.timeout)

    async def call(self, step: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """Await one unary call under the timeout; record its value or error."""
        started = time.monotonic()
        record: dict[str, Any] = {"step": step}
        value: Any = None
        try:
            # Our node enforces the same timeout; this outer bound is a safety net.
            value = await asyncio.wait_for(make(), self.timeout + 2.0)
            record.update(ok=True, value=to_json(value))
        except Exception as exc:
            record.update(ok=False, error=describe(exc, self.timeout))
        record["secs"] = round(time.monotonic() - started, 3)
        self.steps.append(record)
        return value

    async def stream(self, step: str, make: Callable[[], AsyncIterator[Any]]) -> list[Any]:
        """Consume one stream under the timeout; record its items and error."""
        started = time.monotonic()
        record: dict[str, Any] = {"step": step}
        items: list[Any] = []

        async def consume() -> None:
            async for item in make():
                items.append(to_json(item))

        try:
            await asyncio.wait_for(consume(), self.timeout + 2.0)
            record.update(ok=True, items=items)
        except Exception as exc:
            record.update(ok=False, items=items, error=describe(exc, self.timeout))
        record["secs"] = round(time.monotonic() - started, 3)
        self.steps.append(record)
        return items

    def note(self, step: str, **fields: Any) -> None:
        """Record a summary step computed by the scenario itself."""
        self.steps.append({"step": step, **fields})


async def scenario_ops(run: Runner, address: str) -> None:
    """C-03: unary operations with kwargs, positional args and a None result."""
    agent = run.proxy(address)
    await run.call("echo", lambda: agent.echo(text="hello"))
    await run.call("echo_positional", lambda: agent.echo("positional"))
    await run.call("add", lambda: agent.add(x=3, y=4))
    await run.call("nothing", lambda: agent.nothing())


async def scenario_stream(run: Runner, address: str) -> None:
    """C-04: streaming operations: items, empty stream, error after items."""
    agent = run.proxy(address)
    await run.stream("count", lambda: agent.count(n=3))
    await run.stream("count_zero", lambda: agent.count(n=0))
    await run.stream("count_then_fail", lambda: agent.count_then_fail(n=2))


async def scenario_errors(run: Runner, address: str) -> None:
    """C-06: operation errors, unknown methods and missing arguments."""
    agent = run.proxy(address)
    await run.call("boom", lambda: agent.boom(msg="kaboom"))
    await run.call("unknown_method", lambda: agent.no_such_method(1))
    await run.call("bad_args", lambda: agent.add(x=1))
    await run.call("raw_unknown_method", lambda: run.raw(address, "no/such", {}))
    await run.call("fail", lambda: agent.fail())


async def scenario_unknown(run: Runner, address: str) -> None:
    """C-05: calls and a stream to addresses nobody serves."""
    nobody = run.proxy(address)
    await run.call("invoke_unbound_logical", lambda: nobody.echo(text="x"))
    await run.call("invoke_unknown_physical", lambda: run.raw("svc@/NoSuchNode", "echo", {}))
    await run.stream("stream_unbound_logical", lambda: nobody.count(n=2))


async def scenario_a2a(run: Runner, address: str) -> None:
    """C-07: A2A task methods against a background-task agent."""
    agent = run.proxy(address)
    first, second = new_id(), new_id()
    await run.call(
        "tasks_send", lambda: agent.start_task(id=first, payload={"steps": 2, "delay": 0.2})
    )
    await run.call("tasks_get", lambda: agent.get_task_status(id=first))
    await run.stream(
        "tasks_sendSubscribe",
        lambda: agent.subscribe_to_task_updates(params=make_task_params(id=first)),
    )
    await run.call("tasks_get_after", lambda: agent.get_task_status(id=first))
    await run.call(
        "tasks_send_2", lambda: agent.start_task(id=second, payload={"steps": 20, "delay": 0.2})
    )
    await run.call("tasks_cancel", lambda: agent.cancel_task(id=second))
    await run.call("tasks_get_unknown", lambda: agent.get_task_status(id="nope"))
    await run.call(
        "tasks_resubscribe_raw", lambda: run.raw(address, "tasks/resubscribe", {"id": first})
    )
    await run.call(
        "tasks_pushNotification_get_raw",
        lambda: run.raw(address, "tasks/pushNotification/get", {"id": first}),
    )
    await run.call(
        "tasks_send_invalid_params_raw", lambda: run.raw(address, "tasks/send", {"nope": 1})
    )
    await run.call(
        "run_task_failing",
        lambda: agent.run_task({"steps": 1, "delay": 0.1, "fail": True}, id=new_id()),
    )
    await run.call("run_task_ok", lambda: agent.run_task({"steps": 2, "delay": 0.1}, id=new_id()))


async def scenario_a2a_base(run: Runner, address: str) -> None:
    """C-35: A2A methods against a plain agent that only implements run_task."""
    agent = run.proxy(address)
    text_task, data_task = new_id(), new_id()
    await run.call("tasks_send_text", lambda: agent.start_task(id=text_task, payload="hi"))
    await run.call("tasks_send_data", lambda: agent.start_task(id=data_task, payload={"a": 1}))
    await run.call("run_task", lambda: agent.run_task({"a": 2}, id=new_id()))
    await run.call("tasks_get_unsupported", lambda: agent.get_task_status(id=text_task))
    await run.call("tasks_cancel_unsupported", lambda: agent.cancel_task(id=text_task))
    await run.stream(
        "tasks_sendSubscribe_polling",
        lambda: agent.subscribe_to_task_updates(params=make_task_params(id=text_task)),
    )


async def scenario_chat(run: Runner, address: str) -> None:
    """C-01: the stateful conversation flow, including the error paths."""
    chat = run.proxy(address)
    conversation = new_id()
    await run.call(
        "start_task",
        lambda: chat.start_task(
            id=conversation, history_length=10, payload={"system_prompt": CHAT_PROMPT}
        ),
    )
    await run.call("run_turn_1", lambda: chat.run_turn(conversation, ""))
    await run.call("run_turn_2", lambda: chat.run_turn(conversation, "hello there"))
    await run.call("end_conversation", lambda: chat.end_conversation(conversation))
    await run.call("run_turn_after_end", lambda: chat.run_turn(conversation, "still there?"))
    await run.call(
        "start_task_duplicate",
        lambda: chat.start_task(id=conversation, payload={"system_prompt": "x"}),
    )
    await run.call(
        "start_task_duplicate_again",
        lambda: chat.start_task(id=conversation, payload={"system_prompt": "x"}),
    )
    await run.call("end_conversation_cleanup", lambda: chat.end_conversation(conversation))


async def scenario_chat_stream(run: Runner, address: str) -> None:
    """A conversation consumed through the streaming ``stream_turn`` operation."""
    chat = run.proxy(address)
    conversation = new_id()
    await run.call(
        "start_task",
        lambda: chat.start_task(
            id=conversation, history_length=10, payload={"system_prompt": CHAT_PROMPT}
        ),
    )
    items = await run.stream("stream_turn", lambda: chat.stream_turn(conversation, "hello there"))
    run.note("stream_turn_text", ok=True, value="".join(str(item) for item in items))
    await run.call("end_conversation", lambda: chat.end_conversation(conversation))


async def scenario_many(run: Runner, address: str, count: int = 80) -> None:
    """C-27/C-28/C-29: sequential echo calls, enough to cross several credit windows."""
    agent = run.proxy(address)
    started = time.monotonic()
    done = 0
    error: str | None = None
    for i in range(count):
        try:
            value = await asyncio.wait_for(agent.echo(text=str(i)), run.timeout + 2.0)
        except Exception as exc:
            error = f"call {i}: {describe(exc, run.timeout)}"
            break
        if value != str(i):
            error = f"call {i}: unexpected reply {value!r}"
            break
        done += 1
    fields: dict[str, Any] = {"ok": error is None, "value": done}
    if error is not None:
        fields["error"] = error
    run.note("many", **fields, secs=round(time.monotonic() - started, 3))


async def scenario_concurrency(run: Runner, address: str) -> None:
    """C-33: three concurrent one-second calls to one agent."""
    agent = run.proxy(address)
    started = time.monotonic()
    await asyncio.gather(
        *(run.call(f"sleep_{i}", lambda: agent.sleep(seconds=1.0)) for i in range(3))
    )
    run.note("concurrent_total", ok=True, value=round(time.monotonic() - started, 3))


async def scenario_echo(run: Runner, address: str) -> None:
    """One echo call (a cheap liveness check)."""
    agent = run.proxy(address)
    await run.call("echo", lambda: agent.echo(text="hello"))


async def scenario_sleep(run: Runner, address: str) -> None:
    """One ``sleep(--seconds)`` call, for tests that kill the agent meanwhile (C-15)."""
    agent = run.proxy(address)
    await run.call("sleep", lambda: agent.sleep(seconds=run.seconds))


async def scenario_whoami(run: Runner, address: str) -> None:
    """``--count`` calls to ``whoami``; ``value`` lists the node ids that answered."""
    agent = run.proxy(address)
    started = time.monotonic()
    answers: list[Any] = []
    error: str | None = None
    for _ in range(run.count):
        try:
            answers.append(await asyncio.wait_for(agent.whoami(), run.timeout + 2.0))
        except Exception as exc:
            error = describe(exc, run.timeout)
            break
    fields: dict[str, Any] = {"ok": error is None, "value": answers}
    if error is not None:
        fields["error"] = error
    run.note("whoami", **fields, secs=round(time.monotonic() - started, 3))


SCENARIOS: dict[str, tuple[Scenario, str]] = {
    "ops": (scenario_ops, "echo@fame.fabric"),
    "stream": (scenario_stream, "echo@fame.fabric"),
    "errors": (scenario_errors, "echo@fame.fabric"),
    "unknown": (scenario_unknown, "nobody@fame.fabric"),
    "a2a": (scenario_a2a, "tasks@fame.fabric"),
    "a2a_base": (scenario_a2a_base, "echo@fame.fabric"),
    "chat": (scenario_chat, "chat@fame.fabric"),
    "chat_stream": (scenario_chat_stream, "chat@fame.fabric"),
    "many": (scenario_many, "echo@fame.fabric"),
    "concurrency": (scenario_concurrency, "echo@fame.fabric"),
    "echo": (scenario_echo, "echo@fame.fabric"),
    "sleep": (scenario_sleep, "echo@fame.fabric"),
    "whoami": (scenario_whoami, "echo@fame.fabric"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``SCENARIO [ADDRESS] [--timeout S] [--count N] [--seconds S]``."""
    parser = argparse.ArgumentParser(description="Run an interop scenario with our client.")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("address", nargs="?")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--count", type=int, default=10, help="calls of the whoami scenario")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of the sleep scenario")
    return parser.parse_args(argv)


async def run_scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Attach a node, run the scenario and return the report."""
    scenario, default_address = SCENARIOS[args.scenario]
    address = args.address or default_address
    started = time.monotonic()
    report: dict[str, Any] = {"scenario": args.scenario, "target": address}
    async with FameFabric.create(call_timeout=args.timeout) as fabric:
        report["node_id"] = fabric.node.system_id
        runner = Runner(fabric, args.timeout, count=args.count, seconds=args.seconds)
        try:
            await scenario(runner, address)
        finally:
            report["steps"] = runner.steps
    report["secs"] = round(time.monotonic() - started, 3)
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the scenario and print its report as one JSON line."""
    args = parse_args(argv)
    try:
        report = asyncio.run(run_scenario(args))
        status = 0
    except Exception as exc:
        report = {"scenario": args.scenario, "error": describe(exc, args.timeout), "steps": []}
        status = 1
    print(json.dumps(report), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
