"""Per-node limits in the sentinel's session, without sockets: each refusal names its limit."""

from __future__ import annotations

from typing import Any

import pytest
from sentinel_harness import Harness, attach_frame, control, nack_of, request

from famefabric.sentinel.actions import Close
from famefabric.sentinel.session import ChildSession, SessionState


def test_a_connection_that_does_not_attach_in_time_is_closed() -> None:
    h = Harness(attach_deadline=5.0)
    session = h.session("late", attach=False)
    assert session.next_deadline(None) == h.now + 5.0
    assert session.tick(h.now + 4.9, idle_timeout=None) == []
    assert session.tick(h.now + 5.0, idle_timeout=None) == [
        Close(session, 1008, "no NodeAttach within 5 s")
    ]


def test_an_attached_connection_has_no_attach_deadline() -> None:
    h = Harness(attach_deadline=5.0)
    session = h.session("n1")
    assert session.next_deadline(None) is None
    assert session.tick(h.now + 60, idle_timeout=None) == []


def test_requests_beyond_the_in_flight_limit_are_nacked_too_many_requests() -> None:
    h = Harness(max_inflight_per_node=2)
    agent = h.session("agent")
    h.feed(agent, control("AddressBind", address="echo@fame.fabric"))
    h.taken(agent)
    caller = h.session("caller")
    for _ in range(3):
        h.feed(caller, request(caller, "echo@fame.fabric"))
    nack = nack_of(h.taken(caller))
    assert nack["frame"]["code"] == "TOO_MANY_REQUESTS"
    assert "FAME_SENTINEL_MAX_INFLIGHT_PER_NODE" in nack["frame"]["reason"]
    assert len(h.taken(agent)) == 2
    # Another node is not affected by the first one's load.
    other = h.session("other")
    h.feed(other, request(other, "echo@fame.fabric"))
    assert len(h.taken(agent)) == 1


def test_bindings_per_node_are_bounded_and_rebinding_is_free() -> None:
    h = Harness(max_bindings_per_node=2)
    node = h.session("n1")
    for name in ("a", "b", "a"):
        ack = h.ack(h.feed(node, control("AddressBind", address=f"{name}@fame.fabric")), node)
        assert ack["frame"]["ok"] is True
    ack = h.ack(h.feed(node, control("AddressBind", address="c@fame.fabric")), node)
    assert ack["frame"]["ok"] is False
    assert "FAME_SENTINEL_MAX_BINDINGS_PER_NODE" in ack["frame"]["reason"]
    h.feed(node, control("AddressUnbind", address="a@fame.fabric"))
    node.outbound.take_all()
    ack = h.ack(h.feed(node, control("AddressBind", address="c@fame.fabric")), node)
    assert ack["frame"]["ok"] is True


def test_capabilities_per_node_are_bounded_in_count_and_size() -> None:
    h = Harness(max_capabilities_per_node=3, max_route_bytes_per_node=200)
    node = h.session("n1")

    def advertise(*capabilities: str) -> dict[str, object]:
        wire = control(
            "CapabilityAdvertise", address="e@fame.fabric", capabilities=list(capabilities)
        )
        return h.ack(h.feed(node, wire), node)["frame"]

    assert advertise("c1", "c2", "c3")["ok"] is True
    assert advertise("c1", "c2")["ok"] is True  # already there: nothing new
    refused = advertise("c4")
    assert refused["ok"] is False
    assert "FAME_SENTINEL_MAX_CAPABILITIES_PER_NODE" in str(refused["reason"])
    withdraw = control("CapabilityWithdraw", address="e@fame.fabric", capabilities=["c3"])
    h.ack(h.feed(node, withdraw), node)
    big = advertise("x" * 300)
    assert big["ok"] is False and "FAME_SENTINEL_MAX_ROUTE_BYTES_PER_NODE" in str(big["reason"])


