"""The node's link state machine, driven without sockets."""

from __future__ import annotations

import itertools

import pytest

from famefabric.node.state import (
    ATTACHED,
    RUNNING,
    TRANSITIONS,
    LinkEvent,
    LinkState,
    LinkStateMachine,
)

S, E = LinkState, LinkEvent


@pytest.mark.parametrize(("state", "event"), list(itertools.product(S, E)))
def test_every_pair_follows_the_table_or_is_refused(state: LinkState, event: LinkEvent) -> None:
    machine = LinkStateMachine(state)
    target = TRANSITIONS.get((state, event))
    assert machine.allows(event) is (target is not None)
    if target is None:
        with pytest.raises(RuntimeError, match=f"has no '{event.value}' transition"):
            machine.fire(event)
        assert machine.state is state  # a refused event changes nothing
    else:
        assert machine.fire(event) is target
        assert machine.state is target


def test_a_life_with_an_outage_and_a_final_loss() -> None:
    machine = LinkStateMachine()
    walk = [
        (E.START, S.CONNECTING, (False, False, True)),
        (E.ATTACHED, S.RESTORING, (True, False, True)),
        (E.RESTORED, S.READY, (True, True, True)),
        (E.LOST, S.DISCONNECTED, (False, False, True)),
        (E.ATTACHED, S.RESTORING, (True, False, True)),
        (E.LOST, S.DISCONNECTED, (False, False, True)),
        (E.GIVE_UP, S.GAVE_UP, (False, False, True)),
        (E.CLOSE, S.CLOSING, (False, False, False)),
        (E.CLOSED, S.CLOSED, (False, False, False)),
    ]
    assert (machine.is_attached, machine.is_ready, machine.is_running) == (False, False, False)
    for event, state, (attached, ready, running) in walk:
        assert machine.fire(event) is state
        assert (machine.is_attached, machine.is_ready, machine.is_running) == (
            attached,
            ready,
            running,
        ), state
    assert machine.is_closed


@pytest.mark.parametrize(
    ("events", "closed_by_close"),
    [
        ((), S.CLOSED),  # never started: close goes straight to CLOSED
        ((E.START,), S.CLOSING),
        ((E.START, E.ATTACHED), S.CLOSING),
        ((E.START, E.ATTACHED, E.RESTORED), S.CLOSING),
        ((E.START, E.ATTACHED, E.RESTORED, E.LOST), S.CLOSING),
        ((E.START, E.ATTACHED, E.LOST, E.GIVE_UP), S.CLOSING),
    ],
)
def test_close_is_possible_from_every_live_state(
    events: tuple[LinkEvent, ...], closed_by_close: LinkState
) -> None:
    machine = LinkStateMachine()
    for event in events:
        machine.fire(event)
    assert machine.fire(E.CLOSE) is closed_by_close
    assert not machine.allows(E.CLOSE)  # closing twice is the caller's no-op, not a transition
    assert not machine.allows(E.LOST)  # a connection lost while closing is no event


def test_a_failed_first_attach_ends_the_node() -> None:
    machine = LinkStateMachine()
    machine.fire(E.START)
    assert machine.fire(E.FAILED) is S.CLOSED
    assert not machine.allows(E.START)  # a node is started once


def test_every_state_is_reachable_and_every_state_but_closed_can_end() -> None:
    reachable = {S.NEW}
    frontier = [S.NEW]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(S)
    assert ATTACHED < RUNNING
    sources = {source for source, _ in TRANSITIONS}
    assert sources == set(S) - {S.CLOSED}
