"""Authorization in the sentinel's session, without sockets: binds, calls, replies, cancels, attach."""

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

from famefabric.protocol.ids import new_id
from famefabric.sentinel.actions import Close, Send
from famefabric.sentinel.authorization import bind_refusal, call_refusal, stamp_caller
from famefabric.sentinel.session import ChildSession, SessionState

AGENT = identity("agent-svc", serve=("echo@fame.fabric", "!admin@fame.fabric"))
ALICE = identity("alice", call=("echo@fame.fabric",))
ROOT = identity("root", call=(">",), admin=True)


def agent_and_caller(h: Harness, caller_identity: Any = ALICE) -> tuple[ChildSession, ChildSession]:
    agent = h.session("agent", identity=AGENT)
    ack = h.ack(h.feed(agent, control("AddressBind", address="echo@fame.fabric")), agent)
    assert ack["frame"]["ok"] is True
    return agent, h.session("caller", identity=caller_identity)


# -- pure decisions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "address", "refusal"),
    [
        (None, "anything@fame.fabric", None),
        (None, f"x@/{S}/n1", None),
        (None, f"__rpc__r@/{S}/n1/deeper", None),
        (None, f"__rpc__r@/{S}/victim", "only under its own path"),
        (None, f"__sys__@/{S}/n10", "only under its own path"),
        (AGENT, "echo@fame.fabric", None),
        (AGENT, f"__sys__@/{S}/n1", None),
        (AGENT, "chat@fame.fabric", "'agent-svc' lacks permission to serve 'chat@fame.fabric'"),
        (AGENT, "admin@fame.fabric", "lacks permission to serve"),
        (AGENT, "bad address", "invalid address"),
    ],
)
def test_bind_refusal(who: Any, address: str, refusal: str | None) -> None:
    answer = bind_refusal(who, f"/{S}/n1", address)
    if refusal is None:
        assert answer is None
    else:
        assert answer is not None and refusal in answer


def test_call_refusal_names_subject_and_address_or_capability() -> None:
    assert call_refusal(ALICE, {"to": "echo@fame.fabric"}) is None
    assert call_refusal(ALICE, {"to": "chat@fame.fabric"}) == (
        "identity 'alice' lacks permission to call 'chat@fame.fabric' (fame_call)"
    )
    refusal = call_refusal(ALICE, {"capabilities": ["fame.capability.agent"]})
    assert refusal is not None and "capability 'fame.capability.agent'" in refusal
    assert call_refusal(ROOT, {"capabilities": ["anything"]}) is None


@pytest.mark.parametrize(
    ("who", "meta", "stamped"),
    [
        (None, {"subject": "forged", "admin": True, "affinity": "a"}, {"affinity": "a"}),
        (ALICE, {"subject": "forged", "admin": True}, {"subject": "alice"}),
        (ALICE, None, {"subject": "alice"}),
        (ALICE, "not an object", {"subject": "alice"}),
        (ROOT, {}, {"subject": "root", "admin": True}),
    ],
)
def test_the_caller_is_stamped_over_whatever_the_sender_wrote(
    who: Any, meta: Any, stamped: dict[str, Any]
) -> None:
    envelope: dict[str, Any] = {} if meta is None else {"meta": meta}
    stamp_caller(envelope, who)
    assert envelope.get("meta") == stamped


# -- in the session ----------------------------------------------------------------


def test_a_bind_outside_fame_serve_gets_a_negative_ack_naming_identity_and_address() -> None:
    h = Harness()
    rogue = h.session("rogue", identity=ALICE)
    ack = h.ack(h.feed(rogue, control("AddressBind", address="echo@fame.fabric")), rogue)
    assert ack["frame"]["ok"] is False
    assert ack["frame"]["reason"] == (
        "identity 'alice' lacks permission to serve 'echo@fame.fabric' (fame_serve)"
    )
    assert not h.router.table.binders("echo@fame.fabric")


def test_no_node_may_bind_another_nodes_reply_inbox_even_in_open_mode() -> None:
    h = Harness()
    h.session("victim")
    rogue = h.session("rogue")
    wire = control("AddressBind", address=f"__rpc__abc@/{S}/victim")
    ack = h.ack(h.feed(rogue, wire), rogue)
    assert ack["frame"]["ok"] is False and "own path" in ack["frame"]["reason"]


def test_a_request_outside_fame_call_is_nacked_forbidden_at_once() -> None:
    h = Harness()
    agent, caller = agent_and_caller(h, identity("bob", call=("other@fame.fabric",)))
    h.feed(caller, request(caller, "echo@fame.fabric"))
    nack = nack_of(h.taken(caller))
    assert nack["frame"]["code"] == "FORBIDDEN"
    assert nack["frame"]["reason"] == (
        "identity 'bob' lacks permission to call 'echo@fame.fabric' (fame_call)"
    )
    assert h.taken(agent) == []


