"""In-flight request tracking: settling, streams, disconnects, deadlines and bounds."""

from __future__ import annotations

from typing import Any

from famefabric.sentinel.inflight import InflightRequests

REPLY_TO = "__rpc__c@/S/client"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(rpc_id: str = "r1", *, rtype: int = 2, **fields: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "id": f"env-{rpc_id}",
        "to": "echo@fame.fabric",
        "replyTo": REPLY_TO,
        "corrId": rpc_id,
        "traceId": "t1",
        "rtype": rtype,
        "frame": {"type": "Data", "payload": {"jsonrpc": "2.0", "id": rpc_id, "method": "m"}},
    }
    envelope.update(fields)
    return envelope


def reply(rpc_id: str = "r1", **payload: Any) -> dict[str, Any]:
    return {
        "to": REPLY_TO,
        "corrId": rpc_id,
        "frame": {"type": "Data", "payload": {"jsonrpc": "2.0", "id": rpc_id, **payload}},
    }


def empty(inflight: InflightRequests) -> bool:
    return len(inflight) == 0 and not inflight._by_destination and not inflight._by_source


def test_a_unary_request_is_settled_by_its_reply_from_the_destination() -> None:
    inflight = InflightRequests()
    assert inflight.add(request(), source="client", destination="agent") is not None
    assert not inflight.settle(reply(), source="someoneElse")
    assert not inflight.settle(reply("other"), source="agent")
    assert inflight.settle(reply(result=1), source="agent")
    assert empty(inflight)


def test_only_replies_and_streams_are_tracked() -> None:
    inflight = InflightRequests()
    assert inflight.add(request(rtype=1), source="c", destination="a") is None
    assert inflight.add(request(rtype=0), source="c", destination="a") is None
    assert inflight.add(request(replyTo=None), source="c", destination="a") is None
    assert inflight.add(request(corrId=None), source="c", destination="a") is None
    assert inflight.add(request(rtype=3), source="c", destination="a") is not None
    assert len(inflight) == 1


def test_replies_are_matched_on_the_json_rpc_id_when_it_differs_from_corr_id() -> None:
    inflight = InflightRequests()
    inflight.add(request("rpc-id-1", corrId="corr-1"), source="client", destination="agent")
    assert inflight.settle(reply("rpc-id-1", result="x"), source="agent")
    assert empty(inflight)


def test_a_stream_stays_until_its_end_marker() -> None:
    inflight = InflightRequests()
    inflight.add(request(rtype=4), source="client", destination="agent")
    assert not inflight.settle(reply(result=1), source="agent")
    assert not inflight.settle(reply(result=2), source="agent")
    assert inflight.settle(reply(), source="agent")
    assert empty(inflight)


def test_a_stream_can_be_settled_early_by_force() -> None:
    inflight = InflightRequests()
    inflight.add(request(rtype=4), source="client", destination="agent")
    settled = inflight.settle(reply(result=1), source="agent", force=True)
    assert settled is not None and settled.request_id == "env-r1"
    assert empty(inflight)


def test_an_error_or_a_nack_ends_a_stream_but_a_positive_ack_does_not() -> None:
    inflight = InflightRequests()
    inflight.add(request(rtype=4), source="client", destination="agent")
    assert inflight.settle(reply(error={"code": -32603, "message": "boom"}), source="agent")
    inflight.add(request(rtype=5), source="client", destination="agent")
    ack = {"to": REPLY_TO, "corrId": "r1", "frame": {"type": "DeliveryAck", "ok": True}}
    assert not inflight.settle(ack, source="agent")
    nack = {"to": REPLY_TO, "corrId": "r1", "frame": {"type": "DeliveryAck", "ok": False}}
    assert inflight.settle(nack, source="agent")
    assert empty(inflight)


def test_a_departed_destination_yields_its_unanswered_requests() -> None:
    inflight = InflightRequests()
    inflight.add(request("a"), source="client", destination="agent")
    inflight.add(request("b"), source="client", destination="agent")
    inflight.add(request("c"), source="client", destination="other")
    gone = inflight.pop_destination("agent")
    assert sorted(entry.request_id for entry in gone) == ["env-a", "env-b"]
    assert all(entry.reply_to == REPLY_TO and entry.to == "echo@fame.fabric" for entry in gone)
    assert inflight.pop_destination("agent") == []
    assert inflight.drop_source("client") == 1
    assert empty(inflight)


