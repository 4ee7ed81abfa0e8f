"""How many requests an agent handles at once, and how many may wait.

An agent runs at most ``max_concurrency`` handlers at a time; up to
``max_queued`` more requests wait for a free slot, oldest first. A request
beyond that is answered at once with a JSON-RPC error :data:`BUSY` (data
``{"code": "busy", ...}``) telling the caller to retry later, so a flood
costs the agent a bounded amount of memory and never starves the requests
already admitted.

=============================  =======================  =======
Setting                        Environment variable     Default
=============================  =======================  =======
``max_concurrency``            FAME_AGENT_MAX_CONCURRENCY  64
``max_queued``                 FAME_AGENT_MAX_QUEUED       256
=============================  =======================  =======
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

from famefabric.errors import OperationError
from famefabric.options import count
from famefabric.settings import env_int

DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_MAX_QUEUED = 256

BUSY = -32011
"""JSON-RPC error code of a request refused because the agent is saturated."""


@dataclass(frozen=True, slots=True)
class HandlerLimits:
    """Bounds on the requests one agent handles.

    Attributes:
        max_concurrency: handlers running at once (at least 1).
        max_queued: requests waiting for a free handler (0: none wait).
    """

    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_queued: int = DEFAULT_MAX_QUEUED

    def __post_init__(self) -> None:
        count("max_concurrency", self.max_concurrency, minimum=1)
        count("max_queued", self.max_queued)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HandlerLimits:
        """Read ``FAME_AGENT_MAX_CONCURRENCY`` and ``FAME_AGENT_MAX_QUEUED``.

        Raises:
            ConfigurationError: a variable is not an integer or is out of range.
        """
        env = os.environ if env is None else env
        return cls(
            max_concurrency=env_int(
                env, "FAME_AGENT_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY, minimum=1
            ),
            max_queued=env_int(env, "FAME_AGENT_MAX_QUEUED", DEFAULT_MAX_QUEUED, minimum=0),
        )


class HandlerSlots:
    """Admits requests up to the limits: run now, wait in line, or be refused.

    ``await slots.acquire(address)`` before a handler and ``slots.release()``
    after it; ``acquire`` raises :class:`OperationError` with code
    :data:`BUSY` when the line is full.
    """

    __slots__ = ("_limits", "_running", "_semaphore", "_waiting")

    def __init__(self, limits: HandlerLimits) -> None:
        self._limits = limits
        self._semaphore = asyncio.Semaphore(limits.max_concurrency)
        self._running = 0
        self._waiting = 0

    @property
    def running(self) -> int:
        """Handlers running now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Requests waiting for a free handler."""
        return self._waiting

    async def acquire(self, address: str) -> None:
        """Take a handler slot, waiting in line for one if the line is not full.

        Raises:
            OperationError: code :data:`BUSY`: every slot is taken and the line is full.
        """
        limits = self._limits
        if self._semaphore.locked():
            if self._waiting >= limits.max_queued:
                raise OperationError(
                    f"agent at {address} is busy: {limits.max_concurrency} requests are "
                    f"running and {limits.max_queued} waiting; retry later",
                    code=BUSY,
                    data={
                        "code": "busy",
                        "max_concurrency": limits.max_concurrency,
                        "max_queued": limits.max_queued,
                    },
                )
            self._waiting += 1
            try:
                await self._semaphore.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._semaphore.acquire()
        self._running += 1

    def release(self) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        self._running -= 1
        self._semaphore.release()
