"""One child connection as the sentinel sees it, as a sans-I/O state machine (PROTOCOL.md §5, §7, §9).

Theory of operation. A :class:`ChildSession` is fed one message at a time
(:meth:`ChildSession.receive`, with the current time) and returns the
actions to carry out: :class:`~famefabric.sentinel.actions.Send` (bytes for
some connection's outbound queue) and
:class:`~famefabric.sentinel.actions.Close`. It never awaits and owns no
task; :mod:`famefabric.sentinel.pump` does the reading, writing and
closing, and ticks the session (:meth:`ChildSession.tick`) so that it can
close an idle link or one whose token expired.

The states and what moves between them::

    AWAITING_ATTACH --attach accepted------------> ATTACHED
    AWAITING_ATTACH --attach refused-------------> CLOSING
    ATTACHED --------another NodeAttach----------> ATTACHED (acknowledged again)
    ATTACHED --------newer connection, same id---> REPLACED
    any open state --close (idle, expired, slow,
                      shutdown, replaced)--------> CLOSING
    any state -------link closed-----------------> CLOSED

Before the attach, envelopes are kept (bounded) and replayed once it is
accepted (C-39). Only ATTACHED sessions route and receive traffic; a
REPLACED or CLOSING session ignores what it still reads.

Each envelope is parsed once (:func:`famefabric.protocol.codec.parse_object`),
counted for flow control (a ``CreditUpdate`` is granted at once, §9), and
then either answered (control frames, decoded through
:mod:`famefabric.protocol.frames` so that a malformed one is refused with
one message) or routed by the shared :class:`~famefabric.sentinel.router.Router`
after the authorization rules of :mod:`famefabric.sentinel.authorization`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from famefabric.clock import timestamp
from famefabric.errors import ProtocolError
from famefabric.observability import metrics
from famefabric.protocol import envelopes
from famefabric.protocol.address import parse_address
from famefabric.protocol.codec import (
    nested_deeper_than,
    parse_object,
    salvage_object,
)
from famefabric.protocol.flow import LOW_WATER, FlowState
from famefabric.protocol.frames import (
    FRAME_TYPES,
    IGNORED_FRAME_TYPES,
    INITIAL_CREDITS,
)
from famefabric.protocol.ids import new_id
from famefabric.routing.permissions import Identity
from famefabric.sentinel import authorization
from famefabric.sentinel.actions import (
    CREDITS_EXCEEDED,
    INVALID_ENVELOPE,
    Action,
    Close,
    Send,
)
from famefabric.sentinel.attach import handle_attach
from famefabric.sentinel.control import answer_control
from famefabric.sentinel.outbound import OutboundQueue
from famefabric.sentinel.router import Router
from famefabric.sentinel.states import TRANSITIONS, Event, SessionState

log = logging.getLogger("famefabric.sentinel")

_RECEIVED = {name: metrics.ENVELOPES_IN.labels(name) for name in metrics.FRAME_TYPES}
_RECEIVED_OTHER = metrics.ENVELOPES_IN.labels("other")

WARNINGS_PER_CONNECTION = 5
"""Dropped-frame warnings logged at WARNING per connection; the rest go to DEBUG."""

CREDIT_SLACK = INITIAL_CREDITS
"""Envelopes past a flow's window tolerated before the sender counts as a violator.

