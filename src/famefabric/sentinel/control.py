"""The sentinel's answers to a node's control frames (PROTOCOL.md §4.3 to §4.6, §7.1).

Control frames are decoded through :mod:`famefabric.protocol.frames`
(:func:`~famefabric.protocol.codec.frame_from_dict`), so a malformed one is
refused in one place, with one message, in the ``reason`` of its negative
ack. Binds pass the rules of :mod:`famefabric.sentinel.authorization`.
Capabilities are logged by count at INFO and in full only at DEBUG.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from famefabric.errors import ProtocolError
from famefabric.protocol.codec import frame_from_dict
from famefabric.protocol.frames import (
    AddressBind,
    AddressBindAck,
    AddressUnbind,
    AddressUnbindAck,
    CapabilityAdvertise,
    CapabilityAdvertiseAck,
    CapabilityWithdraw,
    CapabilityWithdrawAck,
    Frame,
    NodeHeartbeatAck,
)
from famefabric.sentinel.authorization import bind_refusal

if TYPE_CHECKING:
    from famefabric.sentinel.session import ChildSession

log = logging.getLogger("famefabric.sentinel")

_ACKS: dict[str, type[Frame]] = {
    "AddressBind": AddressBindAck,
    "AddressUnbind": AddressUnbindAck,
    "CapabilityAdvertise": CapabilityAdvertiseAck,
    "CapabilityWithdraw": CapabilityWithdrawAck,
    "NodeHeartbeat": NodeHeartbeatAck,
}


def answer_control(
    session: ChildSession, frame_type: str, frame: dict[str, object], ref_id: str
) -> Frame | None:
    """Apply a control frame from an attached node; return its ack (None: not for a node)."""
    ack_type = _ACKS.get(frame_type)
    if ack_type is None:
        return None
    try:
        decoded = frame_from_dict(frame)
    except ProtocolError as exc:
        session.warn("refused a %s frame: %s", frame_type, exc)
        return ack_type(ok=False, ref_id=ref_id, reason=str(exc))  # type: ignore[call-arg]
    if frame_type == "NodeHeartbeat":
        return NodeHeartbeatAck(ok=True, ref_id=ref_id, routing_epoch=session.epoch)
    if isinstance(decoded, AddressBind | AddressUnbind):
        return _bind(session, decoded, ref_id)
    assert isinstance(decoded, CapabilityAdvertise | CapabilityWithdraw)
    return _advertise(session, decoded, ref_id)


def _bind(session: ChildSession, frame: AddressBind | AddressUnbind, ref_id: str) -> Frame:
    """Apply ``AddressBind``/``AddressUnbind`` and return the ack (§4.3, §4.4)."""
    table = session.router.table
    node_id = session.node_id
    address = frame.address
    if isinstance(frame, AddressBind):
        refusal = bind_refusal(session.identity, session.path, address) or _bind_limit(
            session, address
        )
        if refusal is None:
            try:
                table.bind(node_id, address)
            except ProtocolError as exc:
                refusal = str(exc)
        if refusal is not None:
            session.warn("refused AddressBind of %r: %s", address[:200], refusal)
            return AddressBindAck(ok=False, ref_id=ref_id, reason=refusal, address=address)
        log.info("node %s bound %s", node_id, address[:200])
        return AddressBindAck(ok=True, ref_id=ref_id, address=address)
    try:
        removed = table.unbind(node_id, address)
        if removed:
            session.route_bytes -= len(address)
    except ProtocolError as exc:
        session.warn("refused AddressUnbind of %r: %s", address[:200], exc)
        return AddressUnbindAck(ok=False, ref_id=ref_id, reason=str(exc), address=address)
    if removed:
        log.info("node %s unbound %s", node_id, address)
    return AddressUnbindAck(ok=True, ref_id=ref_id, address=address)


def _advertise(
    session: ChildSession, frame: CapabilityAdvertise | CapabilityWithdraw, ref_id: str
) -> Frame:
    """Apply ``CapabilityAdvertise``/``CapabilityWithdraw`` and return the ack (§4.5)."""
    advertising = isinstance(frame, CapabilityAdvertise)
    ack_type = CapabilityAdvertiseAck if advertising else CapabilityWithdrawAck
    capabilities = frame.capabilities
    if not all(type(c) is str and c for c in capabilities):
        session.warn("refused a %s frame: capabilities must be non-empty strings", frame.type)
        return ack_type(
            ok=False, ref_id=ref_id, reason=f"{frame.type}.capabilities must be non-empty strings"
        )
    table = session.router.table
    routes = table.node_routes(session.node_id)
    known = routes.capabilities if routes is not None else set()
    changed = {c for c in capabilities if ((c, frame.address) in known) != advertising}
    size = sum(len(c) + len(frame.address) for c in changed)
    if advertising:
        refusal = _advertise_limit(session, len(known) + len(changed), size)
        if refusal is not None:
            session.warn("refused CapabilityAdvertise: %s", refusal)
            return ack_type(ok=False, ref_id=ref_id, reason=refusal)
        table.advertise(session.node_id, frame.address, capabilities)
        session.route_bytes += size
    else:
        table.withdraw(session.node_id, frame.address, capabilities)
        session.route_bytes -= size
    log.info(
        "node %s %s %d capabilities for %s",
        session.node_id,
        "advertised" if advertising else "withdrew",
        len(capabilities),
        frame.address[:200],
    )
    if log.isEnabledFor(logging.DEBUG):
        log.debug("node %s capabilities: %.2000s", session.node_id, ", ".join(capabilities))
    return ack_type(ok=True, ref_id=ref_id, capabilities=capabilities, address=frame.address)


def _bind_limit(session: ChildSession, address: str) -> str | None:
    """Say why binding ``address`` would exceed the node's table limits, or None (and count it)."""
    limits = session.router.limits
    routes = session.router.table.node_routes(session.node_id)
    if routes is not None and address in routes.addresses:
        return None
    count = len(routes.addresses) if routes is not None else 0
    if count >= limits.max_bindings_per_node:
        session.refused_route("FAME_SENTINEL_MAX_BINDINGS_PER_NODE")
        return (
            f"node {session.node_id} has {count} bindings, the most allowed "
            "(FAME_SENTINEL_MAX_BINDINGS_PER_NODE)"
        )
    if session.route_bytes + len(address) > limits.max_route_bytes_per_node:
        return _bytes_refusal(session)
    session.route_bytes += len(address)
    return None


def _advertise_limit(session: ChildSession, count: int, size: int) -> str | None:
    limits = session.router.limits
    if count > limits.max_capabilities_per_node:
        session.refused_route("FAME_SENTINEL_MAX_CAPABILITIES_PER_NODE")
        return (
            f"node {session.node_id} would have {count} capabilities, more than the "
            f"{limits.max_capabilities_per_node} allowed (FAME_SENTINEL_MAX_CAPABILITIES_PER_NODE)"
        )
    if session.route_bytes + size > limits.max_route_bytes_per_node:
        return _bytes_refusal(session)
    return None


def _bytes_refusal(session: ChildSession) -> str:
    session.refused_route("FAME_SENTINEL_MAX_ROUTE_BYTES_PER_NODE")
    limit = session.router.limits.max_route_bytes_per_node
    return (
        f"node {session.node_id} has added {session.route_bytes} characters of addresses and "
        f"capabilities; the most allowed is {limit} (FAME_SENTINEL_MAX_ROUTE_BYTES_PER_NODE)"
    )