def test_a_departed_source_forgets_its_requests_silently() -> None:
    inflight = InflightRequests()
    inflight.add(request("a"), source="client", destination="agent")
    inflight.add(request("b"), source="other", destination="agent")
    assert inflight.drop_source("client") == 1
    assert [entry.source for entry in inflight.pop_destination("agent")] == ["other"]
    assert empty(inflight)


def test_requests_expire_after_the_ttl_or_their_meta_deadline() -> None:
    clock = FakeClock()
    start = clock.now
    inflight = InflightRequests(
        ttl=600, clock=clock, wall_clock=lambda: 1_700_000_000.0 + clock.now - start
    )
    inflight.add(request("plain"), source="c", destination="a")
    soon = {"deadline": 1_700_000_010.0}
    inflight.add(request("soon", meta=soon), source="c", destination="a")
    soon_ms = {"deadline": 1_700_000_010_000}
    inflight.add(request("soon-ms", meta=soon_ms), source="c", destination="a")
    soon_iso = {"deadline": "2023-11-14T22:13:30Z"}
    inflight.add(request("iso", meta=soon_iso), source="c", destination="a")
    inflight.add(request("junk", meta={"deadline": "tomorrow"}), source="c", destination="a")
    clock.now += 30
    assert sorted(e.corr_id for e in inflight.expire()) == ["iso", "soon", "soon-ms"]
    clock.now += 600
    assert sorted(e.corr_id for e in inflight.expire()) == ["junk", "plain"]
    assert empty(inflight)


def test_the_oldest_requests_are_forgotten_beyond_the_bound() -> None:
    inflight = InflightRequests(max_entries=3)
    for name in ("a", "b", "c", "d"):
        inflight.add(request(name), source="c", destination="agent")
    assert len(inflight) == 3
    assert sorted(e.corr_id for e in inflight.pop_destination("agent")) == ["b", "c", "d"]
    assert empty(inflight)


def test_a_repeated_request_replaces_its_entry() -> None:
    inflight = InflightRequests()
    key = inflight.add(request(), source="c", destination="a")
    assert inflight.add(request(), source="c", destination="a") == key
    assert len(inflight) == 1
    assert inflight.discard(key) is not None  # type: ignore[arg-type]
    assert inflight.discard(key) is None  # type: ignore[arg-type]
    assert empty(inflight)


def test_a_meta_deadline_beyond_the_ttl_is_honoured_up_to_an_hour() -> None:
    clock = FakeClock()
    start = clock.now
    inflight = InflightRequests(
        ttl=600, clock=clock, wall_clock=lambda: 1_700_000_000.0 + clock.now - start
    )
    inflight.add(request("long", meta={"deadline": 1_700_001_200.0}), source="c", destination="a")
    inflight.add(request("huge", meta={"deadline": 1_800_000_000.0}), source="c", destination="a")
    clock.now += 700
    assert inflight.expire() == []
    clock.now += 502
    assert [e.corr_id for e in inflight.expire()] == ["long"]
    clock.now += 3600
    assert [e.corr_id for e in inflight.expire()] == ["huge"]


def test_a_flood_from_one_node_evicts_only_its_own_entries() -> None:
    inflight = InflightRequests(max_entries=10, max_per_source=4)
    inflight.add(request("victim"), source="victim", destination="agent")
    for n in range(100):
        inflight.add(request(f"f{n}"), source="flooder", destination="agent")
    entries = inflight.pop_destination("agent")
    assert sorted(e.corr_id for e in entries if e.source == "flooder") == [
        "f96",
        "f97",
        "f98",
        "f99",
    ]
    assert [e.corr_id for e in entries if e.source == "victim"] == ["victim"]


def test_a_full_table_refuses_to_track_rather_than_evict_another_nodes_entry() -> None:
    inflight = InflightRequests(max_entries=2)
    inflight.add(request("a"), source="one", destination="agent")
    inflight.add(request("b"), source="one", destination="agent")
    assert inflight.add(request("c"), source="two", destination="agent") is None
    assert len(inflight) == 2


def test_answers_and_sent_by_know_who_received_and_who_sent_a_request() -> None:
    inflight = InflightRequests()
    inflight.add(request("r1"), source="client", destination="agent")
    assert inflight.answers(reply("r1"), source="agent")
    assert not inflight.answers(reply("r1"), source="rogue")
    assert inflight.sent_by("client", "env-r1")
    assert not inflight.sent_by("rogue", "env-r1")
    inflight.drop_source("client")
    assert not inflight.sent_by("client", "env-r1") and empty(inflight)
