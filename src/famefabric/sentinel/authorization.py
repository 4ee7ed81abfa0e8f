"""Who may bind and call what: the sentinel's decisions, without I/O (docs/PROTOCOL.md, "Security").

Each decision answers with ``None`` (allowed) or the reason of a refusal,
worded for the node that caused it. ``identity is None`` is open mode: every
address permission is granted, but the structural rules still hold (a node
binds only under its own physical path, never another node's).

Permission answers are cached by :class:`~famefabric.routing.permissions.Permissions`,
so a decision costs a dict lookup once an address has been seen.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from famefabric.errors import ProtocolError
from famefabric.protocol.address import parse_address
from famefabric.protocol.envelopes import CANCELLED, is_request_rtype
from famefabric.routing.permissions import Identity
from famefabric.sentinel.actions import FORBIDDEN, Action

if TYPE_CHECKING:
    from famefabric.sentinel.session import ChildSession

log = logging.getLogger("famefabric.sentinel")


def bind_refusal(identity: Identity | None, node_path: str, address: str) -> str | None:
    """Say why the node at ``node_path`` may not bind ``address``, or None.

    A physical address (``participant@/path``) must lie under the node's own
    path; that is always allowed to it (its reply and system inboxes). A
    logical address needs ``identity.may_serve``.
    """
    try:
        parsed = parse_address(address)
    except ProtocolError as exc:
        return str(exc)
    if parsed.is_physical:
        path = parsed.path or ""
        if path == node_path or path.startswith(node_path + "/"):
            return None
        return (
            f"a node may bind physical addresses only under its own path {node_path}, "
            f"not {address!r}"
        )
    if identity is None or identity.may_serve(address):
        return None
    return f"identity {identity.subject!r} lacks permission to serve {address!r} (fame_serve)"


def call_refusal(identity: Identity, envelope: dict[str, Any]) -> str | None:
    """Say why ``identity`` may not send the request ``envelope``, or None.

    A request to ``to`` needs ``may_call(to)``; one routed by capability (no
    ``to``) needs ``may_call`` of every capability it names.
    """
    to = envelope.get("to")
    if type(to) is str:
        if identity.may_call(to):
            return None
        return f"identity {identity.subject!r} lacks permission to call {to!r} (fame_call)"
    capabilities = envelope.get("capabilities")
    names = capabilities if isinstance(capabilities, list) else []
    for name in names:
        if type(name) is not str or not identity.may_call(name):
            return (
                f"identity {identity.subject!r} lacks permission to call capability "
                f"{name!r} (fame_call)"
            )
    return None


def stamp_caller(envelope: dict[str, Any], identity: Identity | None) -> None:
    """Replace whatever ``meta.subject``/``meta.admin`` the sender wrote with the truth.

    Open mode stamps nothing (the keys are only removed); with an identity,
    ``meta.subject`` is its subject and ``meta.admin`` is ``true`` for admins.
    """
    meta = envelope.get("meta")
    if type(meta) is dict:
        meta.pop("subject", None)
        meta.pop("admin", None)
    if identity is None:
        return
    if type(meta) is not dict:
        meta = envelope["meta"] = {}
    meta["subject"] = identity.subject
    if identity.admin:
        meta["admin"] = True


def is_request(frame: dict[str, Any], rtype_request: bool) -> bool:
    """Tell whether a ``Data`` envelope is a request (rtype asks for a response, or JSON-RPC)."""
    if rtype_request:
        return True
    payload = frame.get("payload")
    return isinstance(payload, dict) and type(payload.get("method")) is str


def authorize(
    session: ChildSession,
    envelope: dict[str, Any],
    frame: dict[str, Any],
    frame_type: str,
    out: list[Action],
    now: float,
) -> bool:
    """Apply the rules on calls, replies and cancel notices to a routed envelope of ``session``.

    Returns whether it may be routed; a refused request is NACKed ``FORBIDDEN`` into ``out``.

    Sender-provided ``meta.subject``/``meta.admin`` are removed from every
    routed envelope; requests get the identity's stamped in their place.
    """
    identity = session.identity
    if "meta" in envelope:
        stamp_caller(envelope, None)
    if frame_type == "Data":
        if is_request(frame, is_request_rtype(envelope.get("rtype"))):
            if identity is not None:
                refusal = call_refusal(identity, envelope)
                if refusal is not None:
                    log.info("node %s: refused a request: %s", session.node_id, refusal)
                    session.router.nack(envelope, FORBIDDEN, refusal, out, now)
                    return False
            if identity is not None:
                stamp_caller(envelope, identity)
            return True
    elif frame.get("ok") is False and frame.get("code") == CANCELLED:
        if session.router.inflight.sent_by(session.node_id, frame.get("refId")):
            return True
        session.warn("dropped a cancel notice for a request it did not send")
        return False
    if identity is None or session.router.inflight.answers(envelope, source=session.node_id):
        return True
    to = envelope.get("to")
    if type(to) is str and identity.may_call(to):
        return True
    session.warn(
        "dropped a %s to %r: it answers no request this node received, and %r may not call it",
        frame_type,
        to,
        identity.subject,
    )
    return False
