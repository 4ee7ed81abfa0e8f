"""Flow control: credit cadence, sequence stamping, bounds (PROTOCOL.md §9); ids; timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from famefabric.clock import format_timestamp, timestamp
from famefabric.protocol.flow import FlowState
from famefabric.protocol.frames import FLOW_RESET, FLOW_SYN
from famefabric.protocol.ids import new_id, source_id


def test_credit_is_due_after_every_24_envelopes_of_a_flow() -> None:
    flows = FlowState()
    due = [n for n in range(1, 73) if flows.count_received("f")]
    assert due == [24, 48, 72]


def test_flows_are_counted_separately() -> None:
    flows = FlowState()
    for _ in range(23):
        assert not flows.count_received("a")
        assert not flows.count_received("b")
    assert flows.count_received("a")
    assert flows.count_received("b")
    assert sorted(flows.received_flows()) == ["a", "b"]


def test_sequence_starts_at_zero_with_syn_per_flow() -> None:
    flows = FlowState()
    assert flows.stamp("f") == (0, FLOW_SYN)
    assert flows.stamp("f") == (1, 0)
    assert flows.stamp("g") == (0, FLOW_SYN)
    assert flows.stamp("f") == (2, 0)


def test_stamp_wire_fills_the_default_flow_and_keeps_a_reset_bit() -> None:
    flows = FlowState()
    wire: dict[str, object] = {"flowFlags": FLOW_RESET}
    flows.stamp_wire(wire, "default")
    assert wire == {"flowId": "default", "seqId": 0, "flowFlags": FLOW_SYN | FLOW_RESET}
    own: dict[str, object] = {"flowId": "mine", "flowFlags": 2}
    flows.stamp_wire(own, "default")
    assert own == {"flowId": "mine", "seqId": 0, "flowFlags": FLOW_SYN}


def test_flow_state_is_bounded_in_both_directions() -> None:
    flows = FlowState(max_flows=3)
    for n in range(10):
        flows.stamp(f"s{n}")
        flows.count_received(f"r{n}")
    assert flows.counts() == (3, 3)
    assert flows.received_flows() == ["r7", "r8", "r9"]
    flows.forget_flows(["s9", "unknown"])
    assert flows.counts() == (2, 3)


def test_source_id_matches_the_reference_for_a_captured_path() -> None:
    assert source_id("/K8Kb3WylQODnk0IQ") == "55zwetXvGHGZBo582i6bxA"
    assert source_id("/K8Kb3WylQODnk0IQ/DJ1VbdQa3tl4SJ7k") == "50YbUE9YYjPlzPK1PM20lV"


def test_ids_are_sixteen_base62_characters_and_distinct() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and i.isalnum() for i in ids)


def test_timestamp_is_utc_with_milliseconds() -> None:
    moment = datetime(2026, 11, 25, 0, 4, 15, 294999, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-11-25T00:04:15.294Z"
    shifted = moment.astimezone(timezone(timedelta(hours=2)))
    assert format_timestamp(shifted) == "2026-11-25T00:04:15.294Z"
    assert format_timestamp(moment.replace(tzinfo=None)) == "2026-11-25T00:04:15.294Z"


def test_clock_timestamp_has_the_wire_shape() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timestamp())
