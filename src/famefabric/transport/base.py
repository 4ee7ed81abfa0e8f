"""The transport interface: one envelope per message, in both directions.

A transport moves whole messages (serialized envelopes) between two ends and
knows nothing of their content. Implementations translate their library's
exceptions into :class:`famefabric.errors.ConnectionClosed` in one place.
"""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """A message-oriented, ordered, bidirectional link.

    Call order: any number of ``send`` / ``receive`` calls (concurrently with
    each other, but one ``receive`` at a time), then ``close`` (idempotent).
    """

    @property
    def description(self) -> str:
        """A short text naming the far end, for logs and errors."""
        ...

    async def send(self, message: bytes) -> None:
        """Send one message.

        Raises:
            ConnectionClosed: the link is closed or closing.
        """
        ...

    async def receive(self) -> bytes | str:
        """Wait for the next message (text messages are returned as ``str``).

        Raises:
            ConnectionClosed: the link closed; ``code`` and ``reason`` say how.
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the link with a close code and reason; idempotent."""
        ...
