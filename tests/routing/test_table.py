"""The routing table: bindings, pools, capabilities and their removal."""

from __future__ import annotations

import pytest

from famefabric.errors import ProtocolError
from famefabric.protocol.address import parse_address
from famefabric.routing import RoutingTable


def table_with(*nodes: str) -> RoutingTable:
    table = RoutingTable()
    for node in nodes:
        table.add_node(node)
    return table


def test_every_binder_of_an_exact_address_is_kept_in_bind_order() -> None:
    table = table_with("a", "b", "c")
    table.bind("b", "echo@fame.fabric")
    table.bind("a", "echo@fame.fabric")
    table.bind("b", "echo@fame.fabric")
    assert list(table.binders("echo@fame.fabric")) == ["b", "a"]
    assert list(table.binders("other@fame.fabric")) == []


def test_unbind_removes_only_the_requesting_nodes_binding() -> None:
    table = table_with("a", "b")
    table.bind("a", "echo@fame.fabric")
    table.bind("b", "echo@fame.fabric")
    assert table.unbind("a", "echo@fame.fabric") is True
    assert table.unbind("a", "echo@fame.fabric") is False
    assert table.unbind("c", "echo@fame.fabric") is False
    assert list(table.binders("echo@fame.fabric")) == ["b"]
    assert table.unbind("b", "echo@fame.fabric") is True
    assert table.counts()["addresses"] == 0


@pytest.mark.parametrize(
    ("to", "members"),
    [
        ("echo@fame.fabric", ["p1", "p2"]),
        ("echo@any.fame.fabric", ["p1", "p2"]),
        ("echo@deep.sub.fame.fabric", ["p1", "p2"]),
        ("echo@*.fame.fabric", ["p1", "p2"]),
        ("echo@other.domain", []),
        ("echo@notfame.fabric", []),
        ("other@fame.fabric", []),
        ("echo@/S/p1", []),
    ],
)
def test_a_pool_covers_its_domain_and_every_sub_domain(to: str, members: list[str]) -> None:
    table = table_with("p1", "p2")
    table.bind("p1", "echo@*.fame.fabric")
    table.bind("p2", "echo@*.fame.fabric")
    assert list(table.pool_members(parse_address(to))) == members


def test_members_of_overlapping_pools_are_listed_once() -> None:
    table = table_with("p1", "p2")
    table.bind("p1", "echo@*.fame.fabric")
    table.bind("p2", "echo@*.fame.fabric")
    table.bind("p2", "echo@*.eu.fame.fabric")
    assert list(table.pool_members(parse_address("echo@x.eu.fame.fabric"))) == ["p1", "p2"]


def test_capable_nodes_advertised_every_requested_capability() -> None:
    table = table_with("a", "b")
    table.advertise("a", "x@fame.fabric", ["cap.one", "cap.two"])
    table.advertise("b", "y@fame.fabric", ["cap.one"])
    assert table.capable_nodes(["cap.one"]) == ["a", "b"]
    assert table.capable_nodes(["cap.one", "cap.two"]) == ["a"]
    assert table.capable_nodes(["cap.three"]) == []
    assert table.capable_nodes([]) == []


def test_withdraw_removes_the_capability_for_that_address_only() -> None:
    table = table_with("a")
    table.advertise("a", "x@fame.fabric", ["cap.one"])
    table.advertise("a", "y@fame.fabric", ["cap.one"])
    table.withdraw("a", "x@fame.fabric", ["cap.one", "never.advertised"])
    assert table.capable_nodes(["cap.one"]) == ["a"]
    table.withdraw("a", "y@fame.fabric", ["cap.one"])
    assert table.capable_nodes(["cap.one"]) == []
    assert table.counts()["capabilities"] == 0


def test_removing_a_node_removes_everything_it_registered() -> None:
    table = table_with("a", "b")
    table.bind("a", "echo@fame.fabric")
    table.bind("b", "echo@fame.fabric")
    table.bind("a", "solo@fame.fabric")
    table.bind("a", "pool@*.fame.fabric")
    table.advertise("a", "echo@fame.fabric", ["fame.capability.agent"])
    routes = table.remove_node("a")
    assert routes.addresses == {"echo@fame.fabric", "solo@fame.fabric", "pool@*.fame.fabric"}
    assert routes.capabilities == {("fame.capability.agent", "echo@fame.fabric")}
    assert not table.has_node("a")
    assert list(table.binders("echo@fame.fabric")) == ["b"]
    assert table.counts() == {"nodes": 1, "addresses": 1, "pools": 0, "capabilities": 0}
    table.remove_node("b")
    assert table.counts() == {"nodes": 0, "addresses": 0, "pools": 0, "capabilities": 0}
    assert table.remove_node("b").addresses == set()


def test_bind_validates_the_address_and_requires_an_attached_node() -> None:
    table = table_with("a")
    with pytest.raises(ProtocolError, match="invalid address"):
        table.bind("a", "not an address")
    with pytest.raises(KeyError):
        table.bind("ghost", "echo@fame.fabric")
    assert table.node_addresses("a") == set()
