"""Credit-based flow control, per hop and per flow (PROTOCOL.md §9).

Receiving side: every envelope other than ``CreditUpdate`` takes one from the
flow's count (starting at 32); when it reaches 8 or less, the receiver grants
32 fresh credits at once and resets the count. That is one ``CreditUpdate``
after every 24 envelopes of a flow.

Sending side: ``seqId`` counts 0, 1, 2… per flow on the connection, and the
first envelope of a flow carries ``SYN``.
"""

from __future__ import annotations

from famefabric.protocol.frames import FLOW_SYN, INITIAL_CREDITS

LOW_WATER = 8


class CreditLedger:
    """Counts received envelopes per flow and says when to grant credits."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def on_receive(self, flow_id: str) -> bool:
        """Record one received envelope; True when a ``CreditUpdate`` is due now."""
        remaining = self._counts.get(flow_id, INITIAL_CREDITS) - 1
        if remaining <= LOW_WATER:
            self._counts[flow_id] = INITIAL_CREDITS
            return True
        self._counts[flow_id] = remaining
        return False


class SequenceStamper:
    """Stamps ``seqId`` and ``flowFlags`` on envelopes sent over one connection."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def stamp(self, flow_id: str) -> tuple[int, int]:
        """Return (seqId, flowFlags) for the next envelope on ``flow_id``."""
        seq = self._next.get(flow_id, 0)
        self._next[flow_id] = seq + 1
        return seq, FLOW_SYN if seq == 0 else 0
