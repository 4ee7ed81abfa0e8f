"""The wire protocol, free of I/O: frames, envelopes, codec, addresses, JSON-RPC, flow control."""

from famefabric.protocol.address import Address, is_address, parse_address
from famefabric.protocol.codec import decode, encode
from famefabric.protocol.frames import (
    MAX_ENVELOPE_BYTES,
    AddressBind,
    AddressBindAck,
    AddressUnbind,
    AddressUnbindAck,
    CapabilityAdvertise,
    CapabilityAdvertiseAck,
    CapabilityWithdraw,
    CapabilityWithdrawAck,
    CreditUpdate,
    Data,
    DeliveryAck,
    Envelope,
    Frame,
    IgnoredFrame,
    NodeAttach,
    NodeAttachAck,
    NodeHeartbeat,
    NodeHeartbeatAck,
)
from famefabric.protocol.ids import new_id

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "Address",
    "AddressBind",
    "AddressBindAck",
    "AddressUnbind",
    "AddressUnbindAck",
    "CapabilityAdvertise",
    "CapabilityAdvertiseAck",
    "CapabilityWithdraw",
    "CapabilityWithdrawAck",
    "CreditUpdate",
    "Data",
    "DeliveryAck",
    "Envelope",
    "Frame",
    "IgnoredFrame",
    "NodeAttach",
    "NodeAttachAck",
    "NodeHeartbeat",
    "NodeHeartbeatAck",
    "decode",
    "encode",
    "is_address",
    "new_id",
    "parse_address",
]
