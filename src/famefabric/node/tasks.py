"""Start a task in a task group and wait until it says it is ready.

This is trio's ``nursery.start()`` for :class:`asyncio.TaskGroup`: the task
function receives a :class:`TaskStatus` and calls ``task_status.started(value)``
once it is ready (the node: once attached); :func:`start` returns ``value``.
An exception raised before that is raised by :func:`start` instead, and does
not reach the task group, so it does not cancel the task that entered it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class TaskStatus(Generic[T]):
    """What a task started by :func:`start` uses to report that it is ready."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def started(self, value: T) -> None:
        """Report readiness; :func:`start` returns ``value``. Only the first call counts."""
        if not self._future.done():
            self._future.set_result(value)


async def start(
    group: asyncio.TaskGroup, function: Callable[[TaskStatus[T]], Coroutine[Any, Any, None]]
) -> T:
    """Run ``function(task_status)`` in ``group``; return what it passes to ``started``.

    Raises:
        Exception: whatever ``function`` raised before calling ``started``.
        asyncio.CancelledError: the task was cancelled before it started.
        RuntimeError: ``function`` returned without calling ``started``.
    """
    status: TaskStatus[T] = TaskStatus()

    async def guarded() -> None:
        try:
            await function(status)
        except asyncio.CancelledError:
            status._future.cancel()  # start() raises CancelledError too
            raise
        except Exception as exc:
            if status._future.done():
                raise  # after readiness the group handles it, as for any task
            status._future.set_exception(exc)
            return
        if not status._future.done():
            status._future.set_exception(
                RuntimeError(f"{function!r} returned without reporting that it started")
            )

    task = group.create_task(guarded())
    try:
        return await status._future
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        if not status._future.done():
            status._future.cancel()
