"""Where an envelope goes: pure routing decisions (PROTOCOL.md §7.2, §7.6).

:func:`route` reads the routing fields of a parsed envelope (the wire
object, a dict with camelCase keys) and the :class:`RoutingTable`, and
returns a decision; the sentinel does the sending. The order is the
reference's:

1. capability routing, when ``to`` is absent and ``capabilities`` is not empty;
2. exact logical binding of ``to``;
3. pool: a pattern ``name@*.domain`` covering ``to``;
4. physical prefix ``/<sentinel>/<child>/...``, whatever the participant;
5. unroutable: :class:`Reject` (the sentinel answers with a NACK) when the
   envelope is a ``Data`` request carrying ``id``, ``replyTo`` and ``corrId``,
   else :class:`Drop`.

Choosing among several candidates uses rendezvous (highest-random-weight)
hashing, which is deterministic for a key and moves few keys when a
candidate comes or goes. Exact addresses with several binders (agent
replicas) hash the envelope's *affinity key* (:func:`affinity_key`), so one
conversation stays on one replica while it lives; pools and capabilities
hash ``meta.affinity`` or else the envelope id, i.e. spread at random per
envelope as the reference does (§6.4).

Loop guard: the sending child is never chosen; if it is the only candidate
the envelope is rejected (or dropped).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from famefabric.errors import ProtocolError
from famefabric.protocol.address import Address, parse_address
from famefabric.routing.table import RoutingTable

NO_ROUTE = "NO_ROUTE"
CHILD_UNREACHABLE = "CHILD_UNREACHABLE"
ROUTE_CONNECTOR_CLOSED = "ROUTE_CONNECTOR_CLOSED"
MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send the envelope to the child connection of this system id."""

    connection_id: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer the sender with a NACK (``DeliveryAck`` ``ok:false``) carrying code and reason."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Drop:
    """Discard the envelope silently; ``reason`` is for the debug log."""

    reason: str


Decision = Deliver | Reject | Drop


def route(
    table: RoutingTable,
    envelope: Mapping[str, Any],
    *,
    sentinel_id: str,
    source: str | None,
    to: Address | None = None,
) -> Decision:
    """Decide where a ``Data`` or ``DeliveryAck`` envelope goes.

    Args:
        table: the current routing table.
        envelope: the parsed wire object.
        sentinel_id: the routing sentinel's system id (for physical paths).
        source: system id of the sending child, or None for the sentinel itself.
        to: the parsed ``to`` address if the caller already parsed it; parsed
            here otherwise.

    Returns:
        :class:`Deliver`, :class:`Reject` or :class:`Drop`.
    """
    to_text = envelope.get("to")
    if to is None and to_text is not None:
        if type(to_text) is not str:
            return Drop(f"invalid 'to' {to_text!r}")
        try:
            to = parse_address(to_text)
        except ProtocolError as exc:
            return Drop(str(exc))

    if to is None:
        capabilities = envelope.get("capabilities")
        if isinstance(capabilities, list) and capabilities:
            if not all(type(c) is str for c in capabilities):
                return Drop(f"invalid 'capabilities' {capabilities!r}")
            found = _pick(table.capable_nodes(capabilities), source, envelope, _spread_key)
            if found is not None:
                return found
        return _unroutable(envelope, "Unroutable to None")

    to_key = to_text if type(to_text) is str else str(to)
    binders = table.binders(to_key)
    if binders:
        if len(binders) == 1 and binders[0] != source:
            return Deliver(binders[0])
        found = _pick(binders, source, envelope, affinity_key)
    elif to.host is not None:
        found = _pick(table.pool_members(to), source, envelope, _spread_key)
    else:
        found = _physical(table, to.path or "", sentinel_id, source)
    if found is not None:
        return found
    return _unroutable(envelope, f"Unroutable to {to_key}")


