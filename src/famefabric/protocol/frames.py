"""Frames and the envelope that carries one (PROTOCOL.md §3, §4).

One frozen dataclass per frame type, tagged by its wire ``type``. Python
attributes are the snake_case form of the wire's camelCase keys
(``reply_to`` is ``replyTo``); :mod:`famefabric.protocol.codec` converts
between the two with one rule. Constructors validate, so an invalid frame
cannot exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from famefabric.errors import JSONValue, LocalProtocolError
from famefabric.protocol.address import parse_address

# rtype bits (§8.1) and flowFlags bits (§9).
RTYPE_ACK = 1
RTYPE_REPLY = 2
RTYPE_STREAM = 4
FLOW_SYN = 1
FLOW_ACK = 2
FLOW_RESET = 4

MAX_ENVELOPE_BYTES = 262_144
"""Largest serialized envelope a peer accepts (§2.4)."""

INITIAL_CREDITS = 32


class Frame:
    """Base of every frame; ``type`` is the wire tag."""

    type: ClassVar[str]
    __slots__ = ()


def _require_str(frame: str, name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"{frame}.{name} must be a non-empty string, got {value!r}")


@dataclass(frozen=True, slots=True)
class NodeAttach(Frame):
    """First envelope a node sends on a connection (§4.1)."""

    type: ClassVar[str] = "NodeAttach"
    system_id: str
    instance_id: str
    origin_type: str = "downstream"
    accepted_logicals: tuple[str, ...] | None = None
    assigned_path: str | None = None
    capabilities: tuple[str, ...] | None = None
    callback_grants: tuple[JSONValue, ...] | None = None

    def __post_init__(self) -> None:
        _require_str("NodeAttach", "systemId", self.system_id)
        _require_str("NodeAttach", "instanceId", self.instance_id)


@dataclass(frozen=True, slots=True)
class Ack(Frame):
    """Fields shared by every acknowledgement frame (§4)."""

    type: ClassVar[str] = "Ack"
    ok: bool = True
    code: str | None = None
    reason: str | None = None
    ref_id: str | None = None


@dataclass(frozen=True, slots=True)
class NodeAttachAck(Ack):
    """The sentinel's answer to ``NodeAttach`` (§4.2)."""

    type: ClassVar[str] = "NodeAttachAck"
    target_system_id: str | None = None
    target_physical_path: str | None = None
    assigned_path: str | None = None
    routing_epoch: str | None = None
    expires_at: str | None = None


@dataclass(frozen=True, slots=True)
class AddressBind(Frame):
    """Bind a logical address to the sending node (§4.3)."""

    type: ClassVar[str] = "AddressBind"
    address: str
    physical_path: str | None = None
    encryption_key_id: str | None = None

    def __post_init__(self) -> None:
        parse_address(self.address)


@dataclass(frozen=True, slots=True)
class AddressBindAck(Ack):
    """Acknowledges ``AddressBind`` (§4.3)."""

    type: ClassVar[str] = "AddressBindAck"
    address: str | None = None


@dataclass(frozen=True, slots=True)
class AddressUnbind(Frame):
    """Remove a binding of the sending node (§4.4)."""

    type: ClassVar[str] = "AddressUnbind"
    address: str

    def __post_init__(self) -> None:
        parse_address(self.address)


@dataclass(frozen=True, slots=True)
class AddressUnbindAck(Ack):
    """Acknowledges ``AddressUnbind``; sent even for unknown addresses (§4.4)."""

    type: ClassVar[str] = "AddressUnbindAck"
    address: str | None = None


@dataclass(frozen=True, slots=True)
class CapabilityAdvertise(Frame):
    """Advertise capabilities for an address (§4.5)."""

    type: ClassVar[str] = "CapabilityAdvertise"
    capabilities: tuple[str, ...]
    address: str

    def __post_init__(self) -> None:
        parse_address(self.address)