def test_a_json_rpc_request_without_rtype_is_checked_too() -> None:
    h = Harness()
    _, caller = agent_and_caller(h, identity("bob"))
    wire = request(caller, "echo@fame.fabric")
    del wire["rtype"]
    h.feed(caller, wire)
    assert nack_of(h.taken(caller))["frame"]["code"] == "FORBIDDEN"


def test_a_permitted_request_carries_the_stamped_subject_and_its_reply_passes() -> None:
    h = Harness()
    agent, caller = agent_and_caller(h)
    h.feed(caller, request(caller, "echo@fame.fabric", meta={"subject": "root", "admin": True}))
    [forwarded] = h.taken(agent)
    assert forwarded["meta"] == {"subject": "alice"}
    # The agent may not call the caller's inbox, but it answers a request it received.
    h.feed(agent, reply_to(forwarded))
    [answer] = h.taken(caller)
    assert answer["frame"]["payload"]["result"] == "ok"


def test_a_forged_reply_into_another_callers_inbox_is_dropped() -> None:
    h = Harness()
    agent, caller = agent_and_caller(h)
    rogue = h.session("rogue", identity=identity("mallory", serve=(">",)))
    h.feed(caller, request(caller, "echo@fame.fabric"))
    [forwarded] = h.taken(agent)
    assert h.feed(rogue, reply_to(forwarded, "forged")) == []
    assert h.taken(caller) == []
    # The real answer still arrives.
    h.feed(agent, reply_to(forwarded))
    assert h.taken(caller)[0]["frame"]["payload"]["result"] == "ok"


def test_a_cancel_notice_is_honoured_only_from_the_node_that_sent_the_request() -> None:
    h = Harness()
    agent, caller = agent_and_caller(h)
    rogue = h.session("rogue", identity=ALICE)
    sent = request(caller, "echo@fame.fabric")
    h.feed(caller, sent)
    h.taken(agent)

    def cancel() -> dict[str, Any]:
        return {
            "id": "n1",
            "to": "echo@fame.fabric",
            "corrId": sent["corrId"],
            "flowFlags": 4,
            "frame": {"type": "DeliveryAck", "ok": False, "code": "CANCELLED", "refId": sent["id"]},
        }

    assert h.feed(rogue, cancel()) == []
    assert h.taken(agent) == []
    h.feed(caller, cancel())
    [notice] = h.taken(agent)
    assert notice["frame"]["code"] == "CANCELLED"


def test_a_cancel_notice_from_a_stranger_is_dropped_in_open_mode_too() -> None:
    h = Harness()
    agent = h.session("agent")
    h.feed(agent, control("AddressBind", address="echo@fame.fabric"))
    caller, rogue = h.session("caller"), h.session("rogue")
    sent = request(caller, "echo@fame.fabric")
    h.feed(caller, sent)
    h.taken(agent)
    forged = {
        "id": "n1",
        "to": "echo@fame.fabric",
        "corrId": sent["corrId"],
        "frame": {"type": "DeliveryAck", "ok": False, "code": "CANCELLED", "refId": sent["id"]},
    }
    assert h.feed(rogue, forged) == []


def test_open_mode_removes_forged_subject_keys_and_stamps_nothing() -> None:
    h = Harness()
    agent = h.session("agent")
    h.feed(agent, control("AddressBind", address="echo@fame.fabric"))
    h.taken(agent)
    caller = h.session("caller")
    h.feed(caller, request(caller, "echo@fame.fabric", meta={"subject": "root", "admin": True}))
    assert h.taken(agent)[0]["meta"] == {}


def test_forged_subject_keys_are_removed_from_envelopes_that_are_not_requests_too() -> None:
    h = Harness()
    agent, caller = agent_and_caller(h)
    notice = {
        "id": new_id(),
        "to": "echo@fame.fabric",
        "meta": {"subject": "root", "admin": True, "other": 1},
        "frame": {"type": "Data", "payload": 1},
    }
    h.feed(caller, notice)
    [delivered] = h.taken(agent)
    assert delivered["meta"] == {"other": 1}


def test_a_second_attach_with_another_subject_is_refused_and_closed() -> None:
    h = Harness()
    victim = h.session("shared", identity=ALICE)
    impostor = ChildSession(h.router, "shared", now=h.now, identity=identity("mallory"))
    actions = h.feed(impostor, attach_frame("shared"))
    ack = orjson.loads(next(a for a in actions if isinstance(a, Send)).data)
    assert ack["frame"]["ok"] is False and "another identity" in ack["frame"]["reason"]
    assert Close(impostor, 1008, "system id in use by another identity") in actions
    assert h.router.live["shared"] is victim and victim.state is SessionState.ATTACHED


def test_a_second_attach_with_the_same_subject_replaces_the_first() -> None:
    h = Harness()
    first = h.session("shared", identity=ALICE)
    second = ChildSession(h.router, "shared", now=h.now, identity=ALICE)
    actions = h.feed(second, attach_frame("shared"))
    assert Close(first, 1000, "replaced by a newer connection") in actions
    assert h.router.live["shared"] is second
