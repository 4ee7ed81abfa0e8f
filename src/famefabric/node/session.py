"""The state of one node-to-sentinel connection, without I/O.

A :class:`Session` lives exactly as long as one connection. It builds the
frames the node must send (``NodeAttach``, heartbeats, credit grants), reads
the ones that change its state (``NodeAttachAck``, ``NodeHeartbeatAck``) and
answers "is the link still alive?" from the times it is told. It owns no
timers and never sleeps: the node feeds it the current time (``now``, any
monotonic clock in seconds) and does the sending.

States::

    attaching --NodeAttachAck ok--> attached
    attaching --NodeAttachAck not ok--> (AttachRefused raised; connection dropped)

Liveness (§2.5, §5.5): an attached session is dead when nothing at all was
received for ``timeout`` seconds, or when no ``NodeHeartbeatAck`` arrived for
``timeout`` seconds (the attach ack counts as the first one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from famefabric.clock import timestamp
from famefabric.errors import RemoteProtocolError
from famefabric.node.backoff import AttachRefused
from famefabric.protocol import envelopes
from famefabric.protocol.address import RPC_PARTICIPANT_PREFIX, SYSTEM_PARTICIPANT
from famefabric.protocol.flow import FlowState
from famefabric.protocol.frames import (
    Envelope,
    NodeAttach,
    NodeAttachAck,
    NodeHeartbeatAck,
)
from famefabric.protocol.ids import new_id, source_id


@dataclass(frozen=True, slots=True)
class Attachment:
    """What the sentinel told us when it accepted the attach (§4.2)."""

    assigned_path: str
    sentinel_id: str
    routing_epoch: str | None


class Session:
    """Attach, heartbeat and flow-control state of one connection.

    Call order: :meth:`attach_envelope` once, then :meth:`accept_attach` with
    the sentinel's answer; after that, :meth:`on_receive` for every envelope
    received, :meth:`heartbeat_envelope` every interval and
    :meth:`liveness_failure` to decide whether to give up on the link.

    Args:
        system_id: the node's system id (the last segment of the URL).
        accepted_logicals: logical domains announced in ``NodeAttach``.
        now: the current time in seconds.
    """

    __slots__ = (
        "_attach_corr_id",
        "_attach_id",
        "_flows",
        "accepted_logicals",
        "attachment",
        "flow_id",
        "instance_id",
        "last_ack",
        "last_received",
        "sid",
        "system_id",
    )

    def __init__(self, *, system_id: str, accepted_logicals: Sequence[str], now: float) -> None:
        self.system_id = system_id
        self.accepted_logicals = tuple(accepted_logicals)
        self.instance_id = new_id()  # new for every connection (§5.7)
        self.flow_id = new_id()  # this connection's default flow (§9)
        self.attachment: Attachment | None = None
        self.sid: str | None = None
        self.last_received = now
        self.last_ack = now
        self._attach_id = new_id()
        self._attach_corr_id = new_id()
        self._flows = FlowState()

    @property
    def is_attached(self) -> bool:
        """Tell whether the sentinel accepted the attach."""
        return self.attachment is not None

    def attach_envelope(self) -> Envelope:
        """Return the ``NodeAttach`` envelope, the first thing to send (§4.1).

        It carries no ``sid``, ``to``, ``replyTo`` or ``rtype``, as the reference's.
        """
        return Envelope(
            id=self._attach_id,
            trace_id=new_id(),
            corr_id=self._attach_corr_id,
            ts=timestamp(),
            frame=NodeAttach(
                system_id=self.system_id,
                instance_id=self.instance_id,
                origin_type="downstream",
                accepted_logicals=self.accepted_logicals,
                callback_grants=(),
            ),
        )

    def is_attach_answer(self, envelope: Envelope) -> bool:
        """Tell whether ``envelope`` answers our ``NodeAttach`` (same ``corrId``, §5.1)."""
        return (
            isinstance(envelope.frame, NodeAttachAck) and envelope.corr_id == self._attach_corr_id
        )

    def accept_attach(self, envelope: Envelope, *, now: float) -> Attachment:
        """Read the sentinel's ``NodeAttachAck`` and enter the attached state.

        Raises:
            AttachRefused: the ack says ``ok: false``; the message carries its reason.
            RemoteProtocolError: the ack lacks the sentinel id or the assigned path.
        """
        frame = envelope.frame
        assert isinstance(frame, NodeAttachAck)
        if not frame.ok:
            reason = frame.reason or frame.code or "no reason given"
            raise AttachRefused(f"the sentinel refused the attach: {reason}", reason=reason)
        if not frame.assigned_path or not frame.target_system_id:
            raise RemoteProtocolError(
                "NodeAttachAck lacks assignedPath or targetSystemId; "
                f"got assignedPath={frame.assigned_path!r}, targetSystemId={frame.target_system_id!r}"
            )
        self.attachment = Attachment(
            assigned_path=frame.assigned_path,
            sentinel_id=frame.target_system_id,
            routing_epoch=frame.routing_epoch,
        )
        self.sid = source_id(frame.assigned_path)
        self.last_ack = self.last_received = now
        return self.attachment

    @property
    def system_address(self) -> str:
        """Our system inbox ``__sys__@<assignedPath>``: ``replyTo`` of control frames (§6.3)."""
        assert self.attachment is not None
        return f"{SYSTEM_PARTICIPANT}@{self.attachment.assigned_path}"

    def rpc_address(self, inbox_id: str) -> str:
        """Our RPC reply inbox ``__rpc__<id>@<assignedPath>`` on this connection (§6.3)."""
        assert self.attachment is not None
        return f"{RPC_PARTICIPANT_PREFIX}{inbox_id}@{self.attachment.assigned_path}"

    def heartbeat_envelope(self) -> dict[str, Any]:
        """Return the wire object of a ``NodeHeartbeat`` with a fresh ``corrId`` (§4.6)."""
        return envelopes.heartbeat(ts=timestamp())

    def on_heartbeat_ack(self, frame: NodeHeartbeatAck, *, now: float) -> bool:
        """Record a heartbeat ack; True when it announces a new routing epoch (§5.6).

        Any ``NodeHeartbeatAck`` proves the link alive, as for the reference node.
        """
        self.last_ack = now
        epoch = frame.routing_epoch
        if epoch is None or self.attachment is None or epoch == self.attachment.routing_epoch:
            return False
        self.attachment = Attachment(
            assigned_path=self.attachment.assigned_path,
            sentinel_id=self.attachment.sentinel_id,
            routing_epoch=epoch,
        )
        return True

    def on_receive(self, flow_id: object, *, now: float) -> dict[str, Any] | None:
        """Count one received envelope (not a ``CreditUpdate``) on its flow.

        Returns:
            the wire object of the ``CreditUpdate`` to send right away, at the
            24th, 48th, … envelope of a flow (§9), or None.
        """
        self.last_received = now
        if not isinstance(flow_id, str) or not flow_id or not self._flows.count_received(flow_id):
            return None
        return envelopes.credit_update(flow_id, ts=timestamp())

    def touch(self, *, now: float) -> None:
        """Record that a message arrived, even one that could not be parsed."""
        self.last_received = now

    def stamp(self, wire: dict[str, Any]) -> None:
        """Fill ``flowId``, ``seqId`` and ``flowFlags`` of an outgoing wire object (§9).

        A ``RESET`` bit already present (a NACK) is kept.
        """
        self._flows.stamp_wire(wire, self.flow_id)

    def liveness_failure(self, *, now: float, timeout: float) -> str | None:
        """Say why the link must be considered dead, or None while it is alive."""
        silent = now - self.last_received
        if silent >= timeout:
            return f"nothing received from the sentinel for {silent:.1f} s"
        unacked = now - self.last_ack
        if unacked >= timeout:
            return f"no heartbeat ack from the sentinel for {unacked:.1f} s"
        return None
