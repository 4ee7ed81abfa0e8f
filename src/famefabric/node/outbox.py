"""The send path for application envelopes (PROTOCOL.md §5.7, §9).

While the connection is ready an envelope is stamped, encoded and written
to the transport in one step, with no queue in between. While the node is
disconnected (or re-binding after a re-attach) envelopes wait in a bounded
backlog; :meth:`Outbox.flush` sends them in order on the new connection
before new envelopes may go out directly, so order is kept across the gap.

A request gets its ``replyTo`` here, from the connection that actually sends
it, and is marked with that connection's generation: if the connection
drops, the call fails at once instead of waiting for its deadline.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import orjson

from famefabric.errors import ConnectionClosed, LocalProtocolError
from famefabric.node.correlation import PendingCall
from famefabric.node.link import Link, oversize_error
from famefabric.protocol.frames import MAX_ENVELOPE_BYTES

log = logging.getLogger(__name__)


def dumps(wire: dict[str, Any]) -> bytes:
    """Serialize a wire object.

    Raises:
        LocalProtocolError: its content is not JSON.
    """
    try:
        return orjson.dumps(wire)
    except TypeError as exc:
        raise LocalProtocolError(f"cannot send envelope: its content is not JSON ({exc})") from None


class Outbox:
    """Sends application envelopes now, or keeps them until the next connection.

    Args:
        max_queued: most envelopes kept while disconnected.
        inbox_id: the id of the node's RPC reply inbox.
    """

    def __init__(self, *, max_queued: int, inbox_id: str) -> None:
        self.max_queued = max_queued
        self._inbox_id = inbox_id
        self._backlog: deque[tuple[dict[str, Any], PendingCall | None]] = deque()

    def __len__(self) -> int:
        return len(self._backlog)

    async def transmit(self, link: Link, wire: dict[str, Any], call: PendingCall | None) -> None:
        """Send one envelope on ``link`` now.

        Raises:
            LocalProtocolError: too large or not JSON; nothing was sent.
            ConnectionClosed: the connection is closed.
        """
        if call is not None:
            wire["replyTo"] = link.session.rpc_address(self._inbox_id)
        data = link.encode(wire)
        if call is not None:
            call.generation = link.generation
            call.sent = True
        await link.send_encoded(wire, data)

    def queue(self, wire: dict[str, Any], call: PendingCall | None) -> None:
        """Keep an envelope for the next connection.

        Raises:
            LocalProtocolError: the envelope is too large or not JSON.
            ConnectionClosed: the backlog is full.
        """
        size = len(dumps(wire))
        if size > MAX_ENVELOPE_BYTES:
            raise oversize_error(wire, size)
        if len(self._backlog) >= self.max_queued:
            raise ConnectionClosed(
                "cannot send data frame: disconnected from the sentinel and "
                f"{self.max_queued} envelopes are already queued"
            )
        self._backlog.append((wire, call))

    async def flush(self, link: Link) -> None:
        """Send the backlog on ``link``, oldest first; skips calls nobody waits for.

        Raises:
            ConnectionClosed: the connection dropped; what was not sent stays queued.
        """
        while self._backlog:
            wire, call = self._backlog.popleft()
            if call is not None and call.done:
                continue
            try:
                await self.transmit(link, wire, call)
            except LocalProtocolError as exc:
                log.warning("dropping a queued envelope: %s", exc)
                if call is not None:
                    call.fail(exc)
            except ConnectionClosed:
                if call is None:
                    log.warning(
                        "a queued %s envelope may not have been sent", wire["frame"]["type"]
                    )
                raise

    def give_up(self) -> list[PendingCall]:
        """Empty the backlog for good; return the calls whose requests never left."""
        backlog, self._backlog = self._backlog, deque()
        return [call for _, call in backlog if call is not None and not call.done]

    def clear(self) -> None:
        """Forget everything queued."""
        self._backlog.clear()
