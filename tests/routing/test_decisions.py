"""Routing decisions: order, NACK eligibility, loop guard, affinity and rendezvous."""

from __future__ import annotations

import ast
import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import famefabric.routing
from famefabric.routing import (
    NO_ROUTE,
    Deliver,
    Drop,
    Reject,
    RoutingTable,
    affinity_key,
    is_nackable,
    rendezvous,
    route,
)

S = "S0"
REPLY_TO = "__rpc__caller@/S0/client"


def make_table() -> RoutingTable:
    table = RoutingTable()
    for node in ("agent", "client", "p1", "p2", "capable", "binder"):
        table.add_node(node)
    table.bind("agent", "echo@fame.fabric")
    table.bind("p1", "math@*.fame.fabric")
    table.bind("p2", "math@*.fame.fabric")
    table.bind("binder", "math@fame.fabric")
    table.bind("binder", "raw@/S0/binder")
    table.advertise("capable", "c@fame.fabric", ["cap.one", "cap.two"])
    table.advertise("agent", "echo@fame.fabric", ["cap.one"])
    return table


def request(**fields: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "id": "env1",
        "replyTo": REPLY_TO,
        "corrId": "c1",
        "rtype": 2,
        "frame": {"type": "Data", "payload": {"jsonrpc": "2.0", "id": "c1", "method": "m"}},
    }
    envelope.update(fields)
    return {key: value for key, value in envelope.items() if value is not None}


@pytest.mark.parametrize(
    ("envelope", "source", "expected"),
    [
        (request(to="echo@fame.fabric"), "client", Deliver("agent")),
        # an exact binding wins over a pool covering the same address
        (request(to="math@fame.fabric"), "client", Deliver("binder")),
        # a bound physical-form address is an exact binding too
        (request(to="raw@/S0/binder"), "client", Deliver("binder")),
        (request(to="__rpc__x@/S0/client"), "agent", Deliver("client")),
        (request(to="anything@/S0/agent/deeper/path"), "client", Deliver("agent")),
        (request(to=None, capabilities=["cap.one", "cap.two"]), "client", Deliver("capable")),
        (
            request(to="nobody@fame.fabric"),
            "client",
            Reject(NO_ROUTE, "Unroutable to nobody@fame.fabric"),
        ),
        (
            request(to="svc@/NoSuchSentinel/agent"),
            "client",
            Reject(NO_ROUTE, "Unroutable to svc@/NoSuchSentinel/agent"),
        ),
        (request(to="svc@/S0/ghost"), "client", Reject(NO_ROUTE, "Unroutable to svc@/S0/ghost")),
        (request(to="svc@/S0"), "client", Reject(NO_ROUTE, "Unroutable to svc@/S0")),
        (
            request(to=None, capabilities=["cap.nine"]),
            "client",
            Reject(NO_ROUTE, "Unroutable to None"),
        ),
        (request(to=None), "client", Reject(NO_ROUTE, "Unroutable to None")),
        (
            request(to="nobody@fame.fabric", replyTo=None),
            "client",
            Drop("Unroutable to nobody@fame.fabric"),
        ),
        (
            request(to="nobody@fame.fabric", corrId=None),
            "client",
            Drop("Unroutable to nobody@fame.fabric"),
        ),
        (
            request(to="nobody@fame.fabric", id=None),
            "client",
            Drop("Unroutable to nobody@fame.fabric"),
        ),
        (
            request(to="nobody@fame.fabric", frame={"type": "DeliveryAck", "ok": False}),
            "client",
            Drop("Unroutable to nobody@fame.fabric"),
        ),
        # loop guard: the only candidate is the sender
        (
            request(to="echo@fame.fabric"),
            "agent",
            Reject(NO_ROUTE, "Unroutable to echo@fame.fabric"),
        ),
        (request(to="x@/S0/client"), "client", Reject(NO_ROUTE, "Unroutable to x@/S0/client")),
        (
            request(to=None, capabilities=["cap.two"]),
            "capable",
            Reject(NO_ROUTE, "Unroutable to None"),
        ),
        # a NACK from the sentinel itself has no source
        (request(to="x@/S0/client"), None, Deliver("client")),
    ],
)
def test_route_follows_the_reference_order(
    envelope: dict[str, Any], source: str | None, expected: object
) -> None:
    assert route(make_table(), envelope, sentinel_id=S, source=source) == expected


@pytest.mark.parametrize(
    "to", ["math@any.fame.fabric", "math@*.fame.fabric", "math@a.b.fame.fabric"]
)
def test_pool_addresses_reach_a_pool_member(to: str) -> None:
    decision = route(make_table(), request(to=to), sentinel_id=S, source="client")
    assert decision in (Deliver("p1"), Deliver("p2"))


def test_a_host_merely_ending_like_the_pool_domain_is_not_in_the_pool() -> None:
    decision = route(make_table(), request(to="math@xfame.fabric"), sentinel_id=S, source="client")
    assert decision == Reject(NO_ROUTE, "Unroutable to math@xfame.fabric")


def test_pool_members_are_chosen_per_envelope_not_per_conversation() -> None:
    table = make_table()
    chosen = Counter(
        route(table, request(to="math@x.fame.fabric", id=f"e{i}"), sentinel_id=S, source="client")
        for i in range(200)
    )
    assert set(chosen) == {Deliver("p1"), Deliver("p2")}


def test_a_pool_member_calling_its_pool_reaches_another_member() -> None:
    decision = route(make_table(), request(to="math@x.fame.fabric"), sentinel_id=S, source="p1")
    assert decision == Deliver("p2")


