"""Reconnect delays and the retry classifier: pure, no sleeping."""

from __future__ import annotations

from itertools import islice

import pytest

from famefabric.errors import (
    AttachRefused,
    ConnectionClosed,
    LocalProtocolError,
    OperationTimeout,
)
from famefabric.node.backoff import backoff_delays, is_retryable


def test_delays_double_from_one_second_up_to_the_cap_plus_jitter() -> None:
    low = list(islice(backoff_delays(uniform=lambda a, b: a), 8))
    high = list(islice(backoff_delays(uniform=lambda a, b: b), 8))
    assert low == [1, 2, 4, 8, 16, 30, 30, 30]
    assert high == [2, 4, 8, 16, 32, 60, 60, 60]


def test_jitter_is_drawn_between_zero_and_the_base_delay() -> None:
    asked: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        asked.append((a, b))
        return (a + b) / 2

    assert list(islice(backoff_delays(uniform=uniform), 3)) == [1.5, 3.0, 6.0]
    assert asked == [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0)]


def test_default_delays_stay_within_their_bounds() -> None:
    for base, delay in zip([1, 2, 4, 8, 16, 30, 30], backoff_delays(), strict=False):
        assert base <= delay <= 2 * base


def test_custom_initial_delay_and_cap() -> None:
    delays = backoff_delays(initial=0.1, cap=0.4, uniform=lambda a, b: a)
    assert list(islice(delays, 5)) == [0.1, 0.2, 0.4, 0.4, 0.4]


def refused(status: int) -> AttachRefused:
    return AttachRefused(f"server refused with HTTP {status}", status=status, reason="no")


@pytest.mark.parametrize(
    ("error", "first_connect", "after_attach"),
    [
        (ConnectionClosed("cannot connect: connection refused"), True, True),
        (ConnectionClosed("closed", code=1000, reason="normal closure"), True, True),
        (ConnectionClosed("no NodeAttachAck within 10 s"), True, True),
        (refused(401), False, False),
        (refused(403), False, False),
        (refused(400), False, True),
        (refused(503), True, True),
        (refused(404), True, True),
        (refused(429), True, True),
        (refused(502), True, True),
        (AttachRefused("refused", reason="system id mismatch"), False, True),
        (ConnectionRefusedError("refused"), True, True),
        (TimeoutError(), True, True),
        (OperationTimeout("no reply"), False, False),
        (LocalProtocolError("bad"), False, False),
        (ValueError("bug"), False, False),
    ],
)
def test_retry_classifier(error: BaseException, first_connect: bool, after_attach: bool) -> None:
    assert is_retryable(error, has_attached=False) is first_connect
    assert is_retryable(error, has_attached=True) is after_attach


def test_a_credential_refusal_is_final_unless_a_new_token_can_be_fetched() -> None:
    for status in (401, 403):
        for has_attached in (False, True):
            assert not is_retryable(refused(status), has_attached=has_attached)
            assert is_retryable(refused(status), has_attached=has_attached, can_renew_token=True)
    # Other refusals do not depend on the token.
    assert not is_retryable(refused(400), has_attached=False, can_renew_token=True)


def test_old_import_path_still_names_the_same_class() -> None:
    from famefabric.node import AttachRefused as from_node
    from famefabric.node.backoff import AttachRefused as from_backoff

    assert from_node is from_backoff is AttachRefused
    assert issubclass(AttachRefused, ConnectionClosed)
