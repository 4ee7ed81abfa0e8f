"""Awaiting work that must finish even when its caller is cancelled meanwhile.

An SQLite statement runs in aiosqlite's thread whatever happens to the task that
awaits it; a close stops that thread. Leaving either half-awaited would leave the
connection's transaction state, or the thread itself, out of step with the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable


async def to_the_end(work: Awaitable[object]) -> None:
    """Await ``work`` to its end; a cancel of the caller meanwhile is raised after it.

    A second cancel while waiting does not cut the wait short either (``gather``
    would cancel the work itself).
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        raise
