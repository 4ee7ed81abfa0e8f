"""Binding the node's addresses with the sentinel (PROTOCOL.md §4.3, §5.6).

A binding is remembered first and then announced, so that it survives the
connection: while disconnected it is only remembered, and the supervisor
re-sends every remembered binding after each re-attach and routing-epoch
change. A binding the sentinel refuses is forgotten again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from famefabric.errors import ConnectionClosed, FabricError, LocalProtocolError, ProtocolError
from famefabric.node.binder import Binder
from famefabric.node.dispatch import Binding, Handler
from famefabric.node.link import Link
from famefabric.protocol.address import parse_address

log = logging.getLogger(__name__)


class Registrar:
    """Adds and removes the node's bindings, and announces them on the current link.

    Args:
        system_id: the node's system id, for logs.
        binder: sends the bind frames and waits for their acks.
        current_link: returns the live connection, or None while disconnected.
        keeps_trying: tells whether a binding cut by a lost connection will
            be re-sent after a re-attach (the node reconnects and is running).
    """

    def __init__(
        self,
        *,
        system_id: str,
        binder: Binder,
        current_link: Callable[[], Link | None],
        keeps_trying: Callable[[], bool],
    ) -> None:
        self._system_id = system_id
        self._binder = binder
        self._bindings = binder.bindings
        self._current_link = current_link
        self._keeps_trying = keeps_trying

    async def bind(self, address: str, handler: Handler, capabilities: Sequence[str]) -> None:
        """Serve ``address`` with ``handler`` (see :meth:`famefabric.node.Node.bind`)."""
        try:
            parse_address(address)
        except ProtocolError as exc:
            raise LocalProtocolError(f"cannot bind {address!r}: {exc}") from None
        binding = Binding(address, handler, tuple(capabilities))
        self._bindings.add(binding)
        link = self._current_link()
        if link is None or link.is_lost:
            log.info("node %s will bind %s once attached", self._system_id, address)
            return
        try:
            await self._binder.bind(link, binding)
        except ConnectionClosed:
            if self._keeps_trying():
                return  # remembered; the restore after the re-attach binds it
            self._forget(binding)
            raise
        except FabricError:
            self._forget(binding)
            raise
        log.info("node %s bound %s", self._system_id, address)

    def _forget(self, binding: Binding) -> None:
        if self._bindings.get(binding.address) is binding:
            self._bindings.remove(binding.address)

    async def unbind(self, address: str) -> None:
        """Stop serving ``address`` (see :meth:`famefabric.node.Node.unbind`)."""
        binding = self._bindings.remove(address)
        link = self._current_link()
        if binding is None or link is None or link.is_lost:
            return
        try:
            await self._binder.unbind(link, binding)
        except ConnectionClosed:
            return  # the sentinel forgets the binding with the connection, or re-binds nothing
