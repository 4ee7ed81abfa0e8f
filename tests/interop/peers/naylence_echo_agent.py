"""Run Naylence reference agents for the interop scenarios.

Usage::

    FAME_DIRECT_ADMISSION_URL=ws://127.0.0.1:8123/fame/v1/attach/ws/downstream \\
        .venv-interop/bin/python tests/interop/peers/naylence_echo_agent.py \\
        [ADDRESS] [--tasks-address ADDRESS | --no-tasks]

One node serves two agents:

* ``EchoAgent`` at ADDRESS (argv, else ``$AGENT_ADDRESS``, else
  ``echo@fame.fabric``): a plain ``BaseAgent`` with the operations used by the
  RPC scenarios (C-03, C-04, C-06, C-30, C-33) and a ``run_task`` that echoes
  its payload, so ``tasks/send`` completes synchronously (C-35);
* ``TasksAgent`` at ``--tasks-address`` (else ``$TASKS_AGENT_ADDRESS``, else
  ``tasks@fame.fabric``; ``--no-tasks`` or an empty value disables it): a
  ``BackgroundTaskAgent`` for the A2A scenario (C-07). Its task input is a
  DataPart ``{"steps": int, "delay": float, "fail": bool}``: it emits one
  artifact ``{"step": k}`` per step after ``delay`` seconds, then completes
  with ``{"done": steps}``, or fails with "task asked to fail" after the
  first artifact when ``fail`` is true.

When every address is bound it prints::

    READY agent id=<systemId> path=<assignedPath> addresses=<a>[,<b>]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import _peer
from naylence.agent import (
    Artifact,
    BackgroundTaskAgent,
    BaseAgent,
    DataPart,
    TaskSendParams,
    configs,
    first_data_part,
)
from naylence.fame.core import FameFabric
from naylence.fame.service import operation

DEFAULT_ADDRESS = "echo@fame.fabric"
DEFAULT_TASKS_ADDRESS = "tasks@fame.fabric"


class EchoAgent(BaseAgent):
    """Operations with known results, errors and streams."""

    @operation
    async def echo(self, text: str) -> str:
        """Return ``text`` unchanged."""
        return text

    @operation
    async def add(self, x: float, y: float) -> float:
        """Return ``x + y``."""
        return x + y

    @operation
    async def nothing(self) -> None:
        """Return None (the reply carries no ``result`` key)."""
        return None

    @operation(streaming=True)
    async def count(self, n: int) -> AsyncIterator[dict[str, int]]:
        """Yield ``{"i": 0}`` ... ``{"i": n-1}``."""
        for i in range(n):
            yield {"i": i}

    @operation(streaming=True)
    async def count_then_fail(self, n: int) -> AsyncIterator[int]:
        """Yield 0 ... n-1, then raise ``ValueError(f"failed after {n}")``."""
        for i in range(n):
            yield i
        raise ValueError(f"failed after {n}")

    @operation
    async def fail(self) -> None:
        """Raise ``ValueError("kaboom")``."""
        raise ValueError("kaboom")

    @operation
    async def boom(self, msg: str = "kaboom") -> None:
        """Raise ``ValueError(msg)``."""
        raise ValueError(msg)

    @operation
    async def sleep(self, seconds: float) -> str:
        """Sleep, then return ``"slept <seconds>"``."""
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    @operation
    async def big(self, n: int) -> str:
        """Return a string of ``n`` characters (for size-limit scenarios)."""
        return "x" * n

    async def run_task(self, payload: dict[str, Any] | str | None, id: str | None) -> Any:
        """Answer ``tasks/send`` synchronously with the payload and task id."""
        return {"echo": payload, "task": id}


class TasksAgent(BackgroundTaskAgent):
    """Background tasks that report progress as artifacts."""

    async def run_background_task(self, params: TaskSendParams) -> Any:
        """Run the steps described by the task's DataPart."""
        data = first_data_part(params.message) or {}
        steps = int(data.get("steps", 1))
        delay = float(data.get("delay", 0.1))
        should_fail = bool(data.get("fail", False))
        for step in range(1, steps + 1):
            await asyncio.sleep(delay)
            await self.update_task_artifact(
                params.id, Artifact(parts=[DataPart(data={"step": step})])
            )
            if should_fail:
                raise ValueError("task asked to fail")
        return {"done": steps}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line, with environment fallbacks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "address", nargs="?", default=os.environ.get("AGENT_ADDRESS") or DEFAULT_ADDRESS
    )
    parser.add_argument(
        "--tasks-address",
        default=os.environ.get("TASKS_AGENT_ADDRESS", DEFAULT_TASKS_ADDRESS),
    )
    parser.add_argument("--no-tasks", action="store_true")
    return parser.parse_args(argv)


async def main() -> int:
    """Attach, bind the agents, announce readiness and serve until a stop signal."""
    args = parse_args()
    _peer.require_admission_url("echo agent")
    _peer.choose_node_id()
    stop = _peer.stop_event()
    async with FameFabric.create(root_config=configs.NODE_CONFIG) as fabric:
        addresses = [str(await fabric.serve(EchoAgent(), args.address))]
        if args.tasks_address and not args.no_tasks:
            addresses.append(str(await fabric.serve(TasksAgent(), args.tasks_address)))
        node = fabric.node  # type: ignore[attr-defined]
        _peer.announce("agent", id=node.id, path=node.physical_path, addresses=",".join(addresses))
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