@dataclass(frozen=True, slots=True)
class CapabilityAdvertiseAck(Ack):
    """Acknowledges ``CapabilityAdvertise`` (§4.5)."""

    type: ClassVar[str] = "CapabilityAdvertiseAck"
    capabilities: tuple[str, ...] | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class CapabilityWithdraw(Frame):
    """Withdraw capabilities advertised for an address (§4.5)."""

    type: ClassVar[str] = "CapabilityWithdraw"
    capabilities: tuple[str, ...]
    address: str

    def __post_init__(self) -> None:
        parse_address(self.address)


@dataclass(frozen=True, slots=True)
class CapabilityWithdrawAck(Ack):
    """Acknowledges ``CapabilityWithdraw`` (§4.5)."""

    type: ClassVar[str] = "CapabilityWithdrawAck"
    capabilities: tuple[str, ...] | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class NodeHeartbeat(Frame):
    """A node's liveness signal, every 15 s (§4.6)."""

    type: ClassVar[str] = "NodeHeartbeat"
    address: str | None = None
    system_id: str | None = None
    payload: JSONValue = None


@dataclass(frozen=True, slots=True)
class NodeHeartbeatAck(Ack):
    """The sentinel's answer to every heartbeat, with its routing epoch (§4.6)."""

    type: ClassVar[str] = "NodeHeartbeatAck"
    routing_epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Data(Frame):
    """Application content, in practice a JSON-RPC message (§4.7)."""

    type: ClassVar[str] = "Data"
    payload: JSONValue = None
    codec: str | None = None
    fid: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryAck(Ack):
    """Positive or negative acknowledgement of a ``Data`` envelope (§4.8, §7.6)."""

    type: ClassVar[str] = "DeliveryAck"


@dataclass(frozen=True, slots=True)
class CreditUpdate(Frame):
    """Hop-local flow-control credit grant (§4.9, §9)."""

    type: ClassVar[str] = "CreditUpdate"
    flow_id: str
    credits: int

    def __post_init__(self) -> None:
        _require_str("CreditUpdate", "flowId", self.flow_id)
        if not isinstance(self.credits, int) or isinstance(self.credits, bool):
            raise LocalProtocolError(
                f"CreditUpdate.credits must be an integer, got {self.credits!r}"
            )


@dataclass(frozen=True, slots=True)
class IgnoredFrame(Frame):
    """A frame type the open profile defines but never uses (``NodeHello``, …).

    Receivers drop it without answering (§4, §7.1).
    """

    type: ClassVar[str] = "Ignored"
    name: str
    fields: dict[str, Any] = field(default_factory=dict)


FRAME_TYPES: dict[str, type[Frame]] = {
    cls.type: cls
    for cls in (
        NodeAttach,
        NodeAttachAck,
        AddressBind,
        AddressBindAck,
        AddressUnbind,
        AddressUnbindAck,
        CapabilityAdvertise,
        CapabilityAdvertiseAck,
        CapabilityWithdraw,
        CapabilityWithdrawAck,
        NodeHeartbeat,
        NodeHeartbeatAck,
        Data,
        DeliveryAck,
        CreditUpdate,
    )
}

IGNORED_FRAME_TYPES = frozenset(
    {
        "NodeHello",
        "NodeWelcome",
        "KeyAnnounce",
        "KeyRequest",
        "SecureOpen",
        "SecureAccept",
        "SecureClose",
    }
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One WebSocket message: routing fields around exactly one frame (§3.1).

    ``seq_id`` and ``flow_flags`` are stamped per hop by the sending
    connection; a value given here is only a default.
    """

    frame: Frame
    id: str | None = None
    sid: str | None = None
    trace_id: str | None = None
    to: str | None = None
    reply_to: str | None = None
    capabilities: tuple[str, ...] | None = None
    rtype: int | None = None
    corr_id: str | None = None
    flow_id: str | None = None
    seq_id: int | None = None
    flow_flags: int | None = None
    ts: str | None = None
    meta: dict[str, JSONValue] | None = None
    version: str | None = "1.0"

    def __post_init__(self) -> None:
        if not isinstance(self.frame, Frame):
            raise LocalProtocolError(f"envelope frame must be a Frame, got {self.frame!r}")
        if self.to is not None:
            parse_address(self.to)
        if self.reply_to is not None:
            parse_address(self.reply_to)
