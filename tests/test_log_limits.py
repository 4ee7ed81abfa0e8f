"""The repeat filter: identical warnings beyond a burst are counted, not written."""

from __future__ import annotations

import io
import logging

import pytest

from famefabric.errors import ConfigurationError
from famefabric.log_limits import RepeatFilter, install_repeat_filter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger() -> logging.Logger:
    logger = logging.getLogger("famefabric.test_log_limits")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def _capture(logger: logging.Logger, repeat: RepeatFilter) -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(repeat)
    logger.handlers[:] = [handler]
    return stream


def test_a_flood_of_one_warning_is_cut_to_the_burst_then_counted(logger: logging.Logger) -> None:
    clock = Clock()
    stream = _capture(logger, RepeatFilter(burst=10, window=10.0, clock=clock))
    for _ in range(10_009):
        logger.warning("node %s sent a malformed frame", "x")
    logger.warning("node %s sent a malformed frame", "y")  # another message: its own count
    assert stream.getvalue().splitlines() == ["node x sent a malformed frame"] * 10 + [
        "node y sent a malformed frame"
    ]
    clock.now += 10.0
    logger.warning("node %s sent a malformed frame", "x")
    assert stream.getvalue().splitlines()[-1] == (
        "node x sent a malformed frame (… and 9,999 more in the last 10 s)"
    )
    logger.warning("node %s sent a malformed frame", "x")  # a new window: burst again
    assert stream.getvalue().splitlines()[-1] == "node x sent a malformed frame"


def test_info_and_debug_are_never_limited(logger: logging.Logger) -> None:
    stream = _capture(logger, RepeatFilter(burst=1, window=60.0, clock=Clock()))
    for _ in range(5):
        logger.info("node a bound echo@fame.fabric")
    assert len(stream.getvalue().splitlines()) == 5


def test_settings_come_from_the_environment_and_bad_ones_are_named() -> None:
    repeat = RepeatFilter.from_env({"FAME_LOG_REPEAT_BURST": "3", "FAME_LOG_REPEAT_WINDOW": "2.5"})
    assert (repeat.burst, repeat.window) == (3, 2.5)
    assert (RepeatFilter.from_env({}).burst, RepeatFilter.from_env({}).window) == (10, 10.0)
    with pytest.raises(ConfigurationError, match="FAME_LOG_REPEAT_BURST must be a whole"):
        RepeatFilter.from_env({"FAME_LOG_REPEAT_BURST": "many"})
    with pytest.raises(ConfigurationError, match="FAME_LOG_REPEAT_WINDOW must be a positive"):
        RepeatFilter.from_env({"FAME_LOG_REPEAT_WINDOW": "0"})


def test_install_adds_one_shared_filter_to_each_handler_once() -> None:
    handlers = [logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())]
    repeat = install_repeat_filter(handlers, environ={})
    install_repeat_filter(handlers, environ={})
    assert [h.filters for h in handlers] == [[repeat], [repeat]]
