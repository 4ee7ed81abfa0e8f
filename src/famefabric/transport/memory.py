"""An in-process transport: a connected pair of queues.

Used by tests and by in-process fabrics that run without a sentinel process.
"""

from __future__ import annotations

import asyncio

from famefabric.errors import ConnectionClosed

_CLOSED = object()


class MemoryTransport:
    """One end of an in-memory link; build both ends with :func:`memory_pair`."""

    def __init__(
        self, name: str, inbox: asyncio.Queue[object], outbox: asyncio.Queue[object]
    ) -> None:
        self._name = name
        self._inbox = inbox
        self._outbox = outbox
        self._closed: tuple[int, str] | None = None
        self.peer: MemoryTransport | None = None

    @property
    def description(self) -> str:
        """Name of this end."""
        return f"memory:{self._name}"

    async def send(self, message: bytes) -> None:
        """Queue one message for the other end.

        Raises:
            ConnectionClosed: this end or the other one was closed.
        """
        if self._closed is not None:
            code, reason = self._closed
            raise ConnectionClosed(
                f"cannot send: {self.description} is closed", code=code, reason=reason
            )
        self._outbox.put_nowait(message)

    async def receive(self) -> bytes | str:
        """Wait for the next message from the other end.

        Raises:
            ConnectionClosed: the link was closed by either end.
        """
        if self._closed is not None and self._inbox.empty():
            code, reason = self._closed
            raise ConnectionClosed(f"{self.description} is closed", code=code, reason=reason)
        item = await self._inbox.get()
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)
            code, reason = self._closed or (1000, "")
            raise ConnectionClosed(f"{self.description} is closed", code=code, reason=reason)
        assert isinstance(item, bytes | str)
        return item

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close both ends; pending receives raise ConnectionClosed."""
        if self._closed is not None:
            return
        self._closed = (code, reason)
        self._inbox.put_nowait(_CLOSED)
        if self.peer is not None and self.peer._closed is None:
            self.peer._closed = (code, reason)
            self._outbox.put_nowait(_CLOSED)


def memory_pair(
    left: str = "node", right: str = "sentinel"
) -> tuple[MemoryTransport, MemoryTransport]:
    """Return two connected transports."""
    a_to_b: asyncio.Queue[object] = asyncio.Queue()
    b_to_a: asyncio.Queue[object] = asyncio.Queue()
    a = MemoryTransport(left, inbox=b_to_a, outbox=a_to_b)
    b = MemoryTransport(right, inbox=a_to_b, outbox=b_to_a)
    a.peer, b.peer = b, a
    return a, b
