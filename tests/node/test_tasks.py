"""start(): run a task in a group and wait until it reports readiness (trio's nursery.start)."""

from __future__ import annotations

import asyncio

import pytest

from famefabric.node.tasks import TaskStatus, start


async def test_start_returns_the_value_passed_to_started_and_the_task_goes_on() -> None:
    finished = asyncio.Event()
    release = asyncio.Event()

    async def serve(task_status: TaskStatus[str]) -> None:
        task_status.started("ready")
        task_status.started("ignored")  # only the first call counts
        await release.wait()
        finished.set()

    async with asyncio.TaskGroup() as group:
        assert await start(group, serve) == "ready"
        assert not finished.is_set()  # still running after readiness
        release.set()
    assert finished.is_set()


async def test_an_error_before_readiness_is_raised_by_start_not_by_the_group() -> None:
    async def fail(task_status: TaskStatus[str]) -> None:
        raise ConnectionError("refused")

    async with asyncio.TaskGroup() as group:
        with pytest.raises(ConnectionError, match="refused"):
            await start(group, fail)
        # The group is not aborted: the host task was not cancelled.
        assert await start(group, ready) == 1


async def ready(task_status: TaskStatus[int]) -> None:
    task_status.started(1)


async def test_returning_without_readiness_is_an_error() -> None:
    async def silent(task_status: TaskStatus[int]) -> None:
        return None

    async with asyncio.TaskGroup() as group:
        with pytest.raises(RuntimeError, match="returned without reporting that it started"):
            await start(group, silent)


async def test_cancelling_the_task_before_readiness_cancels_start() -> None:
    entered = asyncio.Event()
    tasks: list[asyncio.Task[object]] = []

    async def slow(task_status: TaskStatus[int]) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        entered.set()
        await asyncio.Event().wait()

    async with asyncio.TaskGroup() as group:
        starting = asyncio.ensure_future(start(group, slow))
        await asyncio.wait_for(entered.wait(), 5)
        tasks[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting


async def test_cancelling_start_cancels_the_task() -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(task_status: TaskStatus[int]) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with asyncio.TaskGroup() as group:
        starting = asyncio.ensure_future(start(group, slow))
        await asyncio.wait_for(entered.wait(), 5)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        await asyncio.wait_for(cancelled.wait(), 5)
