"""Which of this node's handlers serves an inbound envelope.

A node serves the addresses it bound (PROTOCOL.md §4.3). An envelope reaches
a bound handler when its ``to`` is

* the bound address itself (``echo@fame.fabric``);
* the same participant at this node's physical path (``echo@/S/N``): the
  sentinel routes any participant under a child's path to that child (§6.2);
* the node's instance address for a bound name (``echo@<systemId>.fame.fabric``,
  what pool members advertise, §4.5, C-17), or any host of a bound pool
  pattern (``echo@*.fame.fabric``, §6.4);
* absent, for capability-routed envelopes, when a binding advertised every
  capability asked for (§7.2).

Anything else addressed to this node (C-45: ``ghost@/S/N``) has no handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from famefabric.errors import ProtocolError
from famefabric.protocol.address import host_matches_pool, parse_address
from famefabric.protocol.frames import Envelope

Handler = Callable[[Envelope], Awaitable[None]]
"""Receives each envelope addressed to a bound address."""


@dataclass(frozen=True, slots=True)
class Binding:
    """An address this node serves."""

    address: str
    handler: Handler
    capabilities: tuple[str, ...]


class Bindings:
    """The addresses this node serves, in the order they were bound."""

    __slots__ = ("_by_address",)

    def __init__(self) -> None:
        self._by_address: dict[str, Binding] = {}

    def __len__(self) -> int:
        return len(self._by_address)

    def __iter__(self) -> Iterator[Binding]:
        return iter(list(self._by_address.values()))

    def __contains__(self, address: object) -> bool:
        return address in self._by_address

    def get(self, address: str) -> Binding | None:
        """Return the binding of exactly ``address``."""
        return self._by_address.get(address)

    def add(self, binding: Binding) -> None:
        """Serve ``binding.address`` with its handler (replacing an earlier one)."""
        self._by_address[binding.address] = binding

    def remove(self, address: str) -> Binding | None:
        """Stop serving ``address``; return the binding it had."""
        return self._by_address.pop(address, None)

    def resolve(self, to: str, *, path: str | None, system_id: str) -> Binding | None:
        """Return the binding that serves envelopes addressed to ``to``.

        Args:
            to: the envelope's destination.
            path: this node's assigned physical path (None before any attach).
            system_id: this node's system id, for instance addresses.
        """
        binding = self._by_address.get(to)
        if binding is not None or not self._by_address:
            return binding
        try:
            target = parse_address(to)
        except ProtocolError:
            return None
        for binding in self._by_address.values():
            bound = parse_address(binding.address)
            if bound.participant != target.participant:
                continue
            if target.host is None:
                if path is not None and target.path == path:
                    return binding
            elif target.path is None and bound.host is not None:
                if bound.is_pool_pattern:
                    if host_matches_pool(target.host, bound.host):
                        return binding
                elif target.host == f"{system_id}.{bound.host}":
                    return binding
        return None

    def by_capabilities(self, capabilities: tuple[str, ...]) -> Binding | None:
        """Return the first binding that advertised every one of ``capabilities``."""
        wanted = set(capabilities)
        for binding in self._by_address.values():
            if wanted.issubset(binding.capabilities):
                return binding
        return None
