"""Credit-based flow control, per hop and per flow (PROTOCOL.md §9).

Receiving side: every envelope other than ``CreditUpdate`` takes one from the
flow's count (starting at 32); when it reaches 8 or less, the receiver grants
32 fresh credits at once and resets the count. That is one ``CreditUpdate``
after every 24 envelopes of a flow.

Sending side: ``seqId`` counts 0, 1, 2… per flow on the connection, and the
first envelope of a flow carries ``SYN``; a ``RESET`` bit the sender set (a
NACK) is kept.

:class:`FlowState` holds both directions for one connection; nodes and the
sentinel use the same type. Both maps are bounded: beyond ``max_flows`` the
oldest flow is forgotten first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from famefabric.protocol.frames import FLOW_RESET, FLOW_SYN, INITIAL_CREDITS

LOW_WATER = 8
"""A grant is due when a flow's remaining count falls to this."""

MAX_FLOWS = 4096
"""Most flows whose state one connection keeps per direction."""


class FlowState:
    """Sequence numbers of the flows sent and credit counts of the flows received.

    Args:
        max_flows: the most flows remembered per direction; the oldest go first.
    """

    __slots__ = ("_credits", "_max_flows", "_next_seq")

    def __init__(self, *, max_flows: int = MAX_FLOWS) -> None:
        self._max_flows = max_flows
        self._next_seq: dict[str, int] = {}
        self._credits: dict[str, int] = {}

    def stamp(self, flow_id: str) -> tuple[int, int]:
        """Return (seqId, flowFlags) for the next envelope sent on ``flow_id``."""
        seq = self._next_seq.get(flow_id)
        if seq is None:
            if len(self._next_seq) >= self._max_flows:
                del self._next_seq[next(iter(self._next_seq))]
            self._next_seq[flow_id] = 1
            return 0, FLOW_SYN
        self._next_seq[flow_id] = seq + 1
        return seq, 0

    def stamp_wire(self, wire: dict[str, Any], default_flow: str) -> None:
        """Fill ``flowId`` (if missing), ``seqId`` and ``flowFlags`` of an outgoing object.

        A ``RESET`` bit already in ``flowFlags`` is kept.
        """
        flow_id = wire.get("flowId")
        if type(flow_id) is not str:
            flow_id = wire["flowId"] = default_flow
        seq, flags = self.stamp(flow_id)
        incoming = wire.get("flowFlags")
        if type(incoming) is int and incoming & FLOW_RESET:
            flags |= FLOW_RESET
        wire["seqId"] = seq
        wire["flowFlags"] = flags

    def count_received(self, flow_id: str) -> bool:
        """Count one envelope received on ``flow_id``; True when a credit grant is due.

        The count starts at 32 and a grant of 32 is due when it falls to 8:
        after the 24th, 48th, … envelope of the flow (C-29).
        """
        if self.take_credit(flow_id) <= LOW_WATER:
            self._credits[flow_id] = INITIAL_CREDITS
            return True
        return False

    def take_credit(self, flow_id: str) -> int:
        """Count one envelope received on ``flow_id``; return the credits its sender has left.

        The count is what our grants left the sender: it starts at 32, loses
        one per envelope and is reset to 32 by :meth:`grant`. It goes below
        zero only when the sender sends without credits.
        """
        remaining = self._credits.get(flow_id)
        if remaining is None:
            if len(self._credits) >= self._max_flows:
                del self._credits[next(iter(self._credits))]
            remaining = INITIAL_CREDITS
        remaining -= 1
        self._credits[flow_id] = remaining
        return remaining

    def grant(self, flow_id: str) -> None:
        """Record a ``CreditUpdate`` of 32 sent for ``flow_id``."""
        self._credits[flow_id] = INITIAL_CREDITS

    def received_flows(self) -> list[str]:
        """Return the flows the peer has sent on."""
        return list(self._credits)

    def forget_flows(self, flow_ids: Iterable[str]) -> None:
        """Forget the sending state of flows whose originator has gone."""
        for flow_id in flow_ids:
            self._next_seq.pop(flow_id, None)

    def counts(self) -> tuple[int, int]:
        """Return (flows sent, flows received) currently remembered."""
        return len(self._next_seq), len(self._credits)
