"""Where each envelope the node receives goes (PROTOCOL.md §6.3, §7.6, §8).

* ``Data`` and ``DeliveryAck`` addressed to the RPC inbox (``__rpc__…``) are
  replies and NACKs for pending calls. They are matched from the decoded
  JSON object itself, without building an envelope: this is the hot path of
  every call.
* Control acks (``AddressBindAck``…) go to the binder, matched by ``corrId``.
* ``Data`` and ``DeliveryAck`` for a bound address go to its handler, each in
  a task of its own, so requests are served concurrently.
* ``Data`` for a name this node does not serve (C-45) is dropped with a
  warning; a JSON-RPC request among them is answered ``-32601`` so that its
  caller does not wait for a timeout.

Nothing here raises into the reader: a bad envelope costs a log line only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from famefabric.node import wire
from famefabric.node.binder import Binder
from famefabric.node.dispatch import Binding, Bindings
from famefabric.node.rpc import RpcClient
from famefabric.protocol import jsonrpc
from famefabric.protocol.address import RPC_PARTICIPANT_PREFIX, SYSTEM_PARTICIPANT, is_address
from famefabric.protocol.frames import RTYPE_ACK, Ack, Data, DeliveryAck, Envelope, IgnoredFrame

log = logging.getLogger(__name__)

SYSTEM_PREFIX = SYSTEM_PARTICIPANT + "@"

Spawn = Callable[[Coroutine[Any, Any, None]], None]
Send = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Inbound:
    """Routes received envelopes to calls, the binder and handlers.

    Args:
        system_id: the node's system id (for instance addresses and logs).
        bindings: the addresses the node serves.
        rpc: the node's pending calls.
        binder: waits for control acks.
        spawn: runs a coroutine in the node's task group (or drops it when closing).
        send: sends an envelope, never raising (answers and acks).
    """

    def __init__(
        self,
        *,
        system_id: str,
        bindings: Bindings,
        rpc: RpcClient,
        binder: Binder,
        spawn: Spawn,
        send: Send,
    ) -> None:
        self._system_id = system_id
        self._bindings = bindings
        self._rpc = rpc
        self._binder = binder
        self._spawn = spawn
        self._send = send
        self.path: str | None = None
        """The node's assigned path, updated at every attach."""
        self._acked: set[str] = set()

    def on_reply(self, obj: dict[str, Any], frame: dict[str, Any]) -> None:
        """Take a reply or NACK addressed to the RPC inbox, from its decoded object."""
        corr_id = _text(obj.get("corrId"))
        if frame["type"] == "Data":
            call = self._rpc.on_reply(corr_id, frame.get("payload"))
        elif frame.get("ok") is False:
            ref_id, code, reason = (_text(frame.get(key)) for key in ("refId", "code", "reason"))
            call = self._rpc.on_nack(corr_id, ref_id, code, reason)
        else:
            call = None  # a positive DeliveryAck (§8.4): nothing waits for it
        if call is None and log.isEnabledFor(logging.DEBUG):
            log.debug("dropping a late %s for call %s", frame["type"], corr_id)
        rtype = obj.get("rtype")
        if type(rtype) is int and rtype & RTYPE_ACK:
            # An at-least-once reply wants a positive DeliveryAck (§8.4).
            reply_to, envelope_id = obj.get("replyTo"), obj.get("id")
            if isinstance(reply_to, str) and is_address(reply_to) and isinstance(envelope_id, str):
                trace_id = _text(obj.get("traceId"))
                ack = wire.delivery_ack(
                    to=reply_to, corr_id=corr_id, trace_id=trace_id, ref_id=envelope_id
                )
                self._spawn(self._send(ack))

    def on_envelope(self, envelope: Envelope) -> None:
        """Route an envelope other than a reply to the RPC inbox or a heartbeat ack."""
        frame = envelope.frame
        kind = type(frame)
        if kind is Data or kind is DeliveryAck:
            self.deliver(envelope)
        elif isinstance(frame, Ack):
            if not self._binder.on_ack(envelope) and log.isEnabledFor(logging.DEBUG):
                log.debug("ignoring %s %s nobody waits for", frame.type, envelope.corr_id)
        elif kind is IgnoredFrame:
            log.debug("ignoring %s", frame.type)
        else:
            log.warning("dropping a %s frame: a node does not accept it", frame.type)

    def deliver(self, envelope: Envelope) -> None:
        """Hand a ``Data`` or ``DeliveryAck`` to the handler of its address."""
        to = envelope.to
        if to is not None and to.startswith(SYSTEM_PREFIX):
            # Acks for at-least-once replies land in the system inbox (§6.3).
            log.debug("ignoring a %s at %s", envelope.frame.type, to)
            return
        if to is not None:
            binding = self._bindings.resolve(to, path=self.path, system_id=self._system_id)
        elif envelope.capabilities:
            binding = self._bindings.by_capabilities(envelope.capabilities)
        else:
            binding = None
        if binding is None:
            self._refuse(envelope)
            return
        self._spawn(self._handle(binding, envelope))

    def is_local(self, to: str) -> bool:
        """Tell whether envelopes for ``to`` are this node's own to deliver."""
        if to.startswith(RPC_PARTICIPANT_PREFIX):
            return self.path is not None and to.endswith("@" + self.path)
        if not self._bindings:
            return False
        return self._bindings.resolve(to, path=self.path, system_id=self._system_id) is not None

    def should_acknowledge(self, request: Envelope) -> bool:
        """Tell whether a reply to ``request`` must first send its ``DeliveryAck`` (once, §8.4)."""
        if not request.rtype or not request.rtype & RTYPE_ACK or not request.id:
            return False
        if request.id in self._acked:
            return False
        self._acked.add(request.id)
        return True

    async def _handle(self, binding: Binding, envelope: Envelope) -> None:
        try:
            await binding.handler(envelope)
        except Exception:
            log.exception("handler for %s failed on envelope %s", binding.address, envelope.id)
        finally:
            if envelope.id is not None:
                self._acked.discard(envelope.id)

    def _refuse(self, envelope: Envelope) -> None:
        target = envelope.to or f"capabilities {list(envelope.capabilities or ())}"
        log.warning(
            "dropping %s for %s: no handler for it on node %s",
            envelope.frame.type,
            target,
            self._system_id,
        )
        frame = envelope.frame
        if not isinstance(frame, Data) or envelope.reply_to is None:
            return
        request = jsonrpc.parse_request(frame.payload)
        if request is None or request.id is None:
            return
        message = f"no handler for {target} on this node"
        payload = jsonrpc.make_error(request.id, jsonrpc.METHOD_NOT_FOUND, message)
        self._spawn(self._send(wire.reply(envelope, payload)))
