"""What the sentinel has yet to write to one connection: a bounded FIFO of messages.

The sans-I/O side (:mod:`famefabric.sentinel.router`) appends serialized
envelopes with :meth:`OutboundQueue.offer`, which never blocks and says
``False`` when the queue is full; the connection's one writer task takes
everything queued at once with :meth:`OutboundQueue.take_all` and writes it
in one go. ``wake`` is how the writer learns there is something to write.

The pump's ``wake`` flushes the queue at the end of the current turn of the
event loop, in one write, when the socket takes it without waiting; only
otherwise does the writer task take over (and wait for the socket).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class OutboundQueue:
    """A FIFO of serialized envelopes bounded in bytes and in messages.

    Args:
        max_bytes: the most bytes queued at once.
        max_messages: the most messages queued at once.
    """

    __slots__ = (
        "_messages",
        "busy",
        "bytes",
        "closed",
        "full_since",
        "max_bytes",
        "max_messages",
        "wake",
    )

    def __init__(self, *, max_bytes: int, max_messages: int) -> None:
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self._messages: deque[bytes] = deque()
        self.bytes = 0
        self.closed = False
        self.full_since: float | None = None
        """When an offer was first refused since the queue last drained."""
        self.wake: Callable[[], None] | None = None
        """Called after a message is queued (the writer's wake-up)."""
        self.busy = False
        """True while the writer is writing a batch it took."""

    def __len__(self) -> int:
        return len(self._messages)

    def has_room(self, size: int) -> bool:
        """Tell whether a message of ``size`` bytes would be accepted now."""
        return (
            not self.closed
            and len(self._messages) < self.max_messages
            and self.bytes + size <= self.max_bytes
        )

    def offer(self, data: bytes, *, now: float) -> bool:
        """Queue ``data``; False (and nothing queued) when full or closed."""
        if not self.has_room(len(data)):
            if self.full_since is None:
                self.full_since = now
            return False
        self._messages.append(data)
        self.bytes += len(data)
        wake = self.wake
        if wake is not None:
            wake()
        return True

    def take_all(self) -> list[bytes]:
        """Remove and return everything queued, oldest first."""
        messages = list(self._messages)
        self._messages.clear()
        self.bytes = 0
        self.full_since = None
        return messages

    def put_back(self, messages: list[bytes]) -> None:
        """Return messages taken with :meth:`take_all` but not written, to the front."""
        self._messages.extendleft(reversed(messages))
        self.bytes += sum(len(message) for message in messages)

    def close(self) -> int:
        """Refuse further messages and drop what is queued; return the bytes dropped."""
        self.closed = True
        dropped = self.bytes
        self._messages.clear()
        self.bytes = 0
        return dropped
