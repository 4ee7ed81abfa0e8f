"""Sentinel limits: defaults, environment overrides, refusal of nonsense."""

from __future__ import annotations

import pytest

from famefabric.errors import ConfigurationError
from famefabric.sentinel.limits import SentinelLimits
from famefabric.sentinel.outbound import OutboundQueue


def test_defaults_are_read_when_nothing_is_set() -> None:
    assert SentinelLimits.from_env({}) == SentinelLimits()


def test_each_field_has_its_environment_variable() -> None:
    limits = SentinelLimits.from_env(
        {
            "FAME_SENTINEL_OUTBOUND_MAX_BYTES": "1000",
            "FAME_SENTINEL_WRITE_DEADLINE": "2.5",
            "FAME_SENTINEL_MAX_INFLIGHT_PER_NODE": " 7 ",
            "FAME_SENTINEL_PENDING_MAX_MESSAGES": "",
        }
    )
    assert (limits.outbound_max_bytes, limits.write_deadline) == (1000, 2.5)
    assert limits.max_inflight_per_node == 7
    assert limits.pending_max_messages == SentinelLimits().pending_max_messages


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FAME_SENTINEL_OUTBOUND_MAX_BYTES", "lots", "is not a valid int"),
        ("FAME_SENTINEL_WRITE_DEADLINE", "0", "must be a positive number"),
        ("FAME_SENTINEL_MAX_ENVELOPE_BYTES", "-1", "must be a positive number"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SentinelLimits.from_env({name: value})


def test_the_outbound_queue_is_bounded_in_bytes_and_messages() -> None:
    queue = OutboundQueue(max_bytes=10, max_messages=2)
    woken: list[int] = []
    queue.wake = lambda: woken.append(len(queue))
    assert queue.offer(b"12345", now=1.0) and queue.offer(b"1234", now=1.0)
    assert not queue.offer(b"1", now=2.0)  # a third message
    assert queue.full_since == 2.0
    assert queue.take_all() == [b"12345", b"1234"] and queue.full_since is None
    assert not queue.offer(b"x" * 11, now=3.0)  # too many bytes
    assert woken == [1, 2]
    queue.offer(b"abc", now=4.0)
    assert queue.close() == 3 and not queue.offer(b"a", now=5.0) and len(queue) == 0
