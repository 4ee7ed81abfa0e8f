"""The sentinel's per-connection state machine, without sockets: fed envelopes, checked actions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sentinel_harness import (
    Harness,
    S,
    attach_frame,
    control,
    identity,
    nack_of,
    reply_to,
    request,
)

from famefabric.protocol.ids import source_id
from famefabric.sentinel.actions import Close, Send
from famefabric.sentinel.pump import apply
from famefabric.sentinel.session import TRANSITIONS, ChildSession, Event, SessionState

# -- the state machine ---------------------------------------------------------


def test_every_state_can_lose_its_link_and_closed_is_final() -> None:
    for state in SessionState:
        assert TRANSITIONS[(state, Event.LINK_CLOSED)] is SessionState.CLOSED
    assert not [
        key
        for key in TRANSITIONS
        if key[0] is SessionState.CLOSED and key[1] is not Event.LINK_CLOSED
    ]


def test_an_event_not_in_the_table_is_refused() -> None:
    session = Harness().session("n1", attach=False)
    with pytest.raises(RuntimeError, match="replace in state awaiting attach"):
        session.transition(Event.REPLACE)


# -- attach ------------------------------------------------------------------------


def test_attach_is_acknowledged_with_paths_epoch_and_the_echoed_correlation() -> None:
    h = Harness()
    session = h.session("n1", attach=False)
    ack = h.ack(h.feed(session, attach_frame("n1")), session)
    assert session.state is SessionState.ATTACHED
    assert ack["corrId"] == "attach" and "sid" not in ack
    assert ack["frame"]["assignedPath"] == f"/{S}/n1"
    assert ack["frame"]["targetSystemId"] == S
    assert ack["frame"]["routingEpoch"] == session.epoch
    again = h.ack(h.feed(session, attach_frame("n1")), session)
    assert again["frame"]["ok"] is True and session.state is SessionState.ATTACHED


@pytest.mark.parametrize(
    ("frame", "reason", "close_reason"),
    [
        ({"systemId": "other"}, "does not match", "systemId does not match the attach URL"),
        ({"instanceId": None}, "instanceId", "invalid NodeAttach"),
    ],
)
def test_a_refused_attach_gets_a_negative_ack_and_a_close(
    frame: dict[str, Any], reason: str, close_reason: str
) -> None:
    h = Harness()
    session = h.session("n1", attach=False)
    actions = h.feed(session, attach_frame("n1", **frame))
    ack = orjson.loads(next(a for a in actions if isinstance(a, Send)).data)
    assert ack["frame"]["ok"] is False and reason in ack["frame"]["reason"]
    assert Close(session, 1008, close_reason) in actions
    assert session.state is SessionState.CLOSING
    assert "n1" not in h.router.live


def test_a_newer_attach_with_the_same_system_id_replaces_the_older_connection() -> None:
    h = Harness()
    older = h.session("n1")
    h.feed(older, control("AddressBind", address="echo@fame.fabric"))
    newer = h.session("n1", attach=False)
    actions = h.feed(newer, attach_frame("n1"))
    assert Close(older, 1000, "replaced by a newer connection") in actions
    assert older.state is SessionState.CLOSING and h.router.live["n1"] is newer
    # The older link closing later does not drop the newer one's routes.
    apply(older.link_closed(h.now), h.now)
    assert h.router.live["n1"] is newer
    assert h.router.table.binders("echo@fame.fabric") == ["n1"]


def test_envelopes_before_the_attach_are_replayed_after_it() -> None:
    h = Harness(pending_max_messages=2)
    agent = h.session("agent")
    h.feed(agent, control("AddressBind", address="echo@fame.fabric"))
    h.taken(agent)
    caller = h.session("caller", attach=False)
    for _ in range(2):
        h.feed(caller, request(caller, "echo@fame.fabric"))
    assert h.taken(agent) == []
    h.feed(caller, attach_frame("caller"))
    assert len(h.taken(agent)) == 2
    assert caller.pending == [] and caller.pending_bytes == 0


# -- control frames ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "ok", "reason"),
    [
        ({"type": "AddressBind", "address": "echo@fame.fabric"}, True, None),
        ({"type": "AddressBind", "address": "no at sign"}, False, "invalid address"),
        ({"type": "AddressBind"}, False, "missing required field 'address'"),
        ({"type": "AddressBind", "address": f"x@/{S}/n1/sub"}, True, None),
        ({"type": "AddressBind", "address": f"__rpc__abc@/{S}/victim"}, False, "own path"),
        ({"type": "AddressBind", "address": f"x@/{S}"}, False, "own path"),
        ({"type": "AddressUnbind", "address": "never@fame.fabric"}, True, None),
        (
            {"type": "CapabilityAdvertise", "address": "e@fame.fabric", "capabilities": ["c"]},
            True,
            None,
        ),
        (
            {"type": "CapabilityAdvertise", "address": "e@fame.fabric", "capabilities": [""]},
            False,
            "non-empty strings",
        ),
        ({"type": "CapabilityWithdraw", "address": "e@fame.fabric"}, False, "capabilities"),
        ({"type": "NodeHeartbeat"}, True, None),
    ],
)
def test_control_frames_are_decoded_once_and_acknowledged(
    frame: dict[str, Any], ok: bool, reason: str | None
) -> None:
    h = Harness()
    session = h.session("n1")
    wire = {"id": "req1", "corrId": "c1", "traceId": "t1", "frame": frame}
    ack = h.ack(h.feed(session, wire), session)
    assert ack["frame"]["type"] == frame["type"] + "Ack"
    assert (ack["frame"]["ok"], ack["frame"]["refId"], ack["corrId"], ack["traceId"]) == (
        ok,
        "req1",
        "c1",
        "t1",
    )
    assert ack["sid"] == source_id(f"/{S}")
    if reason is not None:
        assert reason in ack["frame"]["reason"]


@pytest.mark.parametrize(
    "wire",
    [
        {"id": "x", "frame": {"type": "Bogus"}},
        {"id": "x", "frame": {"type": "NodeHello"}},
        {"id": "x", "frame": {"type": "AddressBindAck", "ok": True}},
        {"id": "x", "frame": {"type": "CreditUpdate", "flowId": "f", "credits": 32}},
        {"id": "x", "to": "not an address", "frame": {"type": "Data"}},
    ],
)
def test_unknown_and_unexpected_frames_produce_no_action(wire: dict[str, Any]) -> None:
    h = Harness()
    session = h.session("n1")
    assert h.feed(session, wire) == []


def test_a_credit_update_is_granted_before_the_24th_envelopes_answer() -> None:
    h = Harness()
    session = h.session("n1", attach=False)
    wire = attach_frame("n1")
    wire["flowId"] = "flow"
    h.feed(session, wire)  # envelope 1 of the flow
    session.outbound.take_all()
    kinds: list[str] = []
    for _ in range(23):
        beat = control("NodeHeartbeat")
        beat["flowId"] = "flow"
        kinds += [orjson.loads(a.data)["frame"]["type"] for a in h.feed(session, beat)]  # type: ignore[union-attr]
    assert kinds[-2:] == ["CreditUpdate", "NodeHeartbeatAck"]
    assert kinds.count("CreditUpdate") == 1


# -- routing and every NACK ------------------------------------------------------


def pair(h: Harness) -> tuple[ChildSession, ChildSession]:
    agent = h.session("agent")
    h.feed(agent, control("AddressBind", address="echo@fame.fabric"))
    h.taken(agent)
    return agent, h.session("caller")


def test_a_request_is_forwarded_restamped_and_its_reply_returned() -> None:
    h = Harness()
    agent, caller = pair(h)
    h.feed(caller, request(caller, "echo@fame.fabric"))
    [forwarded] = h.taken(agent)
    # The agent's connection carried the attach and bind acks (seqId 0 and 1) before it.
    assert forwarded["flowId"] == agent.flow_id and forwarded["seqId"] == 2
    assert len(h.router.inflight) == 1
    h.feed(agent, reply_to(forwarded))
    [answer] = h.taken(caller)
    assert answer["frame"]["payload"]["result"] == "ok"
    assert len(h.router.inflight) == 0


def test_no_route_is_nacked() -> None:
    h = Harness()
    caller = h.session("caller")
    h.feed(caller, request(caller, "nobody@fame.fabric"))
    assert nack_of(h.taken(caller))["frame"]["code"] == "NO_ROUTE"


def test_a_destination_that_goes_away_nacks_its_unanswered_requests() -> None:
    h = Harness()
    agent, caller = pair(h)
    h.feed(caller, request(caller, "echo@fame.fabric"))
    apply(agent.link_closed(h.now), h.now)
    nack = nack_of(h.taken(caller))
    assert nack["frame"]["code"] == "CHILD_UNREACHABLE"
    assert "disconnected before replying" in nack["frame"]["reason"]


def test_an_oversize_request_is_nacked() -> None:
    h = Harness(max_envelope_bytes=1000)
    agent, caller = pair(h)
    h.feed(caller, request(caller, "echo@fame.fabric", params="x" * 2000))
    assert nack_of(h.taken(caller))["frame"]["code"] == "MESSAGE_TOO_LARGE"
    assert h.taken(agent) == []


def test_a_request_to_a_full_destination_is_nacked_busy_and_a_stuck_one_closed() -> None:
    h = Harness(write_deadline=5.0)
    agent, caller = pair(h)
    agent.outbound.max_messages = 2
    for _ in range(3):
        h.feed(caller, request(caller, "echo@fame.fabric"))
    nack = nack_of(h.taken(caller))
    assert nack["frame"]["code"] == "DESTINATION_BUSY"
    assert "agent" in nack["frame"]["reason"]
    h.now += 6.0
    actions = h.feed(caller, request(caller, "echo@fame.fabric"))
    closes = [a for a in actions if isinstance(a, Close)]
    assert closes and closes[0].target is agent and closes[0].reason.startswith("slow consumer")
    # Its two unanswered requests are NACKed at once, with the refused one.
    codes = sorted(e["frame"]["code"] for e in h.taken(caller))
    assert codes == ["CHILD_UNREACHABLE", "CHILD_UNREACHABLE", "DESTINATION_BUSY"]


def test_a_reply_to_a_full_caller_makes_it_a_slow_consumer() -> None:
    h = Harness()
    agent, caller = pair(h)
    caller.outbound.max_messages = 1
    h.feed(caller, request(caller, "echo@fame.fabric"))
    h.feed(caller, request(caller, "echo@fame.fabric"))
    forwarded = h.taken(agent)
    h.feed(agent, reply_to(forwarded[0]))
    unread = caller.outbound.bytes
    actions = h.feed(agent, reply_to(forwarded[1]))
    assert [a.reason for a in actions if isinstance(a, Close)] == [
        f"slow consumer: 1 messages ({unread} bytes) unread"
    ]
    assert caller.state is SessionState.CLOSING and caller.outbound.closed


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            b'{"id":"e","to":"echo@fame.fabric","replyTo":"__rpc__x@/sentinel01/caller",'
            b'"corrId":"c","rtype":2,"frame":{"type":"Data","payload":{"v":NaN}}}',
            "not valid JSON",
        ),
        (
            b'{"id":"e","to":"echo@fame.fabric","replyTo":"__rpc__x@/sentinel01/caller",'
            b'"corrId":"c","rtype":2,"frame":{"type":"Data","payload":"\\ud800"}}',
            "not valid JSON",
        ),
        (
            b'{"id":"e","to":"echo@fame.fabric","replyTo":"__rpc__x@/sentinel01/caller",'
            b'"corrId":"c","rtype":2,"frame":{"type":"Data","payload":'
            + b"[" * 300
            + b"]" * 300
            + b"}}",
            "more than 64 levels deep, the most allowed (FAME_SENTINEL_MAX_JSON_DEPTH)",
        ),
    ],
)
def test_values_json_cannot_carry_are_nacked_invalid_envelope(raw: bytes, problem: str) -> None:
    h = Harness()
    agent, caller = pair(h)
    apply(caller.receive(raw, h.now), h.now)
    nack = nack_of(h.taken(caller))
    assert nack["frame"]["code"] == "INVALID_ENVELOPE" and problem in nack["frame"]["reason"]
    assert h.taken(agent) == []


def nested(depth: int) -> bytes:
    """A request whose envelope nests ``depth`` levels (envelope, frame, payload, lists)."""
    lists = depth - 2
    return (
        b'{"id":"e","to":"echo@fame.fabric","replyTo":"__rpc__x@/sentinel01/caller",'
        b'"corrId":"c","rtype":2,"frame":{"type":"Data","payload":'
        + b"[" * lists
        + b"]" * lists
        + b"}}"
    )


@pytest.mark.parametrize(("limit", "depth", "forwarded"), [(10, 10, True), (10, 11, False)])
def test_the_nesting_limit_is_a_setting_and_exact(limit: int, depth: int, forwarded: bool) -> None:
    h = Harness(max_json_depth=limit)
    agent, caller = pair(h)
    apply(caller.receive(nested(depth), h.now), h.now)
    assert len(h.taken(agent)) == (1 if forwarded else 0)
    if not forwarded:
        reason = nack_of(h.taken(caller))["frame"]["reason"]
        assert f"more than {limit} levels deep" in reason


def test_nesting_orjson_cannot_write_is_nacked_even_under_a_higher_limit() -> None:
    h = Harness(max_json_depth=1000)
    agent, caller = pair(h)
    apply(caller.receive(nested(300), h.now), h.now)
    nack = nack_of(h.taken(caller))
    assert nack["frame"]["code"] == "INVALID_ENVELOPE"
    assert "nested deeper than 254 levels" in nack["frame"]["reason"]
    assert h.taken(agent) == []


# -- closing on time ---------------------------------------------------------------


def test_an_idle_session_is_closed_by_its_tick() -> None:
    h = Harness()
    session = h.session("n1")
    assert session.tick(h.now + 5, idle_timeout=10) == []
    assert session.next_deadline(10) == h.now + 10
    assert session.tick(h.now + 10, idle_timeout=10) == [Close(session, 1000, "idle for 10 s")]


def test_a_session_whose_token_expires_is_closed_with_1008() -> None:
    h = Harness()
    session = ChildSession(
        h.router, "n1", now=h.now, wall_now=1_000.0, identity=identity("alice", expires_at=1_030.0)
    )
    h.feed(session, attach_frame("n1"))
    assert session.next_deadline(None) == h.now + 30
    assert session.tick(h.now + 29, idle_timeout=None) == []
    assert session.tick(h.now + 30, idle_timeout=None) == [Close(session, 1008, "token expired")]
