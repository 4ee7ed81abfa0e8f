"""One child connection as the sentinel sees it: transport, identity, per-hop state.

Per-hop state (PROTOCOL.md §9) lives here: the ``seqId`` counter of every
flow sent on this connection, the credit count of every flow received from
it, the connection's own default flow id and its routing epoch (fresh per
connection, §5.6). Both flow maps are bounded, and flows of a departed child
are forgotten by every other connection (:meth:`ChildConnection.forget_flows`),
so long-lived connections do not accumulate state from short-lived peers.

The connection owns its closing: :meth:`ChildConnection.supervise` runs
beside the reader, closes the transport when asked to (replacement by a
newer attach, sentinel shutdown, a refused attach) or when the child has been
silent for the idle timeout (§2.5, C-23).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from famefabric.protocol.flow import LOW_WATER
from famefabric.protocol.frames import FLOW_SYN, INITIAL_CREDITS
from famefabric.protocol.ids import new_id
from famefabric.transport.base import Transport

log = logging.getLogger("famefabric.sentinel")

MAX_FLOWS = 4096
"""Most flows whose state one connection keeps per direction; the oldest go first."""

MAX_PENDING = 256
"""Most envelopes buffered before the attach (C-39)."""

WARNINGS_PER_CONNECTION = 5
"""Dropped-frame warnings logged at WARNING per connection; the rest go to DEBUG."""


class ChildConnection:
    """A child's connection: attach state, flow state and the close protocol.

    Args:
        transport: the link to the child.
        node_id: the system id from the attach URL.
        sentinel_path: the sentinel's physical path, ``/<sentinelId>``.
        now: the event loop's clock, for the idle timer.
    """

    __slots__ = (
        "_close_event",
        "_close_request",
        "_credits",
        "_next_seq",
        "attached",
        "closed",
        "closing",
        "epoch",
        "flow_id",
        "last_seen",
        "node_id",
        "path",
        "pending",
        "replaced",
        "send",
        "transport",
        "warnings",
    )

    def __init__(
        self, transport: Transport, node_id: str, *, sentinel_path: str, now: float
    ) -> None:
        self.transport = transport
        self.send: Callable[[bytes], Awaitable[None]] = transport.send
        """Send one serialized envelope; raises ConnectionClosed when the link is closed."""
        self.node_id = node_id
        self.path = f"{sentinel_path}/{node_id}"
        self.flow_id = new_id()
        self.epoch = new_id()
        self.attached = False
        self.replaced = False
        self.closing = False
        self.closed = False
        self.last_seen = now
        self.pending: list[tuple[dict[str, Any], int]] = []
        self.warnings = 0
        self._next_seq: dict[str, int] = {}
        self._credits: dict[str, int] = {}
        self._close_request: tuple[int, str] | None = None
        self._close_event = asyncio.Event()

    def __repr__(self) -> str:
        return f"<ChildConnection {self.node_id} {self.transport.description}>"

    def stamp(self, flow_id: str) -> tuple[int, int]:
        """Return (seqId, flowFlags) for the next envelope sent on ``flow_id`` (§9)."""
        seq = self._next_seq.get(flow_id)
        if seq is None:
            if len(self._next_seq) >= MAX_FLOWS:
                del self._next_seq[next(iter(self._next_seq))]
            self._next_seq[flow_id] = 1
            return 0, FLOW_SYN
        self._next_seq[flow_id] = seq + 1
        return seq, 0

    def count_received(self, flow_id: str) -> bool:
        """Count one envelope received on ``flow_id``; True when a credit grant is due.

        The count starts at 32 and a grant of 32 is due when it falls to 8:
        after the 24th, 48th, … envelope of the flow (§9, C-29).
        """
        remaining = self._credits.get(flow_id)
        if remaining is None:
            if len(self._credits) >= MAX_FLOWS:
                del self._credits[next(iter(self._credits))]
            remaining = INITIAL_CREDITS
        remaining -= 1
        if remaining <= LOW_WATER:
            self._credits[flow_id] = INITIAL_CREDITS
            return True
        self._credits[flow_id] = remaining
        return False

    def received_flows(self) -> list[str]:
        """Return the flows this child has sent on (its own traffic)."""
        return list(self._credits)

    def forget_flows(self, flow_ids: Iterable[str]) -> None:
        """Forget the sending state of flows whose originator has gone."""
        for flow_id in flow_ids:
            self._next_seq.pop(flow_id, None)

    def buffer(self, envelope: dict[str, Any], size: int) -> bool:
        """Keep an envelope received before the attach; False when the buffer is full."""
        if len(self.pending) >= MAX_PENDING:
            return False
        self.pending.append((envelope, size))
        return True

    def take_pending(self) -> list[tuple[dict[str, Any], int]]:
        """Return and clear the envelopes buffered before the attach."""
        pending, self.pending = self.pending, []
        return pending

    def warn(self, message: str, *args: object) -> None:
        """Log a dropped frame at WARNING, then at DEBUG after the first few."""
        self.warnings += 1
        if self.warnings <= WARNINGS_PER_CONNECTION:
            log.warning("node %s: " + message, self.node_id, *args)
            if self.warnings == WARNINGS_PER_CONNECTION:
                log.warning(
                    "node %s: further dropped frames are logged at debug level", self.node_id
                )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("node %s: " + message, self.node_id, *args)

    def request_close(self, code: int, reason: str) -> None:
        """Ask :meth:`supervise` to close the link; the first request wins."""
        if self._close_request is None:
            self._close_request = (code, reason)
        self._close_event.set()

    async def supervise(self, idle_timeout: float | None) -> None:
        """Close the link when asked to, or after ``idle_timeout`` seconds without a message.

        Runs beside the reader for the connection's whole life; the reader
        cancels it when the link closes first. ``last_seen`` must hold the
        event loop time of the last message received.
        """
        loop = asyncio.get_running_loop()
        while self._close_request is None:
            if idle_timeout is None:
                await self._close_event.wait()
                break
            remaining = self.last_seen + idle_timeout - loop.time()
            if remaining <= 0:
                log.info(
                    "node %s: closing the connection, no message for %g s",
                    self.node_id,
                    idle_timeout,
                )
                self._close_request = (1000, f"idle for {idle_timeout:g} s")
                break
            try:
                async with asyncio.timeout(remaining):
                    await self._close_event.wait()
            except TimeoutError:
                continue
        assert self._close_request is not None
        self.closing = True
        code, reason = self._close_request
        try:
            await self.transport.close(code, reason)
        except Exception:  # the close is best effort; the reader sees the outcome
            log.debug("node %s: error while closing", self.node_id, exc_info=True)
