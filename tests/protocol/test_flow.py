"""Flow control: credit cadence and sequence stamping (PROTOCOL.md §9)."""

from __future__ import annotations

from famefabric.clock import timestamp
from famefabric.protocol.flow import CreditLedger, SequenceStamper
from famefabric.protocol.ids import format_timestamp, new_id, source_id


def test_credit_is_due_after_every_24_envelopes_of_a_flow() -> None:
    ledger = CreditLedger()
    due = [n for n in range(1, 73) if ledger.on_receive("f")]
    assert due == [24, 48, 72]


def test_flows_are_counted_separately() -> None:
    ledger = CreditLedger()
    for _ in range(23):
        assert not ledger.on_receive("a")
        assert not ledger.on_receive("b")
    assert ledger.on_receive("a")
    assert ledger.on_receive("b")


def test_sequence_starts_at_zero_with_syn_per_flow() -> None:
    stamper = SequenceStamper()
    assert stamper.stamp("f") == (0, 1)
    assert stamper.stamp("f") == (1, 0)
    assert stamper.stamp("g") == (0, 1)
    assert stamper.stamp("f") == (2, 0)


def test_source_id_matches_the_reference_for_a_captured_path() -> None:
    assert source_id("/K8Kb3WylQODnk0IQ") == "55zwetXvGHGZBo582i6bxA"
    assert source_id("/K8Kb3WylQODnk0IQ/DJ1VbdQa3tl4SJ7k") == "50YbUE9YYjPlzPK1PM20lV"


def test_ids_are_sixteen_base62_characters_and_distinct() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and i.isalnum() for i in ids)


def test_timestamp_is_utc_with_milliseconds() -> None:
    from datetime import UTC, datetime

    assert (
        format_timestamp(datetime(2026, 11, 25, 0, 4, 15, 294999, tzinfo=UTC))
        == "2026-11-25T00:04:15.294Z"
    )


def test_clock_timestamp_has_the_wire_shape() -> None:
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timestamp())
