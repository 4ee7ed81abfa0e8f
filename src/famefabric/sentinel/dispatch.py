"""Handling the envelopes of child connections (PROTOCOL.md §5, §7, §9, §16.2).

Theory of operation. Each child connection is served by one reader
(:meth:`Dispatcher.read`) that handles the child's envelopes strictly in
arrival order (§7.5): it parses each message once, counts it for flow
control (granting credits at once, §9), and then either answers a control
frame on the same connection or routes a ``Data``/``DeliveryAck`` envelope
and sends it *directly* to the destination's transport. There is no queue
between a reader and a destination: a message's bytes are written to the
destination socket within the ``send`` call, in the order readers call it,
which keeps every source's order intact; a slow destination slows down the
readers that feed it (as in the reference).

The forwarding path works on the parsed JSON object, never on ``Envelope``
dataclasses: it reads ``to``, ``replyTo``, ``capabilities``, ``rtype``,
``corrId`` and ``id``, asks :func:`famefabric.routing.route` for a decision,
restamps ``seqId``/``flowFlags`` (filling ``flowId``) in place for the
outgoing hop (§3.3), and serializes the object again. The sentinel's own
answers (acks) are built as ``Envelope`` dataclasses: they are rare.

Routing state is keyed by the children's system ids: at most one live
connection per system id (a newer attach replaces the older one, §5.8), so
a route survives such a replacement. When a child's live connection closes
(:meth:`Dispatcher.detach`), its bindings go (the next connection gets a
fresh epoch, §5.6) and the requests it had not answered are NACKed
``CHILD_UNREACHABLE`` (:mod:`famefabric.sentinel.inflight`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from famefabric.clock import timestamp
from famefabric.envelope_log import EnvelopePrinter
from famefabric.errors import ConnectionClosed, ProtocolError
from famefabric.protocol import envelopes
from famefabric.protocol.address import Address, parse_address
from famefabric.protocol.codec import dump_object, encode, envelope_to_dict, parse_object
from famefabric.protocol.envelopes import is_request_rtype
from famefabric.protocol.frames import (
    FLOW_RESET,
    FRAME_TYPES,
    IGNORED_FRAME_TYPES,
    MAX_ENVELOPE_BYTES,
    AddressBindAck,
    AddressUnbindAck,
    CapabilityAdvertiseAck,
    CapabilityWithdrawAck,
    Envelope,
    Frame,
    NodeAttachAck,
    NodeHeartbeatAck,
)
from famefabric.protocol.ids import new_id, source_id
from famefabric.routing import (
    CHILD_UNREACHABLE,
    MESSAGE_TOO_LARGE,
    ROUTE_CONNECTOR_CLOSED,
    Deliver,
    Reject,
    RoutingTable,
    is_nackable,
    route,
)
from famefabric.sentinel.connection import ChildConnection
from famefabric.sentinel.inflight import InflightRequest, InflightRequests

log = logging.getLogger("famefabric.sentinel")

_ROUTED = frozenset({"Data", "DeliveryAck"})
_DEBUG = logging.DEBUG


class Dispatcher:
    """Answers and routes the envelopes of every child connection of one sentinel.

    Call order, per connection: add it to :attr:`connections`, run
    :meth:`read` until it returns (the link closed), then :meth:`detach`.

    Args:
        system_id: the sentinel's system id.
        inflight: where forwarded requests are remembered until answered.
        printer: prints every envelope received, forwarded or sent, if given.
    """

    def __init__(
        self,
        *,
        system_id: str,
        inflight: InflightRequests,
        printer: EnvelopePrinter | None = None,
    ) -> None:
        self._system_id = system_id
        self._path = f"/{system_id}"
        self._sid = source_id(self._path)
        self._printer = printer
        self.table = RoutingTable()
        """Bindings, pools and capabilities of the attached children."""
        self._inflight = inflight
        self._live: dict[str, ChildConnection] = {}
        self.connections: set[ChildConnection] = set()
        """Every open child connection, attached or not."""

    async def read(self, connection: ChildConnection, loop: asyncio.AbstractEventLoop) -> None:
        """Handle the child's messages in arrival order until its link closes.

        ``loop`` is the running event loop (its clock feeds the idle timer).
        A failure while handling one envelope is logged with an error id and
        the next message is read: it never ends the connection.
        """
        receive = connection.transport.receive
        while True:
            try:
                message = await receive()
            except ConnectionClosed:
                return
            connection.last_seen = loop.time()
            if connection.replaced:
                continue
            try:
                await self._on_message(connection, message)
            except ConnectionClosed:
                continue  # our own link closed under us; receive() says so next
            except Exception:
                error_id = new_id()[:8]
                log.exception(
                    "node %s: error %s while handling an envelope; dropped it",
                    connection.node_id,
                    error_id,
                )

    async def _on_message(self, connection: ChildConnection, message: bytes | str) -> None:
        try:
            envelope = parse_object(message)
        except ProtocolError as exc:
            connection.warn("dropped a message: %s", exc)
            return
        if self._printer is not None:
            self._printer.show("received", envelope, peer=connection.node_id)
        frame = envelope["frame"]
        frame_type = frame["type"]
        if frame_type == "CreditUpdate":
            return  # hop-local; we never block on credits (§9)
        flow_id = envelope.get("flowId")
        if type(flow_id) is str and connection.count_received(flow_id):
            await self._grant_credits(connection, flow_id)
        to_text = envelope.get("to")
        to: Address | None = None
        if to_text is not None:
            to = _address(connection, to_text, "to", frame_type)
            if to is None:
                return
        reply_to = envelope.get("replyTo")
        if reply_to is not None and _address(connection, reply_to, "replyTo", frame_type) is None:
            return
        size = len(message)
        if not connection.attached:
            if frame_type == "NodeAttach":
                await self._attach(connection, envelope, frame)
            elif not connection.buffer(envelope, size):
                connection.warn("dropped a %s envelope: too many before the attach", frame_type)
            return
        if frame_type in _ROUTED:
            await self._forward(connection, envelope, size, to)
        else:
            await self._control(connection, envelope, frame, frame_type)

    async def _forward(
        self,
        connection: ChildConnection,
        envelope: dict[str, Any],
        size: int,
        to: Address | None,
    ) -> None:
        source = connection.node_id
        inflight = self._inflight
        oversize = size > MAX_ENVELOPE_BYTES
        if inflight:
            rtype = envelope.get("rtype")
            if not is_request_rtype(rtype):
                answered = inflight.settle(envelope, source=source, force=oversize)
                if oversize and answered is not None:
                    # The reply cannot be forwarded (§2.4): fail the call now
                    # instead of leaving the caller to its timeout (C-30).
                    connection.warn("dropped a reply of %d bytes: over the limit", size)
                    await self._nack_request(
                        answered,
                        MESSAGE_TOO_LARGE,
                        f"reply of {size} bytes exceeds the {MAX_ENVELOPE_BYTES}-byte limit",
                    )
                    return
        if oversize:
            await self._too_large(connection, envelope, size)
            return
        decision = route(self.table, envelope, sentinel_id=self._system_id, source=source, to=to)
        if not isinstance(decision, Deliver):
            if isinstance(decision, Reject):
                if log.isEnabledFor(_DEBUG):
                    log.debug("node %s: %s (%s)", source, decision.reason, decision.code)
                await self._nack(envelope, decision.code, decision.reason)
            elif log.isEnabledFor(_DEBUG):
                log.debug("node %s: dropped an envelope: %s", source, decision.reason)
            return
        destination = self._live.get(decision.connection_id)
        if destination is None or destination.closed:
            await self._nack(envelope, CHILD_UNREACHABLE, f"Unroutable to {envelope.get('to')}")
            return
        data = self._restamp(envelope, destination)
        if len(data) > MAX_ENVELOPE_BYTES:
            await self._too_large(connection, envelope, len(data))
            return
        key = None
        rtype = envelope.get("rtype")
        if is_request_rtype(rtype):
            key = inflight.add(envelope, source=source, destination=destination.node_id)
        if self._printer is not None or log.isEnabledFor(_DEBUG):
            self._trace(envelope, source, destination)
        try:
            await destination.send(data)
        except ConnectionClosed:
            if key is not None and inflight.discard(key) is None:
                return  # already NACKed when the destination detached
            await self._nack(
                envelope, ROUTE_CONNECTOR_CLOSED, f"Unroutable to {envelope.get('to')}"
            )

    def _restamp(self, envelope: dict[str, Any], destination: ChildConnection) -> bytes:
        """Stamp ``envelope`` for the hop to ``destination`` and serialize it (§3.3, §9).

        ``seqId`` and ``flowFlags`` are recomputed for this hop (a RESET bit
        is kept); a missing ``flowId`` becomes the destination's default flow.
        """
        flow_id = envelope.get("flowId")
        if type(flow_id) is not str:
            flow_id = destination.flow_id
            envelope["flowId"] = flow_id
        seq, flags = destination.stamp(flow_id)
        incoming = envelope.get("flowFlags")
        if type(incoming) is int and incoming & FLOW_RESET:
            flags |= FLOW_RESET
        envelope["seqId"] = seq
        envelope["flowFlags"] = flags
        return dump_object(envelope)

    def _trace(
        self, envelope: dict[str, Any], source: str | None, destination: ChildConnection
    ) -> None:
        if self._printer is not None:
            self._printer.show("forwarded", envelope, peer=destination.node_id)
        if log.isEnabledFor(_DEBUG):
            log.debug(
                "forwarded %s %s from %s to %s",
                envelope["frame"].get("type"),
                envelope.get("id"),
                source or self._system_id,
                destination.node_id,
            )

    async def _too_large(
        self, connection: ChildConnection, envelope: dict[str, Any], size: int
    ) -> None:
        connection.warn(
            "dropped envelope %s of %d bytes: over the %d-byte limit",
            envelope.get("id"),
            size,
            MAX_ENVELOPE_BYTES,
        )
        await self._nack(
            envelope,
            MESSAGE_TOO_LARGE,
            f"envelope of {size} bytes exceeds the {MAX_ENVELOPE_BYTES}-byte limit",
        )

    async def _nack(self, failed: dict[str, Any], code: str, reason: str) -> None:
        """Send a NACK for ``failed`` to its ``replyTo`` when it earns one (§7.6)."""
        if not is_nackable(failed):
            if log.isEnabledFor(_DEBUG):
                log.debug("dropped %s without a NACK: %s (%s)", failed.get("id"), reason, code)
            return
        await self._send_nack(
            to=failed["replyTo"],
            corr_id=failed["corrId"],
            ref_id=failed["id"],
            trace_id=_text(failed.get("traceId")),
            code=code,
            reason=reason,
        )

    async def _send_nack(
        self,
        *,
        to: str,
        corr_id: str,
        ref_id: str,
        trace_id: str | None,
        code: str,
        reason: str,
    ) -> None:
        nack = envelopes.nack(
            to=to,
            corr_id=corr_id,
            ref_id=ref_id,
            code=code,
            reason=reason,
            trace_id=trace_id,
            sid=self._sid,
            ts=timestamp(),
        )
        decision = route(self.table, nack, sentinel_id=self._system_id, source=None)
        destination = (
            self._live.get(decision.connection_id) if isinstance(decision, Deliver) else None
        )
        if destination is None or destination.closed:
            log.debug("dropped a %s NACK for %s: no route back to %s", code, ref_id, to)
            return
        data = self._restamp(nack, destination)
        if self._printer is not None or log.isEnabledFor(_DEBUG):
            self._trace(nack, None, destination)
        try:
            await destination.send(data)
        except ConnectionClosed:
            log.debug("dropped a %s NACK for %s: %s is closed", code, ref_id, to)

    async def _nack_request(self, entry: InflightRequest, code: str, reason: str) -> None:
        """NACK a tracked request to its caller."""
        await self._send_nack(
            to=entry.reply_to,
            corr_id=entry.corr_id,
            ref_id=entry.request_id,
            trace_id=entry.trace_id,
            code=code,
            reason=reason,
        )

    async def _grant_credits(self, connection: ChildConnection, flow_id: str) -> None:
        """Send ``CreditUpdate{flowId, credits:32}`` at once (§9, C-27..C-29)."""
        update = envelopes.credit_update(flow_id, ts=timestamp())
        if self._printer is not None:
            self._printer.show("sent", update, peer=connection.node_id)
        await connection.send(dump_object(update))

    async def _send_own(
        self,
        connection: ChildConnection,
        frame: Frame,
        request: dict[str, Any],
        *,
        with_sid: bool = True,
    ) -> None:
        """Answer ``request`` on ``connection`` with ``frame`` (traceId and corrId echoed)."""
        seq, flags = connection.stamp(connection.flow_id)
        envelope = Envelope(
            frame=frame,
            id=new_id(),
            sid=self._sid if with_sid else None,
            trace_id=_text(request.get("traceId")) or new_id(),
            corr_id=_text(request.get("corrId")),
            flow_id=connection.flow_id,
            seq_id=seq,
            flow_flags=flags,
            ts=timestamp(),
        )
        if self._printer is not None:
            self._printer.show("sent", envelope_to_dict(envelope), peer=connection.node_id)
        await connection.send(encode(envelope))

    async def _attach(
        self, connection: ChildConnection, envelope: dict[str, Any], frame: dict[str, Any]
    ) -> None:
        """Answer ``NodeAttach`` (§4.2, §5.1, §5.2, §5.8)."""
        node_id = connection.node_id
        ref_id = _text(envelope.get("id")) or new_id()
        claimed = frame.get("systemId")
        if claimed != node_id:
            reason = f"systemId {claimed!r} does not match the attach URL's {node_id!r}"
            log.warning("node %s: refused an attach: %s", node_id, reason)
            await self._send_own(
                connection,
                NodeAttachAck(ok=False, reason=reason, ref_id=ref_id),
                envelope,
                with_sid=False,
            )
            connection.request_close(1008, "systemId does not match the attach URL")
            return
        reattach = connection.attached
        if not reattach:
            older = self._live.get(node_id)
            if older is not None:
                older.replaced = True
                older.request_close(1000, "replaced by a newer connection")
                log.info("node %s attached again; closing its older connection", node_id)
            self._live[node_id] = connection
            self.table.add_node(node_id)
            connection.attached = True
        ack = NodeAttachAck(
            ok=True,
            ref_id=ref_id,
            target_system_id=self._system_id,
            target_physical_path=self._path,
            assigned_path=connection.path,
            routing_epoch=connection.epoch,
        )
        await self._send_own(connection, ack, envelope, with_sid=False)
        if reattach:
            log.debug("node %s: re-acknowledged a second NodeAttach", node_id)
            return
        log.info("node %s attached as %s (epoch %s)", node_id, connection.path, connection.epoch)
        for pending, size in connection.take_pending():
            try:
                await self._replay(connection, pending, size)
            except ConnectionClosed:
                raise
            except Exception:
                log.exception("node %s: error while handling a buffered envelope", node_id)

    async def _replay(
        self, connection: ChildConnection, envelope: dict[str, Any], size: int
    ) -> None:
        frame = envelope["frame"]
        frame_type = frame["type"]
        to_text = envelope.get("to")
        to = parse_address(to_text) if type(to_text) is str else None
        if frame_type in _ROUTED:
            await self._forward(connection, envelope, size, to)
        else:
            await self._control(connection, envelope, frame, frame_type)

    async def _control(
        self,
        connection: ChildConnection,
        envelope: dict[str, Any],
        frame: dict[str, Any],
        frame_type: str,
    ) -> None:
        """Handle a control frame from an attached child (§7.1)."""
        node_id = connection.node_id
        ref_id = _text(envelope.get("id")) or new_id()
        if frame_type == "NodeHeartbeat":
            ack: Frame = NodeHeartbeatAck(ok=True, ref_id=ref_id, routing_epoch=connection.epoch)
        elif frame_type in ("AddressBind", "AddressUnbind"):
            ack = self._bind(connection, frame_type, frame.get("address"), ref_id)
        elif frame_type in ("CapabilityAdvertise", "CapabilityWithdraw"):
            ack = self._advertise(connection, frame_type, frame, ref_id)
        elif frame_type == "NodeAttach":
            await self._attach(connection, envelope, frame)
            return
        elif frame_type in IGNORED_FRAME_TYPES:
            log.debug("node %s: ignored a %s frame", node_id, frame_type)
            return
        elif frame_type in FRAME_TYPES:
            connection.warn("dropped a %s frame: not expected from a node", frame_type)
            return
        else:
            connection.warn(
                "dropped an envelope with unknown frame type %r; expected one of %s",
                frame_type,
                ", ".join(FRAME_TYPES),
            )
            return
        await self._send_own(connection, ack, envelope)

    def _bind(
        self, connection: ChildConnection, frame_type: str, address: object, ref_id: str
    ) -> Frame:
        """Apply ``AddressBind``/``AddressUnbind`` and return the ack (§4.3, §4.4)."""
        node_id = connection.node_id
        binding = frame_type == "AddressBind"
        ack_type = AddressBindAck if binding else AddressUnbindAck
        if type(address) is not str:
            return ack_type(ok=False, ref_id=ref_id, reason=f"{frame_type} needs an address string")
        try:
            if binding:
                self.table.bind(node_id, address)
            else:
                removed = self.table.unbind(node_id, address)
        except ProtocolError as exc:
            connection.warn("refused %s of %r: %s", frame_type, address, exc)
            return ack_type(ok=False, ref_id=ref_id, reason=str(exc), address=address)
        if binding:
            log.info("node %s bound %s", node_id, address)
        elif removed:
            log.info("node %s unbound %s", node_id, address)
        return ack_type(ok=True, ref_id=ref_id, address=address)

    def _advertise(
        self, connection: ChildConnection, frame_type: str, frame: dict[str, Any], ref_id: str
    ) -> Frame:
        """Apply ``CapabilityAdvertise``/``CapabilityWithdraw`` and return the ack (§4.5)."""
        advertising = frame_type == "CapabilityAdvertise"
        ack_type = CapabilityAdvertiseAck if advertising else CapabilityWithdrawAck
        address = frame.get("address")
        capabilities = frame.get("capabilities")
        if (
            type(address) is not str
            or not isinstance(capabilities, list)
            or not all(type(c) is str and c for c in capabilities)
        ):
            connection.warn("refused a %s frame: bad address or capabilities", frame_type)
            return ack_type(
                ok=False, ref_id=ref_id, reason=f"{frame_type} needs an address and capabilities"
            )
        if advertising:
            self.table.advertise(connection.node_id, address, capabilities)
            log.info(
                "node %s advertised %s for %s", connection.node_id, ", ".join(capabilities), address
            )
        else:
            self.table.withdraw(connection.node_id, address, capabilities)
            log.info(
                "node %s withdrew %s for %s", connection.node_id, ", ".join(capabilities), address
            )
        return ack_type(ok=True, ref_id=ref_id, capabilities=tuple(capabilities), address=address)

    async def detach(self, connection: ChildConnection) -> None:
        """Forget a closed connection; for a child's live one, its routes too (§7.3)."""
        connection.closed = True
        flows = connection.received_flows()
        if flows:
            for other in self.connections:
                if other is not connection:
                    other.forget_flows(flows)
        node_id = connection.node_id
        if self._live.get(node_id) is not connection:
            log.debug("node %s: connection %s closed", node_id, connection.transport.description)
            return
        del self._live[node_id]
        routes = self.table.remove_node(node_id)
        self._inflight.drop_source(node_id)
        unanswered = self._inflight.pop_destination(node_id)
        log.info(
            "node %s detached from %s%s",
            node_id,
            connection.path,
            f"; dropped {', '.join(sorted(routes.addresses))}" if routes.addresses else "",
        )
        for entry in unanswered:
            await self._nack_request(
                entry,
                CHILD_UNREACHABLE,
                f"Unroutable to {entry.to}: node {node_id} disconnected before replying",
            )


def _address(
    connection: ChildConnection, value: object, key: str, frame_type: str
) -> Address | None:
    """Parse an envelope's ``to``/``replyTo``; warn and return None when it is invalid (C-40)."""
    try:
        if type(value) is not str:
            raise ProtocolError(f"{key} must be an address string, got {value!r}")
        return parse_address(value)
    except ProtocolError as exc:
        connection.warn("dropped a %s envelope: %s", frame_type, exc)
        return None


def _text(value: object) -> str | None:
    return value if type(value) is str else None