# -- offenders are disconnected ----------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "params", "fit", "reason"),
    [
        (
            {"pending_max_messages": 3},
            "x",
            3,
            "sent more than 3 envelopes before NodeAttach (FAME_SENTINEL_PENDING_MAX_MESSAGES)",
        ),
        (
            {"pending_max_bytes": 2000},
            "x" * 600,
            2,
            "sent more than 2000 bytes before NodeAttach (FAME_SENTINEL_PENDING_MAX_BYTES)",
        ),
    ],
)
def test_a_connection_that_overflows_the_pre_attach_buffer_is_closed(
    limits: dict[str, int], params: str, fit: int, reason: str
) -> None:
    h = Harness(**limits)
    caller = h.session("caller", attach=False)
    for _ in range(fit):
        assert h.feed(caller, request(caller, "echo@fame.fabric", params=params)) == []
    assert caller.state is SessionState.AWAITING_ATTACH
    actions = h.feed(caller, request(caller, "echo@fame.fabric", params=params))
    assert actions == [Close(caller, 1008, reason)]
    assert caller.state is SessionState.CLOSING
    # Whatever it sends next, an attach included, is ignored.
    assert h.feed(caller, attach_frame("caller")) == []
    assert "caller" not in h.router.live


def _bind(h: Harness, node: ChildSession, i: int) -> list[Any]:
    return h.feed(node, control("AddressBind", address=f"a{i}@fame.fabric"))


def _advertise(h: Harness, node: ChildSession, i: int) -> list[Any]:
    wire = control("CapabilityAdvertise", address="e@fame.fabric", capabilities=[f"cap{i}"])
    return h.feed(node, wire)


def _advertise_big(h: Harness, node: ChildSession, i: int) -> list[Any]:
    wire = control("CapabilityAdvertise", address="e@fame.fabric", capabilities=[f"{i}" * 500])
    return h.feed(node, wire)


@pytest.mark.parametrize(
    ("limits", "send", "fit", "variable"),
    [
        ({"max_bindings_per_node": 2}, _bind, 2, "FAME_SENTINEL_MAX_BINDINGS_PER_NODE"),
        (
            {"max_capabilities_per_node": 2},
            _advertise,
            2,
            "FAME_SENTINEL_MAX_CAPABILITIES_PER_NODE",
        ),
        (
            {"max_route_bytes_per_node": 100},
            _advertise_big,
            0,
            "FAME_SENTINEL_MAX_ROUTE_BYTES_PER_NODE",
        ),
        ({"max_route_bytes_per_node": 30}, _bind, 2, "FAME_SENTINEL_MAX_ROUTE_BYTES_PER_NODE"),
    ],
)
def test_a_node_that_keeps_crossing_a_routes_limit_is_closed(
    limits: dict[str, int], send: Any, fit: int, variable: str
) -> None:
    h = Harness(max_route_refusals=3, **limits)
    node = h.session("n1")
    for i in range(fit):
        assert h.ack(send(h, node, i), node)["frame"]["ok"] is True
    for i in range(fit, fit + 3):  # refused, still connected
        actions = send(h, node, i)
        assert not any(isinstance(a, Close) for a in actions)
        ack = h.ack(actions, node)["frame"]
        assert ack["ok"] is False and variable in ack["reason"]
    actions = send(h, node, fit + 3)  # one refusal too many: told, then closed
    ack = h.ack(actions, node)["frame"]
    assert ack["ok"] is False and variable in ack["reason"]
    assert actions[-1] == Close(node, 1008, f"kept adding routes past {variable}")
    assert node.state is SessionState.CLOSING
    # Another node is not affected.
    other = h.session("n2")
    assert h.ack(_bind(h, other, 99), other)["frame"]["ok"] is True


def test_refusals_for_other_reasons_do_not_count_toward_the_disconnect() -> None:
    h = Harness(max_route_refusals=1)
    node = h.session("n1")
    for _ in range(5):
        ack = h.ack(h.feed(node, control("AddressBind", address="no at sign")), node)
        assert ack["frame"]["ok"] is False
    assert node.state is SessionState.ATTACHED and node.route_refusals == 0
