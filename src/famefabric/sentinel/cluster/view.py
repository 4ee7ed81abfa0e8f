"""What the other sentinels of the cluster hold: their children's bindings, kept fresh by heartbeats.

Without I/O. Each peer sentinel is known by its heartbeats (its id, a
per-process instance id and the *version* of its routing table); when a
heartbeat names a version this view does not hold, the member fetches the
peer's snapshot (:func:`snapshot`) and :meth:`ClusterView.load` replaces
what was known of it. A peer that sent no heartbeat for ``peer_timeout``
seconds, or said goodbye, is dropped with everything it held.

A snapshot lists, per child, the logical addresses and pool patterns it
bound and the capabilities it advertised; physical addresses are not
listed, since a physical path names its sentinel and needs no lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from famefabric.errors import ProtocolError
from famefabric.protocol.address import Address, parse_address
from famefabric.routing import RoutingTable

MAX_SNAPSHOT_NODES = 100_000
"""The most children a peer's snapshot may list; a larger one is refused."""


@dataclass(slots=True)
class Peer:
    """One other sentinel of the cluster, as last heard."""

    sentinel_id: str
    instance: str
    last_seen: float
    version: int = -1
    """The table version loaded (-1: none yet)."""
    announced: int = -1
    """The table version its latest heartbeat named."""
    table: RoutingTable = field(default_factory=RoutingTable)
    fetching: bool = False


def snapshot(table: RoutingTable) -> dict[str, Any]:
    """Return the part of ``table`` the other sentinels need, as JSON-ready data."""
    nodes: dict[str, Any] = {}
    for node_id in table.node_ids():
        routes = table.node_routes(node_id)
        if routes is None:
            continue
        addresses = [a for a in routes.addresses if not _physical(a)]
        capabilities = [[c, a] for c, a in routes.capabilities]
        if addresses or capabilities:
            nodes[node_id] = {"addresses": sorted(addresses), "capabilities": capabilities}
    return {"version": table.version, "nodes": nodes}


def _physical(address: str) -> bool:
    return "@/" in address


class ClusterView:
    """The peers of one sentinel and the routes they hold.

    Args:
        self_id: this sentinel's id (its own heartbeats are ignored).
        peer_timeout: seconds without a heartbeat before a peer is dropped.
    """

    def __init__(self, self_id: str, *, peer_timeout: float) -> None:
        self.self_id = self_id
        self.peer_timeout = peer_timeout
        self.peers: dict[str, Peer] = {}
        self._exact: dict[str, list[tuple[str, str]]] = {}

    def heard(self, sentinel_id: str, instance: str, version: int, now: float) -> Peer | None:
        """Record a heartbeat; return the peer when its snapshot must be fetched.

        A new instance of a known id (the peer restarted) replaces the old one.
        """
        peer = self.peers.get(sentinel_id)
        if peer is None or peer.instance != instance:
            if peer is not None:
                self.forget(sentinel_id)
            peer = self.peers[sentinel_id] = Peer(sentinel_id, instance, now)
        peer.last_seen = now
        peer.announced = version
        if peer.version != version and not peer.fetching:
            return peer
        return None

    def load(self, sentinel_id: str, instance: str, data: object, now: float) -> bool:
        """Replace what is known of a peer with its snapshot; False if it is unknown now.

        Raises:
            ProtocolError: the snapshot is malformed (the peer's old routes stay).
        """
        peer = self.peers.get(sentinel_id)
        if peer is None or peer.instance != instance:
            return False
        version, table = _parse_snapshot(data)
        peer.table = table
        peer.version = version
        peer.last_seen = max(peer.last_seen, now)
        self._reindex()
        return True

    def forget(self, sentinel_id: str) -> Peer | None:
        """Drop a peer and its routes; return it if it was known."""
        peer = self.peers.pop(sentinel_id, None)
        if peer is not None:
            self._reindex()
        return peer

    def expired(self, now: float) -> list[str]:
        """Return the peers silent for longer than the timeout (the caller forgets them)."""
        limit = now - self.peer_timeout
        return [p.sentinel_id for p in self.peers.values() if p.last_seen < limit]

    def is_live(self, sentinel_id: str) -> bool:
        """Tell whether ``sentinel_id`` is a peer heard from recently."""
        return sentinel_id in self.peers

    def has_exact(self, address: str) -> bool:
        """Tell whether some peer's child bound exactly ``address``."""
        return address in self._exact

    def binders(self, address: str) -> Sequence[tuple[str, str]]:
        """Return (sentinel, child) pairs bound to the exact ``address`` across the peers."""
        return self._exact.get(address, ())

    def pool_members(self, address: Address) -> list[tuple[str, str]]:
        """Return (sentinel, child) pairs in pools covering ``address`` across the peers."""
        return [
            (peer.sentinel_id, node)
            for peer in self.peers.values()
            for node in peer.table.pool_members(address)
        ]

    def capable(self, capabilities: Iterable[str]) -> list[tuple[str, str]]:
        """Return (sentinel, child) pairs that advertised every one of ``capabilities``."""
        wanted = list(capabilities)
        return [
            (peer.sentinel_id, node)
            for peer in self.peers.values()
            for node in peer.table.capable_nodes(wanted)
        ]

    def describe(self, now: float) -> list[dict[str, Any]]:
        """The peers for the health endpoint: id, addresses, seconds since heard."""
        return [
            {
                "systemId": peer.sentinel_id,
                "addresses": peer.table.counts()["addresses"],
                "nodes": peer.table.counts()["nodes"],
                "lastSeen": round(now - peer.last_seen, 3),
            }
            for peer in sorted(self.peers.values(), key=lambda p: p.sentinel_id)
        ]

    def _reindex(self) -> None:
        exact: dict[str, list[tuple[str, str]]] = {}
        for peer in self.peers.values():
            for node_id in peer.table.node_ids():
                routes = peer.table.node_routes(node_id)
                if routes is None:
                    continue
                for address in routes.addresses:
                    if "*" not in address:
                        exact.setdefault(address, []).append((peer.sentinel_id, node_id))
        self._exact = exact


def _parse_snapshot(data: object) -> tuple[int, RoutingTable]:
    if not isinstance(data, dict):
        raise ProtocolError("a cluster snapshot must be a JSON object")
    version = data.get("version")
    nodes = data.get("nodes")
    if type(version) is not int or not isinstance(nodes, dict):
        raise ProtocolError("a cluster snapshot needs an integer 'version' and a 'nodes' object")
    if len(nodes) > MAX_SNAPSHOT_NODES:
        raise ProtocolError(f"a cluster snapshot lists {len(nodes)} nodes, over the limit")
    table = RoutingTable()
    for node_id, routes in nodes.items():
        if not isinstance(routes, dict):
            raise ProtocolError(f"snapshot routes of {node_id!r} must be an object")
        addresses = routes.get("addresses", [])
        capabilities = routes.get("capabilities", [])
        if not isinstance(addresses, list) or not isinstance(capabilities, list):
            raise ProtocolError(f"snapshot routes of {node_id!r} must hold lists")
        table.add_node(node_id)
        for address in addresses:
            if type(address) is not str:
                raise ProtocolError(f"snapshot address {address!r:.80} is not a string")
            parsed = parse_address(address)
            if parsed.is_physical:
                raise ProtocolError(f"snapshot address {address!r:.80} is physical")
            table.bind(node_id, address)
        for pair in capabilities:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(type(x) is str for x in pair)
            ):
                raise ProtocolError(f"snapshot capability {pair!r:.80} is not [name, address]")
            table.advertise(node_id, pair[1], [pair[0]])
    return version, table
