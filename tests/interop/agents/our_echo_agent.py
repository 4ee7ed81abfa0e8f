"""Our agents for the interop matrix: the counterparts of the Naylence echo agent peer.

Usage::

    FAME_DIRECT_ADMISSION_URL=ws://127.0.0.1:8123/fame/v1/attach/ws/downstream \\
        .venv/bin/python tests/interop/agents/our_echo_agent.py \\
        [ADDRESS] [--tasks-address ADDRESS | --no-tasks]

One famefabric node serves two agents:

* ``EchoAgent`` at ADDRESS (default ``echo@fame.fabric``): the operations of
  the reference peer with the same results and errors (``echo``, ``add``,
  ``nothing``, streaming ``count`` and ``count_then_fail``, ``fail``,
  ``boom``, ``sleep``, ``big``), ``run_task`` answering ``tasks/send``
  synchronously with ``{"echo": payload, "task": id}``, and ``whoami``, which
  returns this node's system id so that tests can tell replicas apart;
* ``TasksAgent`` at ``--tasks-address`` (default ``tasks@fame.fabric``): A2A
  background tasks. The task input is a DataPart ``{"steps", "delay",
  "fail"}``; the task emits an artifact ``{"step": k}`` every ``delay``
  seconds and completes with ``{"done": steps}``, or fails with "task asked
  to fail" after its first artifact.

Once every address is bound it prints
``READY agent id=<systemId> path=<assignedPath> addresses=<a>[,<b>]``; the
``sleep`` operation prints ``SLEEPING <seconds>`` when it starts, so that a
test knows a request has been delivered, and ``CANCELLED <seconds>`` when its
caller cancels it. It serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from famefabric import (
    Artifact,
    BaseAgent,
    DataPart,
    FameFabric,
    Message,
    Task,
    TaskArtifactUpdateEvent,
    TaskIdParams,
    TaskQueryParams,
    TaskSendParams,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    first_data_part,
    operation,
)

DEFAULT_ADDRESS = "echo@fame.fabric"
DEFAULT_TASKS_ADDRESS = "tasks@fame.fabric"
TERMINAL = frozenset({TaskState.COMPLETED, TaskState.CANCELED, TaskState.FAILED})


class EchoAgent(BaseAgent):
    """Operations with known results, errors and streams.

    Args:
        node_id: this node's system id, returned by ``whoami``.
    """

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self._node_id = node_id

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
        """Return None (the reply carries no ``result``)."""
        return None

    @operation
    async def count(self, n: int) -> AsyncIterator[dict[str, int]]:
        """Yield ``{"i": 0}`` ... ``{"i": n-1}``."""
        for i in range(n):
            yield {"i": i}

    @operation
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
        """Announce the start on stdout, sleep, then return ``"slept <seconds>"``."""
        print(f"SLEEPING {seconds}", flush=True)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            print(f"CANCELLED {seconds}", flush=True)
            raise
        return f"slept {seconds}"

    @operation
    async def big(self, n: int) -> str:
        """Return a string of ``n`` characters."""
        return "x" * n

    @operation
    async def whoami(self, key: str | None = None) -> str:
        """Return the system id of the node serving this call.

        ``key``, the first argument, is the call's affinity key: calls with one
        key reach one replica while the replicas do not change.
        """
        return self._node_id

    async def run_task(self, payload: Any, id: str | None) -> Any:
        """Answer ``tasks/send`` synchronously with the payload and the task id."""
        return {"echo": payload, "task": id}


class _Job:
    """One background task: its current state, its artifacts, and a change signal."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.artifacts: list[Artifact] = []
        self.runner: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def changed(self) -> asyncio.Event:
        """An event set at the next change (take it before reading the state)."""
        return self._changed

    @property
    def is_finished(self) -> bool:
        return self.task.status.state in TERMINAL

    def _touch(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def add_artifact(self, artifact: Artifact) -> None:
        self.artifacts.append(artifact)
        self._touch()

    def finish(self, state: TaskState, message: Message | None = None) -> None:
        if self.is_finished:
            return
        status = TaskStatus(state=state, message=message)
        self.task = self.task.model_copy(update={"status": status})
        self._touch()


class TasksAgent(BaseAgent):
    """Background tasks reporting progress as artifacts (the A2A scenario, C-07).

    ``tasks/send`` starts a task and answers ``working`` at once; ``tasks/get``
    and ``tasks/cancel`` act on known tasks; ``tasks/sendSubscribe`` follows a
    known task (or starts a new one): the current status, every artifact
    (those produced before the subscription too), then the terminal status.

    Args:
        group: the task group that runs the tasks.
    """

    def __init__(self, group: asyncio.TaskGroup) -> None:
        super().__init__()
        self._group = group
        self._jobs: dict[str, _Job] = {}

    def _job(self, task_id: str) -> _Job:
        job = self._jobs.get(task_id)
        if job is None:
            # A generic exception: the peer sees -32603 "Internal error" with this text as data.
            raise ValueError(f"Unknown or expired task {task_id}")
        return job

    async def start_task(self, params: TaskSendParams) -> Task:
        """Start the task described by the first DataPart; answer ``working``."""
        existing = self._jobs.get(params.id)
        if existing is not None and not existing.is_finished:
            raise ValueError(f"Duplicate task: {params.id}")
        data = first_data_part(params.message) or {}
        steps = int(data.get("steps", 1))
        delay = float(data.get("delay", 0.1))
        should_fail = bool(data.get("fail", False))
        job = _Job(
            Task(
                id=params.id,
                session_id=params.session_id,
                status=TaskStatus(state=TaskState.WORKING),
            )
        )
        self._jobs[params.id] = job
        job.runner = self._group.create_task(self._run(job, steps, delay, should_fail))
        return job.task

    async def _run(self, job: _Job, steps: int, delay: float, should_fail: bool) -> None:
        try:
            for step in range(1, steps + 1):
                await asyncio.sleep(delay)
                job.add_artifact(Artifact(parts=[DataPart(data={"step": step})]))
                if should_fail:
                    raise ValueError("task asked to fail")
        except asyncio.CancelledError:
            job.finish(TaskState.CANCELED)
            raise
        except Exception as exc:
            job.finish(TaskState.FAILED, Message(role="agent", parts=[TextPart(text=str(exc))]))
            return
        job.finish(
            TaskState.COMPLETED, Message(role="agent", parts=[DataPart(data={"done": steps})])
        )

    async def get_task_status(self, params: TaskQueryParams) -> Task:
        """Return the task's current state."""
        return self._job(params.id).task

    async def cancel_task(self, params: TaskIdParams) -> Task:
        """Cancel a running task; a finished one is returned as it is."""
        job = self._job(params.id)
        if not job.is_finished:
            job.finish(TaskState.CANCELED)
            if job.runner is not None:
                job.runner.cancel()
        return job.task

    async def subscribe_to_task_updates(
        self, params: TaskSendParams
    ) -> AsyncIterator[TaskStatusUpdateEvent | TaskArtifactUpdateEvent]:
        """Stream a task's status, its artifacts and its terminal status.

        Unlike the reference, the terminal status event says ``final: true``;
        peers decide on the state either way (PROTOCOL.md §11.1).
        """
        if params.id not in self._jobs:
            await self.start_task(params)
        job = self._jobs[params.id]
        sent = 0
        first = True
        while True:
            changed = job.changed
            if first and not job.is_finished:
                yield TaskStatusUpdateEvent(id=job.task.id, status=job.task.status)
            first = False
            while sent < len(job.artifacts):
                yield TaskArtifactUpdateEvent(id=job.task.id, artifact=job.artifacts[sent])
                sent += 1
            if job.is_finished:
                yield TaskStatusUpdateEvent(id=job.task.id, status=job.task.status, final=True)
                return
            await changed.wait()

    def cancel_all(self) -> None:
        """Cancel every running task (at shutdown)."""
        for job in self._jobs.values():
            if job.runner is not None and not job.runner.done():
                job.runner.cancel()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``[ADDRESS] [--tasks-address A | --no-tasks]``."""
    parser = argparse.ArgumentParser(description="Serve our echo and tasks agents.")
    parser.add_argument("address", nargs="?", default=DEFAULT_ADDRESS)
    parser.add_argument("--tasks-address", default=DEFAULT_TASKS_ADDRESS)
    parser.add_argument("--no-tasks", action="store_true")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    """Attach, bind the agents, print the ready line and serve until a stop signal."""
    args = parse_args(argv)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with asyncio.TaskGroup() as group:
        tasks_agent = TasksAgent(group)
        try:
            async with FameFabric.create() as fabric:
                node = fabric.node
                addresses = [args.address]
                await fabric.serve(EchoAgent(node.system_id), args.address)
                if args.tasks_address and not args.no_tasks:
                    await fabric.serve(tasks_agent, args.tasks_address)
                    addresses.append(args.tasks_address)
                print(
                    f"READY agent id={node.system_id} path={node.assigned_path} "
                    f"addresses={','.join(addresses)}",
                    flush=True,
                )
                await stop.wait()
        finally:
            tasks_agent.cancel_all()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