A sender learns of a grant one trip after we send it, and the reference clamps
its balance to 32, so an honest sender may have up to 32 envelopes on the way
when a grant leaves plus the 32 that grant allows: 64 since our last grant.
"""

_ROUTED = frozenset({"Data", "DeliveryAck"})
_NO_ACTIONS: list[Action] = []

__all__ = ["TRANSITIONS", "ChildSession", "Event", "SessionState"]


class ChildSession:
    """The state of one child connection and the handling of what it sends.

    Args:
        router: the sentinel's shared routing state.
        node_id: the system id from the attach URL.
        now: the current time (monotonic seconds).
        identity: who the admission token says the node is; None in open mode.
        wall_now: the current Unix time, to place ``identity.expires_at`` on ``now``'s clock.
        description: the far end, for logs.
    """

    def __init__(
        self,
        router: Router,
        node_id: str,
        *,
        now: float,
        identity: Identity | None = None,
        wall_now: float | None = None,
        description: str = "",
    ) -> None:
        limits = router.limits
        self.router = router
        self.node_id = node_id
        self.identity = identity
        self.description = description or node_id
        self.path = f"{router.path}/{node_id}"
        self.flow_id = new_id()
        self.epoch = new_id()
        self.state = SessionState.AWAITING_ATTACH
        self.flows = FlowState()
        self.outbound = OutboundQueue(
            max_bytes=limits.outbound_max_bytes, max_messages=limits.outbound_max_messages
        )
        self.pending: list[tuple[dict[str, Any], int]] = []
        self.pending_bytes = 0
        self.warnings = 0
        self.last_seen = now
        self.attach_by = now + limits.attach_deadline
        self.route_bytes = 0
        """Characters of the addresses and capabilities this node added to the table."""
        self.route_refusals = 0
        """Binds and advertises refused on this connection for crossing a routes limit."""
        self.route_limit = ""
        """The variable of the routes limit crossed last."""
        self.close_request: tuple[int, str] | None = None
        self.held_credits: set[str] = set()
        """Flows whose credit grant is held back while the node is at its in-flight limit."""
        self.expires_at: float | None = None
        """When the identity's token expires, on ``now``'s clock."""
        if identity is not None and identity.expires_at is not None:
            wall = now if wall_now is None else wall_now
            self.expires_at = now + (identity.expires_at - wall)
        router.sessions.add(self)

    def __repr__(self) -> str:
        return f"<ChildSession {self.node_id} {self.state.value}>"

    @property
    def reachable(self) -> bool:
        """Tell whether traffic may be routed to this session's node."""
        return self.state is SessionState.ATTACHED

    def transition(self, event: Event) -> None:
        """Apply ``event`` to the state machine.

        Raises:
            RuntimeError: the event is not allowed in the current state.
        """
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            raise RuntimeError(f"session {self.node_id}: {event.value} in state {self.state.value}")
        self.state = target

    def closing(self, code: int, reason: str) -> None:
        """Enter CLOSING with ``code`` and ``reason`` (the first request wins)."""
        if self.close_request is None:
            self.close_request = (code, reason)
        if self.state is not SessionState.CLOSED:
            self.transition(Event.CLOSE)

    def link_closed(self, now: float) -> list[Action]:
        """The link is gone: forget the session and, for the live one, its routes."""
        self.transition(Event.LINK_CLOSED)
        self.outbound.close()
        return self.router.detach(self, now)

    def tick(self, now: float, idle_timeout: float | None) -> list[Action]:
        """Close the link when it has been silent for ``idle_timeout`` or its token expired."""
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return _NO_ACTIONS
        if self.state is SessionState.AWAITING_ATTACH and now >= self.attach_by:
            log.info("node %s: closing the connection, it did not attach in time", self.node_id)
            deadline = self.router.limits.attach_deadline
            return self._close(1008, f"no NodeAttach within {deadline:g} s")
        if self.expires_at is not None and now >= self.expires_at:
            log.info("node %s: closing the connection, its token expired", self.node_id)
            return self._close(1008, "token expired")
        if idle_timeout is not None and now - self.last_seen >= idle_timeout:
            log.info(
                "node %s: closing the connection, no message for %g s", self.node_id, idle_timeout
            )
            return self._close(1000, f"idle for {idle_timeout:g} s")
        return _NO_ACTIONS

    def next_deadline(self, idle_timeout: float | None) -> float | None:
        """The time :meth:`tick` must be called at, at the latest."""
        deadlines = [d for d in (self.expires_at,) if d is not None]
        if self.state is SessionState.AWAITING_ATTACH:
            deadlines.append(self.attach_by)
        if idle_timeout is not None:
            deadlines.append(self.last_seen + idle_timeout)
        return min(deadlines) if deadlines else None

    def _close(self, code: int, reason: str) -> list[Action]:
        self.closing(code, reason)
        return [Close(self, code, reason)]

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

    def own(self, wire: dict[str, Any]) -> Send:
        """Stamp and serialize an envelope the sentinel sends on this connection."""
        if "flowId" not in wire:
            self.flows.stamp_wire(wire, self.flow_id)
        if self.router.printer is not None:
            self.router.printer.show("sent", wire, peer=self.node_id)
        return Send(self, orjson.dumps(wire))

    # -- input ---------------------------------------------------------------

    def receive(self, message: bytes | str, now: float) -> list[Action]:
        """Handle one message from the node; return what to do."""
        self.last_seen = now
        if self.state is not SessionState.AWAITING_ATTACH and not self.reachable:
            return _NO_ACTIONS
        try:
            envelope = parse_object(message)
        except ProtocolError as exc:
            return self._unparsable(message, exc, now)
        depth = self.router.limits.max_json_depth
        if nested_deeper_than(message, envelope, depth):
            return self._too_deep(envelope, depth, now)
        return self.feed(envelope, len(message), now)

    def _too_deep(self, envelope: dict[str, Any], depth: int, now: float) -> list[Action]:
        """Refuse an envelope nested deeper than the limit, with a NACK that names it."""
        out: list[Action] = []
        reason = (
            f"envelope refused: it nests arrays and objects more than {depth} levels deep, "
            "the most allowed (FAME_SENTINEL_MAX_JSON_DEPTH)"
        )
        if self.reachable:
            self.router.nack(envelope, INVALID_ENVELOPE, reason, out, now)
        self.warn("dropped a message nested more than %d levels deep", depth)
        return out

    def _unparsable(self, message: bytes | str, exc: ProtocolError, now: float) -> list[Action]:
        """A message our parser refused: NACK it when its routing fields can still be read."""
        out: list[Action] = []
        small = len(message) <= self.router.limits.max_envelope_bytes
        salvaged = salvage_object(message) if small and self.reachable else None
        if salvaged is not None:
            self.router.nack(salvaged, INVALID_ENVELOPE, f"envelope refused: {exc}", out, now)
        self.warn("dropped a message: %s", exc)
        return out

    def feed(self, envelope: dict[str, Any], size: int, now: float) -> list[Action]:
        """Handle one parsed envelope of ``size`` bytes; return what to do."""
        router = self.router
        if router.printer is not None:
            router.printer.show("received", envelope, peer=self.node_id)
        frame = envelope["frame"]
        frame_type = frame["type"]
        _RECEIVED.get(frame_type, _RECEIVED_OTHER).inc()
        if frame_type == "CreditUpdate":
            return _NO_ACTIONS  # hop-local; we never block on credits (§9)
        out: list[Action] = []
        flow_id = envelope.get("flowId")
        if type(flow_id) is str:
            left = self.flows.take_credit(flow_id)
            if left <= LOW_WATER:
                if left < -CREDIT_SLACK:
                    return self._over_credits(envelope, flow_id, out, now)
                if self.router.may_grant(self):
                    self.flows.grant(flow_id)
                    out.append(self.own(envelopes.credit_update(flow_id, ts=timestamp())))
                else:
                    self.held_credits.add(flow_id)
        for key in ("to", "replyTo"):
            value = envelope.get(key)
            if value is not None and not self._valid_address(value, key, frame_type):
                return out
        if self.state is SessionState.AWAITING_ATTACH:
            if frame_type == "NodeAttach":
                handle_attach(self, envelope, frame, out, now)
            else:
                overflow = self._buffer(envelope, size)
                if overflow is not None:
                    log.warning("node %s: closing the connection, it %s", self.node_id, overflow)
                    self.closing(1008, overflow)
                    out.append(Close(self, 1008, overflow))
            return out
        self.dispatch(envelope, frame, frame_type, size, out, now)
        return out

    def release_credits(self, out: list[Action]) -> None:
        """Send the credit grants held back while the node had too many requests in flight."""
        held = self.held_credits
        if not held or not self.reachable or not self.router.may_grant(self):
            return
        for flow_id in held:
            self.flows.grant(flow_id)
            out.append(self.own(envelopes.credit_update(flow_id, ts=timestamp())))
        held.clear()

    def _over_credits(
        self, envelope: dict[str, Any], flow_id: str, out: list[Action], now: float
    ) -> list[Action]:
        """The node sent past its credit window: tell it, then close the connection (§9)."""
        if not self.reachable:
            return out
        window = INITIAL_CREDITS + CREDIT_SLACK
        reason = (
            f"node {self.node_id} sent more than {window} envelopes on flow {flow_id[:64]} "
            f"since its last CreditUpdate; a sender must wait for credits (PROTOCOL.md §9)"
        )
        log.warning("node %s: closing the connection, %s", self.node_id, reason)
        self.router.nack(envelope, CREDITS_EXCEEDED, reason, out, now)
        close_reason = f"sent past its credit window of {INITIAL_CREDITS} on a flow"
        self.closing(1008, close_reason)
        out.append(Close(self, 1008, close_reason))
        return out

    def dispatch(
        self,
        envelope: dict[str, Any],
        frame: dict[str, Any],
        frame_type: str,
        size: int,
        out: list[Action],
        now: float,
    ) -> None:
        if frame_type in _ROUTED:
            if authorization.authorize(self, envelope, frame, frame_type, out, now):
                out.extend(self.router.forward(self, envelope, size, now))
        elif frame_type == "NodeAttach":
            handle_attach(self, envelope, frame, out, now)
        elif frame_type in IGNORED_FRAME_TYPES:
            log.debug("node %s: ignored a %s frame", self.node_id, frame_type)
        elif frame_type not in FRAME_TYPES:
            self.warn(
                "dropped an envelope with unknown frame type %r; expected one of %s",
                frame_type[:64],
                ", ".join(FRAME_TYPES),
            )
        else:
            ack = answer_control(self, frame_type, frame, _text(envelope.get("id")) or new_id())
            if ack is None:
                self.warn("dropped a %s frame: not expected from a node", frame_type)
                return
            out.append(self.answer(ack, envelope))
            if self.route_refusals > self.router.limits.max_route_refusals:
                self._close_route_flooder(out)

    def refused_route(self, variable: str) -> None:
        """Count a bind or advertise refused for crossing the limit set by ``variable``."""
        self.route_refusals += 1
        self.route_limit = variable

    def _close_route_flooder(self, out: list[Action]) -> None:
        """Close a node that keeps sending route changes past its limits (1008)."""
        reason = f"kept adding routes past {self.route_limit}"
        log.warning(
            "node %s: closing the connection, %d route changes refused (%s); the most "
            "tolerated is %d (FAME_SENTINEL_MAX_ROUTE_REFUSALS)",
            self.node_id,
            self.route_refusals,
            self.route_limit,
            self.router.limits.max_route_refusals,
        )
        self.closing(1008, reason)
        out.append(Close(self, 1008, reason))

    def answer(self, frame: Any, request: dict[str, Any], *, with_sid: bool = True) -> Send:
        return self.own(
            envelopes.answer(
                frame,
                trace_id=_text(request.get("traceId")),
                corr_id=_text(request.get("corrId")),
                sid=self.router.sid if with_sid else None,
                ts=timestamp(),
            )
        )

    def _valid_address(self, value: object, key: str, frame_type: str) -> bool:
        """Check an envelope's ``to``/``replyTo``; warn when it is invalid (C-40)."""
        try:
            if type(value) is not str:
                raise ProtocolError(f"{key} must be an address string, got {value!r:.80}")
            parse_address(value)
        except ProtocolError as exc:
            self.warn("dropped a %s envelope: %s", frame_type, exc)
            return False
        return True

    def _buffer(self, envelope: dict[str, Any], size: int) -> str | None:
        """Keep an envelope until the attach; say which bound it would cross instead."""
        limits = self.router.limits
        if len(self.pending) >= limits.pending_max_messages:
            return (
                f"sent more than {limits.pending_max_messages} envelopes before NodeAttach "
                "(FAME_SENTINEL_PENDING_MAX_MESSAGES)"
            )
        if self.pending_bytes + size > limits.pending_max_bytes:
            return (
                f"sent more than {limits.pending_max_bytes} bytes before NodeAttach "
                "(FAME_SENTINEL_PENDING_MAX_BYTES)"
            )
        self.pending.append((envelope, size))
        self.pending_bytes += size
        return None


def _text(value: object) -> str | None:
    return value if type(value) is str else None
