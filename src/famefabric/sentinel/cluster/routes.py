"""Where an envelope goes when the routing space spans several sentinels (docs/CLUSTER.md).

Without I/O. :func:`reroute` is asked after the local decision of
:func:`famefabric.routing.route` and overrides it when the cluster knows
better:

* a physical address ``/<other sentinel>/…`` (replies, NACKs, a node's own
  inbox) goes to that sentinel when it is a live peer;
* an exact logical address, a pool or a capability whose binders include a
  peer's children picks one among *all* binders of the cluster by rendezvous
  hashing over names ``<sentinel>/<child>``, with the same key as one
  sentinel uses (the affinity key for exact addresses). Every sentinel holds
  the same view, so one conversation reaches the same replica whichever
  sentinel its caller is attached to, and adding or removing a replica moves
  few conversations;
* a cancel notice follows its request: it goes where the request went.

Envelopes that came from a peer are never sent to another peer (one hop at
most, so nothing can loop), except the NACKs the sentinel itself answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from famefabric.errors import ProtocolError
from famefabric.protocol.address import parse_address
from famefabric.protocol.envelopes import CANCELLED
from famefabric.routing import Deliver, RoutingTable
from famefabric.routing.decisions import Decision, affinity_key, rendezvous
from famefabric.sentinel.actions import PEER_PREFIX, Remote
from famefabric.sentinel.cluster.view import ClusterView
from famefabric.sentinel.inflight import InflightRequests

Choice = Deliver | Remote | None


def reroute(
    *,
    self_id: str,
    table: RoutingTable,
    view: ClusterView,
    inflight: InflightRequests,
    envelope: dict[str, Any],
    decision: Decision,
    source: str | None,
) -> Choice:
    """Return where the cluster sends ``envelope`` instead of ``decision``, or None to keep it."""
    if not view.peers:
        return None
    to = envelope.get("to")
    frame = envelope["frame"]
    if source is not None and frame.get("type") == "DeliveryAck" and frame.get("code") == CANCELLED:
        went = inflight.destination_of(source, frame.get("refId"))
        if went is not None and went.startswith(PEER_PREFIX):
            return Remote(went[len(PEER_PREFIX) :])
        if went is not None:
            return None
    if type(to) is str:
        if "@/" in to:
            return _physical(to, self_id, view, decision)
        if view.has_exact(to) or table.binders(to):
            if not view.has_exact(to):
                return None
            local = table.binders(to)
            return _pick(self_id, local, view.binders(to), source, envelope, affinity_key)
        if type(decision) is Deliver:
            return None
        try:
            address = parse_address(to)
        except ProtocolError:
            return None
        remote = view.pool_members(address)
        if not remote:
            return None
        return _pick(self_id, table.pool_members(address), remote, source, envelope, _spread_key)
    capabilities = envelope.get("capabilities")
    if to is None and isinstance(capabilities, list) and capabilities:
        if not all(type(c) is str for c in capabilities):
            return None
        remote = view.capable(capabilities)
        if not remote:
            return None
        local = table.capable_nodes(capabilities)
        return _pick(self_id, local, remote, source, envelope, _spread_key)
    return None


def _physical(to: str, self_id: str, view: ClusterView, decision: Decision) -> Choice:
    path = to.partition("@")[2]
    sentinel = path.split("/", 2)[1] if path.count("/") >= 1 else ""
    if sentinel == self_id or type(decision) is Deliver:
        return None
    if view.is_live(sentinel):
        return Remote(sentinel)
    return None


def _pick(
    self_id: str,
    local: Sequence[str],
    remote: Sequence[tuple[str, str]],
    source: str | None,
    envelope: Mapping[str, Any],
    key_of: Callable[[Mapping[str, Any]], str],
) -> Choice:
    names = [f"{self_id}/{node}" for node in local if node != source]
    names.extend(f"{sentinel}/{node}" for sentinel, node in remote)
    if not names:
        return None
    winner = rendezvous(names, key_of(envelope)) if len(names) > 1 else names[0]
    sentinel, _, node = winner.partition("/")
    if sentinel == self_id:
        return Deliver(node)
    return Remote(sentinel, node)


def _spread_key(envelope: Mapping[str, Any]) -> str:
    meta = envelope.get("meta")
    if isinstance(meta, dict):
        explicit = meta.get("affinity")
        if type(explicit) is str:
            return explicit
    envelope_id = envelope.get("id")
    return envelope_id if type(envelope_id) is str else ""


def serves(table: RoutingTable, node: str, envelope: dict[str, Any]) -> bool:
    """Tell whether ``node`` (chosen by the sending sentinel) still serves ``envelope``'s target."""
    to = envelope.get("to")
    if type(to) is str:
        if node in table.binders(to):
            return True
        try:
            return node in table.pool_members(parse_address(to))
        except ProtocolError:
            return False
    capabilities = envelope.get("capabilities")
    if isinstance(capabilities, list) and all(type(c) is str for c in capabilities):
        return node in table.capable_nodes(capabilities)
    return False
