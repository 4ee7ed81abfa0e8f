"""One fabric link per user: how the gateway carries the end user's identity.

The gateway holds no identity of its own for users' calls. For each user it
attaches a node to the sentinel *with that user's token*, so the sentinel
authenticates the user, checks the token's ``fame_call`` permissions on every
call and stamps the user's subject on every request; the chat agent's
ownership rules then apply exactly as for the user's own ``fame chat``. A
user's requests share that user's link; links are keyed by a digest of the
token (never the token itself), kept in a bounded LRU, and closed after
``link_idle_seconds`` without use. In open mode (no auth) every request goes
through one shared link.

A link in use is never closed under a caller: when all ``max_links`` links are
busy, a new user gets a 429 until one frees up.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from famefabric.errors import AttachRefused, ConnectionClosed
from famefabric.gateway.errors import GatewayError, from_attach_refused
from famefabric.node import Node
from famefabric.node.state import LinkState

log = logging.getLogger(__name__)

LinkOpener = Callable[[str | None], AbstractAsyncContextManager[Node]]
"""Opens a node attached with the given token (None: no token)."""

SWEEP_EVERY = 5.0
_DEAD = (LinkState.GAVE_UP, LinkState.CLOSED)


def token_key(token: str | None) -> str:
    """The pool key of a token: a digest, so tokens never sit in memory as keys or in logs."""
    if token is None:
        return "open"
    return hashlib.sha256(token.encode()).hexdigest()[:32]


@dataclass
class _Link:
    stack: AsyncExitStack
    node: Node | None = None
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: GatewayError | None = None


class LinkPool:
    """Users' links to the fabric, bounded and closed when idle.

    Args:
        opener: attaches a node with a token.
        max_links: links held at once.
        idle_seconds: a link unused this long is closed.
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        opener: LinkOpener,
        *,
        max_links: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opener = opener
        self._max_links = max_links
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._links: OrderedDict[str, _Link] = OrderedDict()
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        """Start closing idle links in the background."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="gateway-link-sweeper")

    async def aclose(self) -> None:
        """Close every link."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        links, self._links = list(self._links.values()), OrderedDict()
        await asyncio.gather(*(link.stack.aclose() for link in links), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)

    @asynccontextmanager
    async def link(self, token: str | None) -> AsyncIterator[Node]:
        """Use the link of ``token``'s user, attaching it first if needed.

        Raises:
            GatewayError: 401/403 when the sentinel refuses the token, 429 when
                every link is busy, 503 when the fabric cannot be reached.
        """
        key = token_key(token)
        entry = self._links.get(key)
        if entry is not None and entry.node is not None and entry.node.state in _DEAD:
            # The sentinel ended it for good (e.g. the token expired): attach anew.
            self._close(key, entry)
            entry = None
        if entry is None:
            entry = self._add(key)
            asyncio.create_task(self._attach(key, entry, token)).add_done_callback(_ignore)
        entry.users += 1
        entry.last_used = self._clock()
        self._links.move_to_end(key)
        try:
            await entry.ready.wait()
            if entry.error is not None or entry.node is None:
                raise entry.error or GatewayError(
                    503, "the fabric link failed", code="fabric_unavailable"
                )
            yield entry.node
        finally:
            entry.users -= 1
            entry.last_used = self._clock()

    def _add(self, key: str) -> _Link:
        if len(self._links) >= self._max_links:
            self._evict_one()
        if len(self._links) >= self._max_links:
            raise GatewayError(
                429,
                f"the gateway holds its maximum of {self._max_links} user links and all are busy; "
                "try again shortly (FAME_GATEWAY_MAX_LINKS)",
                code="too_many_users",
                headers={"Retry-After": "1"},
            )
        entry = _Link(stack=AsyncExitStack())
        self._links[key] = entry
        return entry

    async def _attach(self, key: str, entry: _Link, token: str | None) -> None:
        try:
            entry.node = await entry.stack.enter_async_context(self._opener(token))
        except AttachRefused as exc:
            entry.error = from_attach_refused(exc)
        except ConnectionClosed as exc:
            entry.error = GatewayError(
                503, f"cannot reach the fabric: {exc}", code="fabric_unavailable"
            )
        except Exception as exc:
            log.exception("attaching a user link failed")
            entry.error = GatewayError(
                503, f"cannot attach to the fabric: {exc}", code="fabric_unavailable"
            )
        finally:
            if entry.error is not None and self._links.get(key) is entry:
                del self._links[key]  # a refused or failed link is not kept
            entry.ready.set()

    def _evict_one(self) -> None:
        for key, entry in self._links.items():
            if entry.users == 0 and entry.ready.is_set():
                self._close(key, entry)
                return

    def _close(self, key: str, entry: _Link) -> None:
        del self._links[key]
        task = asyncio.create_task(entry.stack.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def sweep(self) -> int:
        """Close links idle for longer than ``idle_seconds``; return how many."""
        now = self._clock()
        idle = [
            (key, entry)
            for key, entry in self._links.items()
            if entry.users == 0
            and entry.ready.is_set()
            and now - entry.last_used > self._idle_seconds
        ]
        for key, entry in idle:
            self._close(key, entry)
        return len(idle)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_EVERY, self._idle_seconds))
            closed = self.sweep()
            if closed:
                log.info("closed %d idle user links", closed)


def _ignore(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
