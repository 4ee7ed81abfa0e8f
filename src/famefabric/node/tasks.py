"""The node's tasks: a task group it enters, and starting a task that reports readiness.

:class:`TaskScope` is an :class:`asyncio.TaskGroup` entered through an
:class:`~contextlib.AsyncExitStack`, which also remembers its running tasks
so that they can be cancelled together, with a deadline.

:func:`start` is trio's ``nursery.start()``: the task function receives a
:class:`TaskStatus` and calls ``task_status.started(value)`` once it is ready
(the node: once attached); :func:`start` returns ``value``. An exception
raised before that is raised by :func:`start` instead, and does not reach
the task group, so it does not cancel the task that entered it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

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


class _Group(Protocol):
    def create_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...


class TaskScope:
    """A task group entered through an exit stack; its tasks can be cancelled together."""

    __slots__ = ("_group", "_stack", "_tasks")

    def __init__(self) -> None:
        self._stack: AsyncExitStack | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def is_open(self) -> bool:
        """Tell whether the group is entered (tasks may be created)."""
        return self._group is not None

    async def enter(self) -> None:
        """Enter the task group."""
        stack = AsyncExitStack()
        self._group = await stack.enter_async_context(asyncio.TaskGroup())
        self._stack = stack

    def create_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` in the group and remember the task until it ends.

        Raises:
            RuntimeError: the group is not entered (``coro`` is closed).
        """
        if self._group is None:
            coro.close()
            raise RuntimeError("the task group is not running")
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_all(self, *, timeout: float) -> int:
        """Cancel every task but the calling one; wait up to ``timeout`` s; return how many are stuck."""
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        if not tasks:
            return 0
        _, stuck = await asyncio.wait(tasks, timeout=timeout)
        return len(stuck)

    async def leave(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave the group (its tasks have been cancelled); idempotent.

        Only a cancellation is handed to the group, so that an exception from
        the body propagates as itself rather than wrapped in an ExceptionGroup.
        """
        stack, self._stack, self._group = self._stack, None, None
        if stack is None:
            return
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            await stack.__aexit__(exc_type, exc, tb)
        else:
            await stack.aclose()


async def start(group: _Group, function: Callable[[TaskStatus[T]], Coroutine[Any, Any, None]]) -> T:
    """Run ``function(task_status)`` in ``group``; return what it passes to ``started``.

    ``group`` is an :class:`asyncio.TaskGroup` or a :class:`TaskScope`.

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
