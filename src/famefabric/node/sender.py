"""Where an application envelope goes when the node sends it (PROTOCOL.md §5.7, §7.2).

* To one of the node's own addresses: delivered in-process, never on the
  wire (the sentinel would refuse to route it back to its sender).
* While the link is ``READY``: stamped, encoded and written at once
  (:meth:`~famefabric.node.outbox.Outbox.transmit`).
* While connecting, restoring or waiting to reconnect: kept in the bounded
  backlog until the next connection is restored.
* Otherwise (not started, closed, gave up): refused with
  :class:`~famefabric.errors.ConnectionClosed` saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from famefabric.errors import (
    ConnectionClosed,
    FabricError,
    LocalProtocolError,
    RemoteProtocolError,
)
from famefabric.node.correlation import PendingCall
from famefabric.node.inbound import Inbound
from famefabric.node.outbox import Outbox, dumps
from famefabric.node.rpc import link_lost_error
from famefabric.node.state import LinkState, LinkStateMachine
from famefabric.node.supervisor import Supervisor
from famefabric.protocol.address import RPC_PARTICIPANT_PREFIX
from famefabric.protocol.codec import envelope_from_dict

log = logging.getLogger(__name__)


class Sender:
    """The node's send path for application envelopes.

    Args:
        system_id: the node's system id, for messages.
        machine: the node's link state.
        spawn: runs a coroutine in the node's task group.

    The parts built after it (they need its methods) are given with
    :meth:`connect` before anything is sent.
    """

    def __init__(
        self,
        *,
        system_id: str,
        machine: LinkStateMachine,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._system_id = system_id
        self._machine = machine
        self._spawn = spawn
        self._supervisor: Supervisor | None = None
        self._inbound: Inbound | None = None
        self._outbox: Outbox | None = None
        self._reply_address: Callable[[], str | None] = lambda: None

    def connect(
        self,
        *,
        supervisor: Supervisor,
        inbound: Inbound,
        outbox: Outbox,
        reply_address: Callable[[], str | None],
    ) -> None:
        """Give the parts that route what is sent."""
        self._supervisor = supervisor
        self._inbound = inbound
        self._outbox = outbox
        self._reply_address = reply_address

    async def submit(self, wire_obj: dict[str, Any], call: PendingCall | None = None) -> None:
        """Send an application envelope now, or queue it until the link is back.

        Raises:
            LocalProtocolError: the envelope is too large or not JSON.
            ConnectionClosed: the node is closed, disconnected for good, or
                its backlog is full; or the link dropped during the send.
        """
        machine = self._machine
        if not machine.is_running:
            why = (
                "not started (enter 'async with Node(...)' first)"
                if machine.state is LinkState.NEW
                else "closed"
            )
            raise ConnectionClosed(f"cannot send data frame: node {self._system_id} is {why}")
        supervisor, inbound, outbox = self._supervisor, self._inbound, self._outbox
        assert supervisor is not None and inbound is not None and outbox is not None
        to = wire_obj.get("to")
        if to is not None and inbound.is_local(to):
            self._deliver_locally(inbound, wire_obj, call)
            return
        link = supervisor.link
        if link is not None and machine.is_ready:
            try:
                await outbox.transmit(link, wire_obj, call)
            except ConnectionClosed as exc:
                supervisor.drop(link, exc)
                if call is not None:
                    raise link_lost_error(call) from exc
                raise ConnectionClosed(
                    f"cannot send data frame: connection to sentinel lost ({exc})"
                ) from exc
            return
        if not supervisor.may_queue:
            raise ConnectionClosed("cannot send data frame: connection to sentinel is lost")
        outbox.queue(wire_obj, call)

    def _deliver_locally(
        self, inbound: Inbound, wire_obj: dict[str, Any], call: PendingCall | None
    ) -> None:
        # The sentinel would bounce an envelope back to its sender (loop guard,
        # §7.2); like the reference node, deliver our own addresses in-process.
        # The round trip through JSON gives the receiver its own copy.
        if call is not None:
            wire_obj["replyTo"] = self._reply_address()
            call.sent = True
        obj = orjson.loads(dumps(wire_obj))
        if obj["to"].startswith(RPC_PARTICIPANT_PREFIX):
            inbound.on_reply(obj, obj["frame"])
            return
        try:
            envelope = envelope_from_dict(obj)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"cannot send envelope: {exc}") from None
        inbound.deliver(envelope)

    async def send_quietly(self, wire_obj: dict[str, Any]) -> None:
        """Send an envelope nobody waits for (an answer, an ack); failures are logged."""
        try:
            await self.submit(wire_obj)
        except FabricError as exc:
            log.debug("could not send %s: %s", wire_obj["frame"]["type"], exc)
        except Exception:
            log.exception("node %s: sending %s failed", self._system_id, wire_obj["frame"]["type"])

    def send_notice(self, call: PendingCall, notice: dict[str, Any]) -> None:
        """Send a cancel notice for ``call`` in the background, if its request is still alive."""
        if not self._machine.is_running or self._supervisor is None:
            return
        link = self._supervisor.link
        if call.generation is not None and (link is None or link.generation != call.generation):
            return  # the request died with its connection; nobody to tell
        self._spawn(self.send_quietly(notice))