@pytest.mark.parametrize(
    "to", [123, "not an address", "a@b c", ["echo@fame.fabric"], "bad*@/S0/agent"]
)
def test_an_invalid_to_is_dropped(to: object) -> None:
    decision = route(make_table(), request(to=to), sentinel_id=S, source="client")
    assert isinstance(decision, Drop)


def test_capabilities_must_be_strings() -> None:
    decision = route(
        make_table(), request(to=None, capabilities=[1]), sentinel_id=S, source="client"
    )
    assert isinstance(decision, Drop)


def test_replicas_share_calls_by_affinity_key() -> None:
    table = make_table()
    for replica in ("r1", "r2", "r3"):
        table.add_node(replica)
        table.bind(replica, "chat@fame.fabric")

    def call(conversation: str, envelope_id: str) -> object:
        payload = {
            "jsonrpc": "2.0",
            "id": envelope_id,
            "method": "run_turn",
            "params": {"args": [conversation, "hello"], "kwargs": {}},
        }
        envelope = request(
            to="chat@fame.fabric", id=envelope_id, frame={"type": "Data", "payload": payload}
        )
        return route(table, envelope, sentinel_id=S, source="client")

    per_conversation = {c: {call(f"conv{c}", f"e{c}.{i}") for i in range(5)} for c in range(60)}
    assert all(len(targets) == 1 for targets in per_conversation.values())
    used = Counter(next(iter(targets)) for targets in per_conversation.values())
    assert set(used) == {Deliver("r1"), Deliver("r2"), Deliver("r3")}

    held_by_r2 = [c for c, targets in per_conversation.items() if targets == {Deliver("r2")}]
    table.remove_node("r2")
    for c, targets in per_conversation.items():
        now = call(f"conv{c}", "later")
        if c in held_by_r2:
            assert now in (Deliver("r1"), Deliver("r3"))
        else:
            assert {now} == targets, "conversations on surviving replicas must not move"


@pytest.mark.parametrize(
    ("envelope", "key"),
    [
        ({"id": "e", "meta": {"affinity": "sticky"}, "frame": {"type": "Data"}}, "sticky"),
        (
            {
                "id": "e",
                "meta": {"affinity": 5},
                "frame": {"type": "Data", "payload": {"method": "go", "params": {"args": ["a1"]}}},
            },
            "a1",
        ),
        (
            {
                "id": "e",
                "frame": {
                    "type": "Data",
                    "payload": {
                        "method": "tasks/send",
                        "params": {"id": "task9", "sessionId": "s"},
                    },
                },
            },
            "task9",
        ),
        (
            {
                "id": "e",
                "frame": {"type": "Data", "payload": {"method": "tasks/get", "params": {"id": 7}}},
            },
            "e",
        ),
        (
            {
                "id": "e",
                "frame": {
                    "type": "Data",
                    "payload": {
                        "method": "run_turn",
                        "params": {"args": ["conv1", "hi"], "kwargs": {}},
                    },
                },
            },
            "conv1",
        ),
        (
            {
                "id": "e",
                "frame": {
                    "type": "Data",
                    "payload": {
                        "method": "run_turn",
                        "params": {"args": [3], "kwargs": {"conversation_id": "conv2"}},
                    },
                },
            },
            "conv2",
        ),
        (
            {
                "id": "e",
                "frame": {"type": "Data", "payload": {"method": "echo", "params": {"text": "hi"}}},
            },
            "e",
        ),
        ({"id": "e", "frame": {"type": "Data", "payload": "bare string"}}, "e"),
        ({"frame": {"type": "Data"}}, ""),
    ],
)
def test_affinity_key_prefers_meta_then_task_then_conversation(
    envelope: dict[str, Any], key: str
) -> None:
    assert affinity_key(envelope) == key


def test_rendezvous_is_deterministic_and_moves_few_keys_when_a_replica_joins() -> None:
    keys = [f"conversation-{i}" for i in range(4000)]
    four = ["n1", "n2", "n3", "n4"]
    before = {key: rendezvous(four, key) for key in keys}
    assert before == {key: rendezvous(list(reversed(four)), key) for key in keys}
    spread = Counter(before.values())
    assert all(800 <= count <= 1200 for count in spread.values())
    after = {key: rendezvous([*four, "n5"], key) for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert all(after[key] == "n5" for key in moved)
    assert 0.15 <= len(moved) / len(keys) <= 0.25


def test_rendezvous_needs_a_candidate() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        rendezvous([], "k")


def test_is_nackable_needs_data_with_id_reply_to_and_corr_id() -> None:
    assert is_nackable(request())
    assert not is_nackable(request(id=None))
    assert not is_nackable(request(replyTo=None))
    assert not is_nackable(request(corrId=5))
    assert not is_nackable(request(frame={"type": "DeliveryAck"}))


def test_routing_exports_what_it_defines() -> None:
    for name in famefabric.routing.__all__:
        assert hasattr(famefabric.routing, name), name


FORBIDDEN = {"asyncio", "websockets", "logging", "os", "time"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_routing_and_what_it_imports_stay_free_of_io() -> None:
    seen: set[str] = set()
    pending = ["famefabric.routing", "famefabric.routing.table", "famefabric.routing.decisions"]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None
        for name in imported_modules(Path(spec.origin)):
            assert name.split(".")[0] not in FORBIDDEN, f"{module} imports {name}"
            if name.startswith("famefabric."):
                pending.append(name)
