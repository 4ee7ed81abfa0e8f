"""What the sans-I/O sentinel hands back, and what it asks of a cluster.

The child sessions (:mod:`famefabric.sentinel.session`) and the
:class:`~famefabric.sentinel.router.Router` never write to a socket: they
append :class:`Send` and :class:`Close` actions to a list, and the asyncio
pump (:mod:`famefabric.sentinel.pump`) carries them out. An envelope comes
from an :class:`Origin` (a child session, or a cluster peer's stand-in); a
sentinel in a cluster routes some envelopes to a :class:`Remote` sentinel
through its :class:`ClusterRoutes`. The NACK codes the sentinel itself
sends (besides routing's) and the close code of a slow consumer are here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from famefabric.routing import Deliver
from famefabric.routing.decisions import Decision

if TYPE_CHECKING:
    from famefabric.sentinel.session import ChildSession

DESTINATION_BUSY = "DESTINATION_BUSY"
"""NACK code: the destination's outbound queue is full (it reads too slowly)."""
INVALID_ENVELOPE = "INVALID_ENVELOPE"
"""NACK code: the envelope holds values JSON cannot carry, or cannot be re-serialized."""
FORBIDDEN = "FORBIDDEN"
"""NACK code: the sender's identity may not call the address."""
TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
"""NACK code: the sender already has the most requests in flight it may have."""
CREDITS_EXCEEDED = "CREDITS_EXCEEDED"
"""NACK code: the sender sent past its credit window (§9); its connection is then closed."""
SLOW_CONSUMER_CLOSE = 1008
"""Close code of a slow consumer (policy violation)."""


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` (one serialized envelope) to ``target``'s connection."""

    target: ChildSession
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``target``'s connection with a WebSocket close code and reason."""

    target: ChildSession
    code: int
    reason: str


Action = Send | Close


@dataclass(frozen=True, slots=True)
class Remote:
    """Route the envelope to another sentinel of the cluster; ``node`` is the chosen child there."""

    sentinel_id: str
    node: str | None = None


class Origin(Protocol):
    """Who an envelope comes from: a child session, or a cluster peer's stand-in."""

    node_id: str

    def warn(self, message: str, *args: object) -> None: ...


class ClusterRoutes(Protocol):
    """What the router asks of the cluster (:mod:`famefabric.sentinel.cluster`), when there is one."""

    def reroute(
        self, envelope: dict[str, Any], decision: Decision, source: str | None
    ) -> Deliver | Remote | None:
        """Override the local ``decision`` (None: keep it)."""

    def send(
        self,
        origin: Origin | None,
        envelope: dict[str, Any],
        remote: Remote,
        out: list[Action],
        now: float,
    ) -> None:
        """Send ``envelope`` from ``origin`` (None: the sentinel) to a peer sentinel."""


PEER_PREFIX = "~"
"""Names of cluster peers in the in-flight table: ``~<sentinel>`` (and ``~<sentinel>/<node>``).

A ``~`` never starts a node's system id, so these never clash with children.
"""