def is_nackable(envelope: Mapping[str, Any]) -> bool:
    """Tell whether a failed envelope earns a NACK: ``Data`` with ``id``, ``replyTo``, ``corrId``.

    Everything else (replies, acks, notifications) is dropped when it cannot
    be delivered, so that NACKs never answer NACKs (§7.2 step 6).
    """
    frame = envelope.get("frame")
    return (
        isinstance(frame, dict)
        and frame.get("type") == "Data"
        and type(envelope.get("id")) is str
        and type(envelope.get("replyTo")) is str
        and type(envelope.get("corrId")) is str
    )


def affinity_key(envelope: Mapping[str, Any]) -> str:
    """Return the key that keeps one conversation on one replica.

    In order: ``meta.affinity`` if it is a string; for a JSON-RPC request,
    ``params.id`` of ``tasks/*`` methods (the task id), otherwise the first
    positional argument ``params.args[0]`` when it is a string, or
    ``params.kwargs.conversation_id``; else the envelope id (a random spread).
    """
    meta = envelope.get("meta")
    if isinstance(meta, dict):
        explicit = meta.get("affinity")
        if type(explicit) is str:
            return explicit
    frame = envelope.get("frame")
    payload = frame.get("payload") if isinstance(frame, dict) else None
    if isinstance(payload, dict):
        method = payload.get("method")
        params = payload.get("params")
        if type(method) is str and isinstance(params, dict):
            if method.startswith("tasks/"):
                task_id = params.get("id")
                if type(task_id) is str and task_id:
                    return task_id
            else:
                args = params.get("args")
                if isinstance(args, list) and args and type(args[0]) is str:
                    return str(args[0])
                kwargs = params.get("kwargs")
                if isinstance(kwargs, dict):
                    conversation = kwargs.get("conversation_id")
                    if type(conversation) is str:
                        return conversation
    return _envelope_id(envelope)


def rendezvous(candidates: Sequence[str], key: str) -> str:
    """Pick the candidate with the highest hash of (candidate, key).

    Deterministic across processes; removing a candidate only moves the keys
    it held, and adding one moves about 1/n of the keys to it.

    Raises:
        ValueError: ``candidates`` is empty.
    """
    if not candidates:
        raise ValueError("rendezvous needs at least one candidate")
    if len(candidates) == 1:
        return candidates[0]
    salt = key.encode()
    best = candidates[0]
    best_score = b""
    for candidate in candidates:
        score = hashlib.blake2b(candidate.encode() + b"\x00" + salt, digest_size=8).digest()
        if score > best_score:
            best, best_score = candidate, score
    return best


def _spread_key(envelope: Mapping[str, Any]) -> str:
    meta = envelope.get("meta")
    if isinstance(meta, dict):
        explicit = meta.get("affinity")
        if type(explicit) is str:
            return explicit
    return _envelope_id(envelope)


def _envelope_id(envelope: Mapping[str, Any]) -> str:
    envelope_id = envelope.get("id")
    return envelope_id if type(envelope_id) is str else ""


def _pick(
    candidates: Sequence[str],
    source: str | None,
    envelope: Mapping[str, Any],
    key_of: Callable[[Mapping[str, Any]], str],
) -> Deliver | None:
    """Deliver to the rendezvous winner among ``candidates`` other than ``source``.

    The key is computed only when there is a choice to make.
    """
    if source is not None and source in candidates:
        candidates = [c for c in candidates if c != source]
    if not candidates:
        return None
    if len(candidates) == 1:
        return Deliver(candidates[0])
    return Deliver(rendezvous(candidates, key_of(envelope)))


def _physical(
    table: RoutingTable, path: str, sentinel_id: str, source: str | None
) -> Deliver | None:
    # /<sentinel>/<child>[/...]: any participant under a child's path reaches it (§6.2).
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[1] != sentinel_id:
        return None
    child = parts[2]
    if child == source or not table.has_node(child):
        return None
    return Deliver(child)


def _unroutable(envelope: Mapping[str, Any], reason: str) -> Reject | Drop:
    if is_nackable(envelope):
        return Reject(NO_ROUTE, reason)
    return Drop(reason)
