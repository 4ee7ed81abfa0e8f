"""The view of the other sentinels: heartbeats, snapshots, expiry, and the routes it answers."""

from __future__ import annotations

import pytest

from famefabric.errors import ProtocolError
from famefabric.protocol.address import parse_address
from famefabric.routing import Deliver, Reject, RoutingTable
from famefabric.sentinel.actions import Remote
from famefabric.sentinel.cluster.routes import reroute
from famefabric.sentinel.cluster.view import ClusterView, snapshot
from famefabric.sentinel.inflight import InflightRequests


def table_with(*bindings: tuple[str, str]) -> RoutingTable:
    table = RoutingTable()
    for node, address in bindings:
        table.add_node(node)
        table.bind(node, address)
    return table


def view_with(peer: str, table: RoutingTable, now: float = 0.0) -> ClusterView:
    view = ClusterView("self", peer_timeout=2.0)
    assert view.heard(peer, "inst", table.version, now) is not None
    assert view.load(peer, "inst", snapshot(table), now)
    return view


def test_snapshot_lists_logical_routes_only_and_loads_back() -> None:
    table = table_with(("n1", "echo@fame.fabric"), ("n1", "rpc@/peer/n1"), ("n2", "pool@*.fabric"))
    table.advertise("n2", "pool@x.fabric", ["translate"])
    data = snapshot(table)
    assert data["nodes"]["n1"]["addresses"] == ["echo@fame.fabric"]
    view = view_with("peer", table)
    assert list(view.binders("echo@fame.fabric")) == [("peer", "n1")]
    assert view.pool_members(parse_address("pool@x.fabric")) == [("peer", "n2")]
    assert view.capable(["translate"]) == [("peer", "n2")]
    assert view.binders("rpc@/peer/n1") == ()


def test_heartbeat_asks_for_a_snapshot_only_when_the_version_changes() -> None:
    table = table_with(("n1", "echo@fame.fabric"))
    view = view_with("peer", table)
    assert view.heard("peer", "inst", table.version, 1.0) is None
    assert view.heard("peer", "inst", table.version + 1, 1.0) is not None
    # A restarted peer (new instance) starts from nothing.
    assert view.heard("peer", "other", table.version, 1.0) is not None
    assert view.binders("echo@fame.fabric") == ()


def test_silent_peers_expire_and_forgetting_drops_their_routes() -> None:
    view = view_with("peer", table_with(("n1", "echo@fame.fabric")), now=0.0)
    assert view.expired(1.9) == []
    assert view.expired(2.1) == ["peer"]
    assert view.forget("peer") is not None
    assert not view.has_exact("echo@fame.fabric") and not view.is_live("peer")


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"version": "1", "nodes": {}},
        {"version": 1, "nodes": {"n": []}},
        {"version": 1, "nodes": {"n": {"addresses": [5]}}},
        {"version": 1, "nodes": {"n": {"addresses": ["x@/peer/n"]}}},
        {"version": 1, "nodes": {"n": {"addresses": ["not an address"]}}},
        {"version": 1, "nodes": {"n": {"capabilities": [["only-one"]]}}},
    ],
)
def test_malformed_snapshots_are_refused_and_keep_the_old_routes(data: object) -> None:
    view = view_with("peer", table_with(("n1", "echo@fame.fabric")))
    with pytest.raises(ProtocolError):
        view.load("peer", "inst", data, 1.0)
    assert view.has_exact("echo@fame.fabric")


def request(to: str, key: str = "k", **extra: object) -> dict[str, object]:
    return {
        "id": f"id-{key}",
        "to": to,
        "replyTo": "rpc@/self/caller",
        "corrId": "c1",
        "rtype": 2,
        "frame": {"type": "Data", "payload": {"method": "m", "params": {"args": [key]}}},
        **extra,
    }


def decide(view: ClusterView, table: RoutingTable, envelope: dict[str, object]) -> object:
    return reroute(
        self_id="self",
        table=table,
        view=view,
        inflight=InflightRequests(),
        envelope=envelope,  # type: ignore[arg-type]
        decision=Reject("NO_ROUTE", "x"),
        source="caller",
    )


def test_physical_addresses_go_to_their_live_sentinel() -> None:
    view = view_with("peer", table_with(("n1", "echo@fame.fabric")))
    local = RoutingTable()
    assert decide(view, local, request("rpc@/peer/n9")) == Remote("peer")
    assert decide(view, local, request("rpc@/gone/n9")) is None
    assert decide(view, local, request("rpc@/self/n9")) is None


def test_replicas_across_sentinels_pick_the_same_one_from_both_sides() -> None:
    """The choice depends on the key and the cluster-wide replica set, not on the asking side."""
    here = table_with(("mine", "echo@fame.fabric"))
    there = table_with(("theirs", "echo@fame.fabric"))
    from_self = view_with("peer", there)
    from_peer = ClusterView("peer", peer_timeout=2.0)
    from_peer.heard("self", "inst", here.version, 0.0)
    from_peer.load("self", "inst", snapshot(here), 0.0)
    spread = set()
    for k in range(40):
        envelope = request("echo@fame.fabric", key=f"conversation-{k}")
        mine = decide(from_self, here, envelope)
        theirs = reroute(
            self_id="peer",
            table=there,
            view=from_peer,
            inflight=InflightRequests(),
            envelope=envelope,  # type: ignore[arg-type]
            decision=Deliver("theirs"),
            source="caller",
        )
        if mine == Deliver("mine"):
            assert theirs == Remote("self", "mine")
        else:
            assert mine == Remote("peer", "theirs") and theirs == Deliver("theirs")
        spread.add(mine)
    assert len(spread) == 2


def test_a_cancel_notice_follows_its_request_to_the_peer() -> None:
    view = view_with("peer", table_with(("n1", "echo@fame.fabric")))
    inflight = InflightRequests()
    sent = request("echo@fame.fabric")
    inflight.add(sent, source="caller", destination="~peer")
    cancel = {
        "id": "c",
        "to": "echo@fame.fabric",
        "corrId": "c1",
        "frame": {"type": "DeliveryAck", "ok": False, "code": "CANCELLED", "refId": sent["id"]},
    }
    choice = reroute(
        self_id="self",
        table=RoutingTable(),
        view=view,
        inflight=inflight,
        envelope=cancel,
        decision=Reject("NO_ROUTE", "x"),
        source="caller",
    )
    assert choice == Remote("peer")


def test_pools_prefer_local_members_and_capabilities_span_the_cluster() -> None:
    there = RoutingTable()
    there.add_node("far")
    there.bind("far", "worker@*.fabric")
    there.advertise("far", "translator@fame.fabric", ["translate"])
    view = view_with("peer", there)
    here = RoutingTable()
    pooled = request("worker@jobs.fabric")
    assert decide(view, here, pooled) == Remote("peer", "far")
    here.add_node("near")
    here.bind("near", "worker@*.fabric")
    kept = reroute(
        self_id="self",
        table=here,
        view=view,
        inflight=InflightRequests(),
        envelope=pooled,  # type: ignore[arg-type]
        decision=Deliver("near"),
        source="caller",
    )
    assert kept is None  # a local pool member keeps the envelope here
    by_capability = request("ignored", key="k2")
    del by_capability["to"]
    by_capability["capabilities"] = ["translate"]
    assert decide(view, here, by_capability) == Remote("peer", "far")
    by_capability["capabilities"] = ["translate", "summarize"]
    assert decide(view, here, by_capability) is None
