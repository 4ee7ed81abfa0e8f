"""The sentinel's answer to ``NodeAttach`` on a child connection (§4.2, §5.1, §5.2, §5.8).

An attach is refused (negative ack, then close 1008) when its frame is
invalid, when its ``systemId`` differs from the attach URL's, or when the
system id is attached with another identity. Otherwise the connection
becomes the node's live one, replacing an older connection of the same id,
and what the node sent before the attach is handled in order.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from famefabric.errors import ProtocolError
from famefabric.protocol.codec import frame_from_dict
from famefabric.protocol.frames import NodeAttachAck
from famefabric.protocol.ids import new_id
from famefabric.routing.permissions import Identity
from famefabric.sentinel.actions import Action, Close
from famefabric.sentinel.states import Event, SessionState

if TYPE_CHECKING:
    from famefabric.sentinel.session import ChildSession

log = logging.getLogger("famefabric.sentinel")


def handle_attach(
    session: ChildSession,
    envelope: dict[str, Any],
    frame: dict[str, Any],
    out: list[Action],
    now: float,
) -> None:
    """Answer ``NodeAttach`` (§4.2, §5.1, §5.2, §5.8)."""
    router = session.router
    node_id = session.node_id
    ref_id = _text(envelope.get("id")) or new_id()
    refusal: str | None = None
    close_reason = ""
    claimed = frame.get("systemId")
    older = router.live.get(node_id)
    try:
        frame_from_dict(frame)
    except ProtocolError as exc:
        refusal, close_reason = str(exc), "invalid NodeAttach"
    if refusal is None and claimed != node_id:
        refusal = f"systemId {claimed!r:.80} does not match the attach URL's {node_id!r}"
        close_reason = "systemId does not match the attach URL"
    if refusal is None and older is not None and older is not session:
        if _subject(older.identity) != _subject(session.identity):
            refusal = (
                f"system id {node_id!r} is attached with another identity; "
                "a connection may replace it only with the same identity"
            )
            close_reason = "system id in use by another identity"
    if refusal is not None:
        log.warning("node %s: refused an attach: %s", node_id, refusal)
        ack = NodeAttachAck(ok=False, reason=refusal, ref_id=ref_id)
        out.append(session.answer(ack, envelope, with_sid=False))
        session.transition(Event.REFUSE)
        session.closing(1008, close_reason)
        out.append(Close(session, 1008, close_reason))
        return
    reattach = session.state is SessionState.ATTACHED
    if not reattach:
        if older is not None:
            if older.state is SessionState.ATTACHED:
                older.transition(Event.REPLACE)
            older.closing(1000, "replaced by a newer connection")
            out.append(Close(older, 1000, "replaced by a newer connection"))
            log.info("node %s attached again; closing its older connection", node_id)
        router.live[node_id] = session
        router.table.add_node(node_id)
    session.transition(Event.ATTACH)
    ack = NodeAttachAck(
        ok=True,
        ref_id=ref_id,
        target_system_id=router.system_id,
        target_physical_path=router.path,
        assigned_path=session.path,
        routing_epoch=session.epoch,
    )
    out.append(session.answer(ack, envelope, with_sid=False))
    if reattach:
        log.debug("node %s: re-acknowledged a second NodeAttach", node_id)
        return
    who = f" as {session.identity.subject!r}" if session.identity is not None else " (anonymous)"
    log.info("node %s attached%s at %s (epoch %s)", node_id, who, session.path, session.epoch)
    pending, session.pending, session.pending_bytes = session.pending, [], 0
    for buffered, size in pending:
        frame = buffered["frame"]
        session.dispatch(buffered, frame, frame["type"], size, out, now)


def _subject(identity: Identity | None) -> str | None:
    return None if identity is None else identity.subject


def _text(value: object) -> str | None:
    return value if type(value) is str else None
