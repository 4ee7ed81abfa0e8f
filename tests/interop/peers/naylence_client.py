"""Run a named interop scenario with the Naylence reference client.

Usage::

    FAME_DIRECT_ADMISSION_URL=ws://127.0.0.1:8123/fame/v1/attach/ws/downstream \\
        .venv-interop/bin/python tests/interop/peers/naylence_client.py \\
        SCENARIO [ADDRESS] [--timeout SECONDS] [--client-config]

Prints exactly one JSON object on stdout (anything the SDK prints, e.g. with
``FAME_SHOW_ENVELOPES=true``, is diverted to stderr)::

    {"scenario": ..., "target": ..., "node_id": ..., "secs": ...,
     "steps": [{"step": ..., "ok": bool, "value" | "items": ...,
                "error": "ExcType: message", "secs": ...}]}

Unary steps report ``value``; streaming steps report ``items`` (everything
received before the stream ended or failed), as in the ``*.observed.json``
files. Every call is bounded by ``--timeout`` (default 10 s); a failure is
recorded in its step and the scenario goes on. Exit status: 0 when the
scenario ran (whatever its steps returned), 2 on bad usage, 1 when the node
could not start.

Scenarios and their default target: ``ops``, ``stream``, ``errors``,
``many``, ``concurrency``, ``a2a_base`` (echo@fame.fabric); ``unknown``
(nobody@fame.fabric); ``a2a`` (tasks@fame.fabric, a background-task agent
taking ``{"steps", "delay", "fail"}``); ``chat``, ``chat_stream``
(chat@fame.fabric).

The node uses ``NODE_CONFIG`` like the reference examples' clients;
``--client-config`` switches to ``CLIENT_CONFIG`` (C-19). Its system id is
random unless ``FAME_NODE_ID`` is set (``FAME_PEER_ID_MODE=fingerprint``
restores the reference default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import _peer
from naylence.agent import Agent, TaskIdParams, TaskQueryParams, configs, make_task_params
from naylence.fame.core import FameAddress, FameFabric, generate_id

Scenario = Callable[["Runner", str], Awaitable[None]]

DEFAULT_TIMEOUT = 10.0
CHAT_PROMPT = "You are a helpful assistant speaking Pirate"


def to_json(value: Any) -> Any:
    """Convert SDK results (pydantic models, tuples, ...) to plain JSON values."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


# The reference raises some errors (FameConnectError, FameMessageTooLarge, ...)
# as BaseException subclasses; they are step failures too. Only these escape.
PASS_THROUGH = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)


