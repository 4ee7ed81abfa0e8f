"""The sentinel's routing table (PROTOCOL.md §6, §7.1, §7.3).

The table records what each attached node (a *child*, named by its system
id) has told the sentinel: the exact logical addresses it bound, the pools it
joined and the capabilities it advertised. It does no I/O and never decides
where an envelope goes; :mod:`famefabric.routing.decisions` reads it for that.

Three differences from the reference sentinel, all compatible on the wire:

* several children may bind the same exact address (agent replicas); every
  binder is kept, in bind order, instead of "last bind wins";
* everything a child registered is removed with :meth:`RoutingTable.remove_node`
  when its connection closes (the sentinel then gives the next connection a
  fresh routing epoch, §5.6, so the node binds again);
* withdrawing or unbinding only ever affects the requesting child's entries.

Every index is keyed so that removing a node costs only what it registered,
and empty containers are deleted at once: nothing outlives a node.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from famefabric.protocol.address import Address, parse_address


@dataclass(slots=True)
class NodeRoutes:
    """What one child registered; returned by :meth:`RoutingTable.remove_node`."""

    addresses: set[str] = field(default_factory=set)
    """Exact addresses and pool patterns the child bound."""
    capabilities: set[tuple[str, str]] = field(default_factory=set)
    """(capability, address) pairs the child advertised."""


def pool_key(address: Address) -> tuple[str, str]:
    """Return (participant, domain suffix) of a pool pattern: ``echo@*.a.b`` -> (echo, a.b)."""
    host = address.host or ""
    return address.participant, host[2:] if host.startswith("*.") else host


class RoutingTable:
    """Bindings, pools and capabilities of the attached children.

    Node ids are the children's system ids; the sentinel keeps at most one live
    connection per system id (§5.8), so a node id also names a connection.
    """

    __slots__ = ("_capabilities", "_exact", "_nodes", "_pools", "version")

    def __init__(self) -> None:
        self.version = 0
        """Counts the changes to bindings and capabilities (read it to notice one)."""
        self._nodes: dict[str, NodeRoutes] = {}
        # exact address -> binders, oldest first
        self._exact: dict[str, list[str]] = {}
        # participant -> domain suffix -> members, oldest first
        self._pools: dict[str, dict[str, list[str]]] = {}
        # capability -> node -> addresses the node advertised it for
        self._capabilities: dict[str, dict[str, set[str]]] = {}

    def add_node(self, node_id: str) -> None:
        """Register an attached child; a no-op if it is already known."""
        self._nodes.setdefault(node_id, NodeRoutes())

    def has_node(self, node_id: str) -> bool:
        """Tell whether a child with this system id is attached."""
        return node_id in self._nodes

    def remove_node(self, node_id: str) -> NodeRoutes:
        """Forget a child and everything it registered.

        Returns:
            What the child had registered (empty for an unknown node).
        """
        routes = self._nodes.pop(node_id, None)
        if routes is None:
            return NodeRoutes()
        self.version += 1
        for address in routes.addresses:
            self._drop_binding(parse_address(address), address, node_id)
        for capability, address in routes.capabilities:
            self._drop_capability(capability, address, node_id)
        return routes

    def bind(self, node_id: str, address: str) -> None:
        """Bind an exact address or join a pool (``name@*.domain``) for a child.

        Binding twice is harmless; other binders of the address are kept.

        Raises:
            ProtocolError: ``address`` is not a valid address.
            KeyError: ``node_id`` is not attached.
        """
        parsed = parse_address(address)
        routes = self._nodes[node_id]
        if parsed.is_pool_pattern:
            participant, suffix = pool_key(parsed)
            members = self._pools.setdefault(participant, {}).setdefault(suffix, [])
        else:
            members = self._exact.setdefault(address, [])
        if node_id not in members:
            members.append(node_id)
            self.version += 1
        routes.addresses.add(address)

    def unbind(self, node_id: str, address: str) -> bool:
        """Remove a child's binding or pool membership.

        Returns:
            True if the child had bound the address.

        Raises:
            ProtocolError: ``address`` is not a valid address.
        """
        parsed = parse_address(address)
        routes = self._nodes.get(node_id)
        if routes is None or address not in routes.addresses:
            return False
        routes.addresses.discard(address)
        self._drop_binding(parsed, address, node_id)
        self.version += 1
        return True

    def advertise(self, node_id: str, address: str, capabilities: Iterable[str]) -> None:
        """Record that a child offers ``capabilities`` for ``address``.

        Raises:
            KeyError: ``node_id`` is not attached.
        """
        routes = self._nodes[node_id]
        self.version += 1
        for capability in capabilities:
            self._capabilities.setdefault(capability, {}).setdefault(node_id, set()).add(address)
            routes.capabilities.add((capability, address))

    def withdraw(self, node_id: str, address: str, capabilities: Iterable[str]) -> None:
        """Remove capabilities a child advertised for ``address``; unknown ones are ignored."""
        routes = self._nodes.get(node_id)
        if routes is None:
            return
        self.version += 1
        for capability in capabilities:
            if (capability, address) in routes.capabilities:
                routes.capabilities.discard((capability, address))
                self._drop_capability(capability, address, node_id)

    def binders(self, address: str) -> Sequence[str]:
        """Return the children bound to an exact address, oldest first."""
        return self._exact.get(address, _EMPTY)

    def pool_members(self, address: Address) -> Sequence[str]:
        """Return the members of every pool whose pattern covers ``address``.

        A pool ``name@*.domain`` covers ``name@domain`` and ``name@<any>.domain``
        (§6.4). Members of several matching pools are listed once, in order.
        """
        host = address.host
        pools = self._pools.get(address.participant)
        if host is None or pools is None:
            return _EMPTY
        found: list[str] = []
        for suffix, members in pools.items():
            if host == suffix or host.endswith("." + suffix):
                if not found:
                    found = list(members)
                else:
                    found.extend(m for m in members if m not in found)
        return found

    def capable_nodes(self, capabilities: Iterable[str]) -> list[str]:
        """Return the children that advertised every one of ``capabilities``."""
        wanted = list(capabilities)
        if not wanted:
            return []
        first = self._capabilities.get(wanted[0])
        if not first:
            return []
        nodes = list(first)
        for capability in wanted[1:]:
            offering = self._capabilities.get(capability)
            if not offering:
                return []
            nodes = [node for node in nodes if node in offering]
        return nodes

    def node_ids(self) -> list[str]:
        """Return the system ids of the attached children."""
        return list(self._nodes)

    def node_routes(self, node_id: str) -> NodeRoutes | None:
        """Return a child's routes (read them; only the table changes them), or None."""
        return self._nodes.get(node_id)

    def node_addresses(self, node_id: str) -> set[str]:
        """Return the addresses a child bound (a copy)."""
        routes = self._nodes.get(node_id)
        return set(routes.addresses) if routes else set()

    def counts(self) -> dict[str, int]:
        """Return sizes for health and statistics: nodes, addresses, pools, capabilities."""
        pools = sum(len(by_suffix) for by_suffix in self._pools.values())
        return {
            "nodes": len(self._nodes),
            "addresses": len(self._exact) + pools,
            "pools": pools,
            "capabilities": len(self._capabilities),
        }

    def _drop_binding(self, parsed: Address, address: str, node_id: str) -> None:
        if parsed.is_pool_pattern:
            participant, suffix = pool_key(parsed)
            by_suffix = self._pools.get(participant)
            members = by_suffix.get(suffix) if by_suffix else None
            if by_suffix is None or members is None:
                return
            if node_id in members:
                members.remove(node_id)
            if not members:
                del by_suffix[suffix]
                if not by_suffix:
                    del self._pools[participant]
            return
        binders = self._exact.get(address)
        if binders is None:
            return
        if node_id in binders:
            binders.remove(node_id)
        if not binders:
            del self._exact[address]

    def _drop_capability(self, capability: str, address: str, node_id: str) -> None:
        offering = self._capabilities.get(capability)
        if offering is None:
            return
        addresses = offering.get(node_id)
        if addresses is None:
            return
        addresses.discard(address)
        if not addresses:
            del offering[node_id]
            if not offering:
                del self._capabilities[capability]


_EMPTY: Sequence[str] = ()
