"""The cluster's message formats: framed envelopes and heartbeats, and hostile input."""

from __future__ import annotations

import pytest

from famefabric.errors import ProtocolError
from famefabric.sentinel.cluster import wire


def test_a_hop_round_trips() -> None:
    data = wire.encode_hop("sentA", "node-1", None, b'{"frame":{}}')
    hop = wire.decode_hop(data)
    assert (hop.sentinel, hop.node, hop.target, hop.envelope) == (
        "sentA",
        "node-1",
        "",
        b'{"frame":{}}',
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"no header", b"a\tb\n{}", b"\tb\tc\n{}", b"a b\tc\td\n{}", b"a" * 600 + b"\t\t\n{}"],
)
def test_malformed_hops_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.decode_hop(data)


def test_heartbeats_round_trip_and_bad_ones_are_refused() -> None:
    assert wire.read_heartbeat(wire.heartbeat("s1", "i1", 7)) == ("s1", "i1", 7, False)
    assert wire.read_heartbeat(wire.heartbeat("s1", "i1", -1, bye=True))[3] is True
    for bad in (b"[]", b"{", b'{"id": "s1"}', b'{"id": "a b", "instance": "i", "version": 1}'):
        with pytest.raises(ProtocolError):
            wire.read_heartbeat(bad)


def test_subjects_live_under_the_prefix() -> None:
    subjects = wire.Subjects("acme.fame")
    assert subjects.inbox("s1") == "acme.fame.s.s1"
    assert subjects.view == "acme.fame.view"
    assert subjects.snapshot("s1") == "acme.fame.snap.s1"