def describe(exc: BaseException, timeout: float) -> str:
    """Render an exception as ``"ExcType: message"``."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"TimeoutError: no answer within {timeout} s"
    return f"{type(exc).__name__}: {exc}"


class Runner:
    """Runs the steps of one scenario and records their outcomes."""

    def __init__(self, fabric: FameFabric, timeout: float) -> None:
        self.fabric = fabric
        self.timeout = timeout
        self.steps: list[dict[str, Any]] = []

    def proxy(self, address: str) -> Any:
        """Return the generic reference proxy for ``address``."""
        return Agent.remote_by_address(address, fabric=self.fabric)

    def raw(self, address: str, method: str, params: dict[str, Any]) -> Awaitable[Any]:
        """Invoke ``method`` with exactly ``params`` (no args/kwargs wrapping)."""
        return self.fabric.invoke(FameAddress(address), method, params)

    async def call(self, step: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """Await one unary call under the timeout and record its value or error."""
        started = time.monotonic()
        record: dict[str, Any] = {"step": step}
        value: Any = None
        try:
            value = await asyncio.wait_for(make(), self.timeout)
            record.update(ok=True, value=to_json(value))
        except PASS_THROUGH:
            raise
        except BaseException as exc:
            record.update(ok=False, error=describe(exc, self.timeout))
        record["secs"] = round(time.monotonic() - started, 3)
        self.steps.append(record)
        return value

    async def stream(
        self, step: str, make: Callable[[], Awaitable[AsyncIterator[Any]]]
    ) -> list[Any]:
        """Consume one stream under the timeout and record its items and error."""
        started = time.monotonic()
        record: dict[str, Any] = {"step": step}
        items: list[Any] = []

        async def consume() -> None:
            iterator = await make()
            try:
                async for item in iterator:
                    items.append(to_json(item))
            finally:
                close = getattr(iterator, "aclose", None)
                if close is not None:
                    await close()

        try:
            await asyncio.wait_for(consume(), self.timeout)
            record.update(ok=True, items=items)
        except PASS_THROUGH:
            raise
        except BaseException as exc:
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
    await run.stream("count", lambda: agent.count(n=3, _stream=True))
    await run.stream("count_zero", lambda: agent.count(n=0, _stream=True))
    await run.stream("count_then_fail", lambda: agent.count_then_fail(n=2, _stream=True))


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
    await run.stream("stream_unbound_logical", lambda: nobody.count(n=2, _stream=True))


async def scenario_a2a(run: Runner, address: str) -> None:
    """C-07: A2A task methods against a background-task agent."""
    agent = run.proxy(address)
    first, second = generate_id(), generate_id()
    await run.call(
        "tasks_send", lambda: agent.start_task(id=first, payload={"steps": 2, "delay": 0.2})
    )
    await run.call("tasks_get", lambda: agent.get_task_status(TaskQueryParams(id=first)))
    await run.stream(
        "tasks_sendSubscribe",
        lambda: agent.subscribe_to_task_updates(make_task_params(id=first)),
    )
    await run.call("tasks_get_after", lambda: agent.get_task_status(TaskQueryParams(id=first)))
    await run.call(
        "tasks_send_2", lambda: agent.start_task(id=second, payload={"steps": 20, "delay": 0.2})
    )
    await run.call("tasks_cancel", lambda: agent.cancel_task(TaskIdParams(id=second)))
    await run.call("tasks_get_unknown", lambda: agent.get_task_status(TaskQueryParams(id="nope")))
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
        lambda: agent.run_task({"steps": 1, "delay": 0.1, "fail": True}, generate_id()),
    )
    await run.call("run_task_ok", lambda: agent.run_task({"steps": 2, "delay": 0.1}, generate_id()))


async def scenario_a2a_base(run: Runner, address: str) -> None:
    """C-35: A2A methods against a plain agent that only implements run_task."""
    agent = run.proxy(address)
    text_task, data_task = generate_id(), generate_id()
    await run.call("tasks_send_text", lambda: agent.start_task(id=text_task, payload="hi"))
    await run.call("tasks_send_data", lambda: agent.start_task(id=data_task, payload={"a": 1}))
    await run.call("run_task", lambda: agent.run_task({"a": 2}, generate_id()))
    await run.call(
        "tasks_get_unsupported", lambda: agent.get_task_status(TaskQueryParams(id=text_task))
    )
    await run.call(
        "tasks_cancel_unsupported", lambda: agent.cancel_task(TaskIdParams(id=text_task))
    )
    await run.stream(
        "tasks_sendSubscribe_polling",
        lambda: agent.subscribe_to_task_updates(make_task_params(id=text_task)),
    )


async def scenario_chat(run: Runner, address: str) -> None:
    """C-01: the stateful conversation flow, including the error paths."""
    chat = run.proxy(address)
    conversation = generate_id()
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
    conversation = generate_id()
    await run.call(
        "start_task",
        lambda: chat.start_task(
            id=conversation, history_length=10, payload={"system_prompt": CHAT_PROMPT}
        ),
    )
    items = await run.stream(
        "stream_turn", lambda: chat.stream_turn(conversation, "hello there", _stream=True)
    )
    run.note("stream_turn_text", ok=True, value="".join(str(item) for item in items))
    await run.call("end_conversation", lambda: chat.end_conversation(conversation))


async def scenario_many(run: Runner, address: str, count: int = 80) -> None:
    """C-29/C-37: sequential echo calls, enough to cross several credit windows."""
    agent = run.proxy(address)
    started = time.monotonic()
    done = 0
    error: str | None = None
    for i in range(count):
        try:
            value = await asyncio.wait_for(agent.echo(text=str(i)), run.timeout)
        except PASS_THROUGH:
            raise
        except BaseException as exc:
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
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``SCENARIO [ADDRESS] [--timeout S] [--client-config]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("address", nargs="?")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--client-config", action="store_true")
    return parser.parse_args(argv)


async def run_scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Attach a reference node, run the scenario and return the report."""
    scenario, default_address = SCENARIOS[args.scenario]
    address = args.address or default_address
    node_id = _peer.choose_node_id()
    config = configs.CLIENT_CONFIG if args.client_config else configs.NODE_CONFIG
    started = time.monotonic()
    report: dict[str, Any] = {"scenario": args.scenario, "target": address, "node_id": node_id}
    async with FameFabric.create(root_config=config) as fabric:
        runner = Runner(fabric, args.timeout)
        try:
            await scenario(runner, address)
        finally:
            report["steps"] = runner.steps
    report["secs"] = round(time.monotonic() - started, 3)
    return report


def main() -> int:
    """Run the scenario with stdout reserved for the final JSON report."""
    args = parse_args()
    _peer.require_admission_url("client")
    # Keep stdout for the report: anything else written to fd 1 goes to stderr.
    sys.stdout.flush()
    report_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        report = asyncio.run(run_scenario(args))
        status = 0
    except PASS_THROUGH:
        raise
    except BaseException as exc:
        report = {"scenario": args.scenario, "error": f"{type(exc).__name__}: {exc}", "steps": []}
        status = 1
    sys.stdout.flush()
    with os.fdopen(report_fd, "w") as out:
        out.write(json.dumps(report) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
