"""The sentinel's shared routing state and the forwarding of envelopes, without I/O.

:class:`Router` holds what every child session shares: the routing table,
the live session of each system id (at most one, §5.8), the in-flight
requests and the limits. Its methods are called by
:class:`~famefabric.sentinel.session.ChildSession` while it handles one
envelope, and they never await: instead of sending, they append
:class:`Send` and :class:`Close` actions (:mod:`famefabric.sentinel.actions`)
to the list the session returns, and the asyncio pump
(:mod:`famefabric.sentinel.pump`) carries them out.

The forwarding path works on the parsed JSON object, never on dataclasses:
it reads ``to``, ``replyTo``, ``capabilities``, ``rtype``, ``corrId`` and
``id``, asks :func:`famefabric.routing.route` for a decision, restamps the
flow fields for the outgoing hop (§3.3) and serializes the object again,
once. A destination's outbound queue is checked at decision time: a request
to a full queue is NACKed ``DESTINATION_BUSY`` at once; a reply or stream
item that does not fit makes the destination a slow consumer (closed, and
the requests it had not answered are NACKed at once).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from famefabric.clock import timestamp
from famefabric.envelope_log import EnvelopePrinter
from famefabric.observability import metrics, tracing
from famefabric.protocol import envelopes
from famefabric.protocol.envelopes import is_request_rtype
from famefabric.protocol.ids import source_id
from famefabric.routing import (
    CHILD_UNREACHABLE,
    MESSAGE_TOO_LARGE,
    Deliver,
    Reject,
    RoutingTable,
    is_nackable,
    route,
)
from famefabric.routing.decisions import Decision
from famefabric.sentinel import spans
from famefabric.sentinel.actions import (
    DESTINATION_BUSY,
    INVALID_ENVELOPE,
    SLOW_CONSUMER_CLOSE,
    TOO_MANY_REQUESTS,
    Action,
    Close,
    ClusterRoutes,
    Origin,
    Remote,
    Send,
)
from famefabric.sentinel.inflight import InflightRequest, InflightRequests
from famefabric.sentinel.limits import SentinelLimits

if TYPE_CHECKING:
    from famefabric.sentinel.session import ChildSession

log = logging.getLogger("famefabric.sentinel")

MAX_JSON_DEPTH = 254
"""Deepest nesting of JSON arrays and objects the sentinel re-serializes (orjson's limit)."""

_DEBUG = logging.DEBUG
_NACKS = {code: metrics.NACKS.labels(code) for code in metrics.NACK_CODES}
_NACK_OTHER = metrics.NACKS.labels("other")


class Router:
    """Routing state shared by the child sessions of one sentinel.

    Args:
        system_id: the sentinel's system id.
        inflight: where forwarded requests are remembered until answered.
        limits: the sentinel's limits.
        printer: prints every envelope received, forwarded or sent, if given.
    """

    def __init__(
        self,
        *,
        system_id: str,
        inflight: InflightRequests,
        limits: SentinelLimits,
        printer: EnvelopePrinter | None = None,
    ) -> None:
        self.system_id = system_id
        self.path = f"/{system_id}"
        self.sid = source_id(self.path)
        self.table = RoutingTable()
        self.inflight = inflight
        self.limits = limits
        self.printer = printer
        self.live: dict[str, ChildSession] = {}
        """The attached session of each system id."""
        self.sessions: set[ChildSession] = set()
        """Every open session, attached or not."""
        self.span: Any = None
        """The span of the request :meth:`forward` is routing, when tracing is on."""
        self.cluster: ClusterRoutes | None = None
        """The cluster this sentinel belongs to, if any."""

    def forward(
        self,
        session: Origin,
        envelope: dict[str, Any],
        size: int,
        now: float,
        decision: Decision | None = None,
    ) -> list[Action]:
        """Route a ``Data``/``DeliveryAck`` envelope from ``session``'s node (§7.2).

        ``decision`` is given for envelopes from cluster peers, which the
        cluster routes to the child their sentinel chose.
        """
        out: list[Action] = []
        source = session.node_id
        inflight = self.inflight
        max_bytes = self.limits.max_envelope_bytes
        oversize = size > max_bytes
        request = is_request_rtype(envelope.get("rtype"))
        if inflight and not request:
            answered = inflight.settle(envelope, source=source, force=oversize)
            if answered is not None and answered.span is not None and not oversize:
                spans.answered(answered, envelope)
            if answered is not None:
                self.settled(answered, out)
            if oversize and answered is not None:
                # The reply cannot be forwarded (§2.4): fail the call now
                # instead of leaving the caller to its timeout (C-30).
                session.warn("dropped a reply of %d bytes: over the limit", size)
                self.nack_request(
                    answered,
                    MESSAGE_TOO_LARGE,
                    f"reply of {size} bytes exceeds the {max_bytes}-byte limit",
                    out,
                    now,
                )
                return out
        if oversize:
            self.too_large(session, envelope, size, out, now)
            return out
        if request and inflight.count_source(source) >= self.limits.max_inflight_per_node:
            limit = self.limits.max_inflight_per_node
            session.warn("refused a request: %d requests in flight already", limit)
            reason = (
                f"node {source} has {limit} requests in flight, the most allowed "
                "(FAME_SENTINEL_MAX_INFLIGHT_PER_NODE); wait for replies first"
            )
            self.nack(envelope, TOO_MANY_REQUESTS, reason, out, now)
            return out
        if decision is None:
            decision = route(self.table, envelope, sentinel_id=self.system_id, source=source)
            cluster = self.cluster
            if cluster is not None:
                elsewhere = cluster.reroute(envelope, decision, source)
                if elsewhere is not None:
                    if isinstance(elsewhere, Remote):
                        cluster.send(session, envelope, elsewhere, out, now)
                        return out
                    decision = elsewhere
        if not isinstance(decision, Deliver):
            if isinstance(decision, Reject):
                if log.isEnabledFor(_DEBUG):
                    log.debug("node %s: %s (%s)", source, decision.reason, decision.code)
                self.nack(envelope, decision.code, decision.reason, out, now)
            elif log.isEnabledFor(_DEBUG):
                log.debug("node %s: dropped an envelope: %s", source, decision.reason)
            return out
        destination = self.live.get(decision.connection_id)
        if destination is None or not destination.reachable:
            self.nack(envelope, CHILD_UNREACHABLE, f"Unroutable to {envelope.get('to')}", out, now)
            return out
        if request:
            limit = self.limits.max_inflight_per_destination
            if inflight.count_destination(destination.node_id) >= limit:
                reason = (
                    f"node {destination.node_id} has {limit} requests awaiting replies, the most "
                    "allowed (FAME_SENTINEL_MAX_INFLIGHT_PER_DESTINATION); try again later"
                )
                session.warn("refused a request: %s", reason)
                self.nack(envelope, DESTINATION_BUSY, reason, out, now)
                return out
        queue = destination.outbound
        if request and tracing.ACTIVE and not tracing.unsampled(envelope.get("meta")):
            self.span = spans.forwarding(envelope, source, destination.node_id, queue)
        data = self.serialize(session, envelope, destination, out, now)
        if data is None:
            return out
        if len(data) > max_bytes:
            self.too_large(session, envelope, len(data), out, now)
            return out
        if not queue.has_room(len(data)):
            queue.full_since = queue.full_since if queue.full_since is not None else now
            if request or is_nackable(envelope):
                self.nack(
                    envelope,
                    DESTINATION_BUSY,
                    f"node {destination.node_id} is not reading its messages fast enough "
                    f"({len(queue)} messages, {queue.bytes} bytes unread); try again later",
                    out,
                    now,
                )
                if now - queue.full_since >= self.limits.write_deadline:
                    self.slow_consumer(destination, out, now)
            else:
                self.slow_consumer(destination, out, now)
            return out
        if request:
            span, self.span = self.span, None
            if (
                inflight.add(envelope, source=source, destination=destination.node_id, span=span)
                is None
                and span is not None
            ):
                span.end()  # not tracked: nothing will end it later
        if self.printer is not None or log.isEnabledFor(_DEBUG):
            self.trace(envelope, source, destination)
        out.append(Send(destination, data))
        return out

    def may_grant(self, session: ChildSession) -> bool:
        """Tell whether ``session``'s node may get fresh credits: it is under its in-flight limit."""
        inflight = self.inflight
        return not inflight or (
            inflight.count_source(session.node_id) < self.limits.max_inflight_per_node
        )

    def settled(self, entry: InflightRequest, out: list[Action]) -> None:
        """A request of ``entry.source`` is answered: send the grants held back from it."""
        source = self.live.get(entry.source)
        if source is not None and source.held_credits:
            source.release_credits(out)

    def serialize(
        self,
        session: Origin,
        envelope: dict[str, Any],
        destination: ChildSession,
        out: list[Action],
        now: float,
    ) -> bytes | None:
        """Stamp ``envelope`` for the hop to ``destination`` and serialize it (§3.3, §9).

        An envelope that cannot be serialized (nested too deep, a lone
        surrogate) is NACKed ``INVALID_ENVELOPE`` and None is returned.
        """
        destination.flows.stamp_wire(envelope, destination.flow_id)
        try:
            return orjson.dumps(envelope)
        except orjson.JSONEncodeError as exc:
            problem = str(exc)
            if "ecursion" in problem:
                problem = f"it is nested deeper than {MAX_JSON_DEPTH} levels, the most forwarded"
            reason = f"envelope cannot be forwarded: {problem}"
            session.warn("dropped envelope %s: %s", _text(envelope.get("id")), exc)
            self.nack(envelope, INVALID_ENVELOPE, reason, out, now)
            return None

    def trace(
        self, envelope: dict[str, Any], source: str | None, destination: ChildSession
    ) -> None:
        if self.printer is not None:
            self.printer.show("forwarded", envelope, peer=destination.node_id)
        if log.isEnabledFor(_DEBUG):
            frame = envelope.get("frame")
            log.debug(
                "forwarded %s %s from %s to %s",
                frame.get("type") if isinstance(frame, dict) else None,
                envelope.get("id"),
                source or self.system_id,
                destination.node_id,
            )

    def too_large(
        self,
        session: Origin,
        envelope: dict[str, Any],
        size: int,
        out: list[Action],
        now: float,
    ) -> None:
        limit = self.limits.max_envelope_bytes
        session.warn(
            "dropped envelope %s of %d bytes: over the %d-byte limit",
            _text(envelope.get("id")),
            size,
            limit,
        )
        reason = f"envelope of {size} bytes exceeds the {limit}-byte limit"
        self.nack(envelope, MESSAGE_TOO_LARGE, reason, out, now)

    def nack(
        self, failed: dict[str, Any], code: str, reason: str, out: list[Action], now: float
    ) -> None:
        """NACK ``failed`` to its ``replyTo`` when it earns one (§7.6)."""
        if (
            tracing.ACTIVE
            and is_request_rtype(failed.get("rtype"))
            and not tracing.unsampled(failed.get("meta"))
        ):
            span, self.span = self.span, None
            spans.refused(span, failed, None, code, reason)
        if not is_nackable(failed):
            if log.isEnabledFor(_DEBUG):
                log.debug("dropped %s without a NACK: %s (%s)", failed.get("id"), reason, code)
            return
        self.send_nack(
            to=failed["replyTo"],
            corr_id=failed["corrId"],
            ref_id=failed["id"],
            trace_id=_text(failed.get("traceId")),
            code=code,
            reason=reason,
            out=out,
            now=now,
        )

    def nack_request(
        self, entry: InflightRequest, code: str, reason: str, out: list[Action], now: float
    ) -> None:
        """NACK a tracked request to its caller."""
        if entry.span is not None:
            spans.failed(entry, code, reason)
        self.send_nack(
            to=entry.reply_to,
            corr_id=entry.corr_id,
            ref_id=entry.request_id,
            trace_id=entry.trace_id,
            code=code,
            reason=reason,
            out=out,
            now=now,
        )

    def send_nack(
        self,
        *,
        to: str,
        corr_id: str,
        ref_id: str,
        trace_id: str | None,
        code: str,
        reason: str,
        out: list[Action],
        now: float,
    ) -> None:
        nack = envelopes.nack(
            to=to,
            corr_id=corr_id,
            ref_id=ref_id,
            code=code,
            reason=reason,
            trace_id=trace_id,
            sid=self.sid,
            ts=timestamp(),
        )
        decision = route(self.table, nack, sentinel_id=self.system_id, source=None)
        cluster = self.cluster
        if cluster is not None:
            elsewhere = cluster.reroute(nack, decision, None)
            if isinstance(elsewhere, Remote):
                cluster.send(None, nack, elsewhere, out, now)
                return
            if elsewhere is not None:
                decision = elsewhere
        destination = (
            self.live.get(decision.connection_id) if isinstance(decision, Deliver) else None
        )
        if destination is None or not destination.reachable:
            log.debug("dropped a %s NACK for %s: no route back to %s", code, ref_id, to)
            return
        destination.flows.stamp_wire(nack, destination.flow_id)
        data = orjson.dumps(nack)
        _NACKS.get(code, _NACK_OTHER).inc()
        if not destination.outbound.has_room(len(data)):
            self.slow_consumer(destination, out, now)
            return
        if self.printer is not None or log.isEnabledFor(_DEBUG):
            self.trace(nack, None, destination)
        out.append(Send(destination, data))

    def slow_consumer(self, session: ChildSession, out: list[Action], now: float) -> None:
        """Close a destination that does not read; NACK what it had not answered, at once."""
        if not session.reachable:
            return
        queue = session.outbound
        reason = f"slow consumer: {len(queue)} messages ({queue.bytes} bytes) unread"
        log.warning("node %s: closing the connection, %s", session.node_id, reason)
        metrics.SLOW_CONSUMERS.inc()
        queue.close()  # what it has not read is lost with the link anyway
        out.append(Close(session, SLOW_CONSUMER_CLOSE, reason))
        session.closing(SLOW_CONSUMER_CLOSE, reason)
        self.fail_unanswered(session, f"node {session.node_id} was too slow to read", out, now)

    def fail_unanswered(
        self, session: ChildSession, why: str, out: list[Action], now: float
    ) -> None:
        """NACK ``CHILD_UNREACHABLE`` every request delivered to ``session``'s node."""
        node_id = session.node_id
        if self.live.get(node_id) is not session:
            return
        for entry in self.inflight.pop_destination(node_id):
            self.nack_request(
                entry, CHILD_UNREACHABLE, f"Unroutable to {entry.to}: {why}", out, now
            )
            self.settled(entry, out)

    def detach(self, session: ChildSession, now: float) -> list[Action]:
        """Forget a closed session; for a node's live one, its routes too (§7.3)."""
        out: list[Action] = []
        self.sessions.discard(session)
        flows = session.flows.received_flows()
        if flows:
            for other in self.sessions:
                other.flows.forget_flows(flows)
        node_id = session.node_id
        if self.live.get(node_id) is not session:
            log.debug("node %s: connection %s closed", node_id, session.description)
            return out
        self.fail_unanswered(session, f"node {node_id} disconnected before replying", out, now)
        del self.live[node_id]
        routes = self.table.remove_node(node_id)
        self.inflight.drop_source(node_id)
        log.info(
            "node %s detached from %s%s",
            node_id,
            session.path,
            f"; dropped {_summary(routes.addresses)}" if routes.addresses else "",
        )
        return out


def _text(value: object) -> str | None:
    return value if type(value) is str else None


def _summary(addresses: set[str], shown: int = 5) -> str:
    names = sorted(addresses)
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"
