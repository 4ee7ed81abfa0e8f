"""Credits enforced by the sentinel's session, without sockets (PROTOCOL.md §9).

A node's grants are held back while it is at its in-flight limit and sent
when a reply brings it below; a node that goes on sending more than 64
envelopes on a flow past its last grant is NACKed ``CREDITS_EXCEEDED`` and
its connection closed. Honest senders, which wait once their 32 credits are
spent, never get there.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sentinel_harness import Harness, control, reply_to, request

from famefabric.sentinel.actions import Close, Send
from famefabric.sentinel.session import ChildSession, SessionState

ECHO = "echo@fame.fabric"
FLOW = "callerFlow"


def setup(h: Harness) -> tuple[ChildSession, ChildSession]:
    agent = h.session("agent")
    h.feed(agent, control("AddressBind", address=ECHO))
    h.taken(agent)
    return agent, h.session("caller")


def credits_sent(actions: list[Any], session: ChildSession) -> list[dict[str, Any]]:
    sent = [orjson.loads(a.data) for a in actions if isinstance(a, Send) and a.target is session]
    return [e for e in sent if e["frame"]["type"] == "CreditUpdate"]


def send(h: Harness, caller: ChildSession, count: int) -> list[Any]:
    """Feed ``count`` requests on one flow; return every action."""
    actions: list[Any] = []
    for _ in range(count):
        actions += h.feed(caller, request(caller, ECHO, flowId=FLOW))
    return actions


@pytest.mark.parametrize(
    ("limit", "sent", "grants", "closed"),
    [
        # Under the in-flight limit grants go out at the 24th, 48th, … envelope.
        (1000, 24, 1, False),
        (1000, 200, 8, False),
        # At the limit (3 requests in flight) grants are held back: a node that
        # keeps sending is tolerated up to 64 envelopes past its last grant…
        (3, 64, 0, False),
        # …and told off and closed at the 65th.
        (3, 65, 0, True),
    ],
)
def test_grants_and_violations(limit: int, sent: int, grants: int, closed: bool) -> None:
    h = Harness(max_inflight_per_node=limit)
    _, caller = setup(h)
    actions = send(h, caller, sent)
    assert len(credits_sent(actions, caller)) == grants
    closes = [a for a in actions if isinstance(a, Close)]
    if closed:
        assert closes == [Close(caller, 1008, "sent past its credit window of 32 on a flow")]
        assert caller.state is SessionState.CLOSING
        nacks = [e for e in h.taken(caller) if e["frame"].get("code") == "CREDITS_EXCEEDED"]
        assert len(nacks) == 1
        assert "sent more than 64 envelopes on flow callerFlow" in nacks[0]["frame"]["reason"]
        assert "wait for credits" in nacks[0]["frame"]["reason"]
    else:
        assert closes == []
        assert caller.state is SessionState.ATTACHED


def test_a_held_grant_is_sent_when_a_reply_brings_the_node_under_its_limit() -> None:
    h = Harness(max_inflight_per_node=3)
    agent, caller = setup(h)
    actions = send(h, caller, 30)  # 3 forwarded, 27 refused; the grant at the 24th is held
    assert credits_sent(actions, caller) == []
    assert caller.held_credits == {FLOW}
    forwarded = h.taken(agent)
    assert len(forwarded) == 3
    actions = h.feed(agent, reply_to(forwarded[0]))
    [grant] = credits_sent(actions, caller)
    assert grant["frame"] == {"type": "CreditUpdate", "flowId": FLOW, "credits": 32}
    assert caller.held_credits == set()
    # With the fresh grant the node may send another 64 before it is a violator.
    assert [a for a in send(h, caller, 64) if isinstance(a, Close)] == []


def test_a_held_grant_is_sent_when_the_destination_goes_away() -> None:
    h = Harness(max_inflight_per_node=2)
    agent, caller = setup(h)
    send(h, caller, 24)
    assert caller.held_credits == {FLOW}
    actions = agent.link_closed(h.now)
    assert len(credits_sent(actions, caller)) == 1


def test_an_honest_sender_that_waits_for_each_grant_is_never_closed() -> None:
    h = Harness(max_inflight_per_node=1_000_000)
    _, caller = setup(h)
    balance = 32
    for _ in range(2000):
        actions = h.feed(caller, request(caller, ECHO, flowId=FLOW))
        balance -= 1
        # A clamped sender (the reference's rule): a grant refills to at most 32.
        balance = min(32, balance + 32 * len(credits_sent(actions, caller)))
        assert balance > 0
        assert not [a for a in actions if isinstance(a, Close)]
        h.taken(caller)


def test_one_nodes_violation_does_not_touch_another_nodes_flow() -> None:
    h = Harness(max_inflight_per_node=2)
    agent, caller = setup(h)
    other = h.session("other")
    send(h, caller, 70)
    assert caller.state is SessionState.CLOSING
    h.feed(other, request(other, ECHO, flowId="otherFlow"))
    assert other.state is SessionState.ATTACHED
    assert len(h.taken(agent)) == 3


def test_requests_to_one_destination_are_bounded() -> None:
    h = Harness(max_inflight_per_destination=2)
    agent, caller = setup(h)
    other = h.session("other")
    h.feed(caller, request(caller, ECHO))
    h.feed(other, request(other, ECHO))
    h.feed(other, request(other, ECHO))
    [nack] = [e for e in h.taken(other) if e["frame"]["type"] == "DeliveryAck"]
    assert nack["frame"]["code"] == "DESTINATION_BUSY"
    assert "FAME_SENTINEL_MAX_INFLIGHT_PER_DESTINATION" in nack["frame"]["reason"]
    assert len(h.taken(agent)) == 2
