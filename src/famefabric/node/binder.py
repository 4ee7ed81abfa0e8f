"""Binding addresses at the sentinel and keeping them bound (PROTOCOL.md §4.3 to §4.5, §5.6).

A node serves an address by sending ``AddressBind`` and then
``CapabilityAdvertise``, each with ``replyTo: __sys__@<path>``, ``rtype: 1``
and a fresh ``corrId``, and waiting for the ack that echoes that ``corrId``
and names the request in ``refId``. The :class:`Binder` remembers every
binding so that it can send them all again on a new connection and whenever
the sentinel announces a new routing epoch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from famefabric.clock import timestamp
from famefabric.errors import ConnectionClosed, FabricError, OperationTimeout
from famefabric.node.dispatch import Binding, Bindings
from famefabric.node.link import Link
from famefabric.protocol import envelopes
from famefabric.protocol.frames import RTYPE_ACK, Ack, Envelope
from famefabric.protocol.ids import new_id

log = logging.getLogger(__name__)

BIND_TIMEOUT = 20.0
"""Seconds to wait for the ack of a control frame (§4.3)."""


class Binder:
    """Sends control frames for the node's bindings and matches their acks.

    Args:
        system_id: the node's id, for log messages.
        ack_timeout: seconds to wait for each ack.
    """

    def __init__(self, *, system_id: str, ack_timeout: float = BIND_TIMEOUT) -> None:
        self._system_id = system_id
        self._ack_timeout = ack_timeout
        self.bindings = Bindings()
        self._waiting: dict[str, tuple[str, asyncio.Future[Ack], int]] = {}

    async def bind(self, link: Link, binding: Binding) -> None:
        """Bind ``binding.address`` on ``link`` and advertise its capabilities.

        Raises:
            FabricError: the sentinel refused; the message names the address.
            OperationTimeout: an ack did not come in time.
            ConnectionClosed: the link dropped.
        """
        ack = await self.request(
            link,
            {
                "type": "AddressBind",
                "address": binding.address,
                "physicalPath": link.attachment.assigned_path,
            },
        )
        _check(ack, f"cannot bind {binding.address!r}")
        if binding.capabilities:
            ack = await self.request(
                link,
                {
                    "type": "CapabilityAdvertise",
                    "capabilities": list(binding.capabilities),
                    "address": binding.address,
                },
            )
            _check(ack, f"cannot advertise capabilities of {binding.address!r}")

    async def unbind(self, link: Link, binding: Binding) -> None:
        """Unbind ``binding.address`` on ``link`` and withdraw its capabilities.

        Raises:
            FabricError: the sentinel refused.
            OperationTimeout: an ack did not come in time.
            ConnectionClosed: the link dropped.
        """
        ack = await self.request(link, {"type": "AddressUnbind", "address": binding.address})
        _check(ack, f"cannot unbind {binding.address!r}")
        if binding.capabilities:
            ack = await self.request(
                link,
                {
                    "type": "CapabilityWithdraw",
                    "capabilities": list(binding.capabilities),
                    "address": binding.address,
                },
            )
            _check(ack, f"cannot withdraw capabilities of {binding.address!r}")

    async def bind_all(self, link: Link) -> None:
        """Send every remembered binding again (after a re-attach or an epoch change).

        A refused binding is logged and skipped.

        Raises:
            ConnectionClosed: the link dropped.
        """
        bindings = list(self.bindings)
        if not bindings:
            return
        done = 0
        for binding in bindings:
            if self.bindings.get(binding.address) is not binding:
                continue  # unbound or replaced meanwhile
            try:
                await self.bind(link, binding)
                done += 1
            except ConnectionClosed:
                raise
            except FabricError as exc:
                log.warning("node %s: re-binding failed: %s", self._system_id, exc)
        log.info("node %s re-bound %d of %d addresses", self._system_id, done, len(bindings))

    async def request(self, link: Link, frame: dict[str, Any]) -> Ack:
        """Send a control frame and wait for its ack, matched by ``corrId`` and ``refId``.

        Raises:
            OperationTimeout: no ack within the timeout.
            ConnectionClosed: the link dropped.
        """
        corr_id = new_id()
        envelope_id = new_id()
        wire = envelopes.control_request(
            frame,
            envelope_id=envelope_id,
            corr_id=corr_id,
            reply_to=link.session.system_address,
            rtype=RTYPE_ACK,
            ts=timestamp(),
        )
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._waiting[corr_id] = (envelope_id, future, link.generation)
        scope = asyncio.timeout(self._ack_timeout)
        try:
            async with scope:
                await link.send(wire)
                return await future
        except TimeoutError:
            if not scope.expired():
                raise
            raise OperationTimeout(
                f"no {frame['type']}Ack from the sentinel within {self._ack_timeout:g} s "
                f"for {frame.get('address')!r}"
            ) from None
        finally:
            self._waiting.pop(corr_id, None)

    def on_ack(self, envelope: Envelope) -> bool:
        """Take a control ack; True when a request was waiting for it."""
        frame = envelope.frame
        waiting = self._waiting.get(envelope.corr_id or "")
        if waiting is None or not isinstance(frame, Ack):
            return False
        envelope_id, future, _ = waiting
        if frame.ref_id not in (None, envelope_id) or future.done():
            return False
        future.set_result(frame)
        return True

    def fail(self, generation: int | None, error: ConnectionClosed) -> None:
        """Fail the requests waiting on connection ``generation`` (every one for None)."""
        for corr_id, (_, future, sent_on) in list(self._waiting.items()):
            if generation is None or sent_on == generation:
                del self._waiting[corr_id]
                if not future.done():
                    future.set_exception(error)


def _check(ack: Ack, doing: str) -> None:
    if not ack.ok:
        detail = ack.reason or "no reason given"
        raise FabricError(f"{doing}: the sentinel refused ({ack.code or 'NACK'}: {detail})")
