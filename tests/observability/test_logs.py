"""``FAME_LOG_FORMAT`` and ``FAME_LOG_LEVEL``: JSON lines, per-logger levels, filters on the handler."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from famefabric.errors import ConfigurationError
from famefabric.observability.logs import configure_logging, conversation, parse_levels


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("famefabric.sentinel").setLevel(logging.NOTSET)


def test_json_lines_carry_time_level_logger_message_and_the_conversation() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out, env={"FAME_LOG_FORMAT": "json"}, force=True)
    log = logging.getLogger("famefabric.test")
    log.info("turn %d done", 3)
    with conversation("conv42"):
        log.warning("slow store")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    log.debug("not shown at info")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["turn 3 done", "slow store", "failed"]
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "famefabric.test"
    assert lines[0]["time"].endswith("Z") and "T" in lines[0]["time"]
    assert "conversation_id" not in lines[0]
    assert lines[1]["conversation_id"] == "conv42"
    assert "ValueError: boom" in lines[2]["exception"]
    assert "trace_id" not in lines[0]  # tracing is off in this process


def test_text_is_the_default_and_levels_can_be_set_per_logger() -> None:
    out = io.StringIO()
    env = {"FAME_LOG_LEVEL": "warning,famefabric.sentinel=debug"}
    configure_logging(None, stream=out, env=env, force=True)
    logging.getLogger("famefabric.sentinel").debug("routing detail")
    logging.getLogger("famefabric.chat").info("hidden")
    logging.getLogger("famefabric.chat").warning("shown")
    text = out.getvalue()
    assert "DEBUG famefabric.sentinel: routing detail" in text
    assert "hidden" not in text and "WARNING famefabric.chat: shown" in text


def test_filters_given_apply_to_every_record() -> None:
    class DropSecrets(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "drop me" not in record.getMessage()

    out = io.StringIO()
    configure_logging(
        "info", stream=out, filters=[DropSecrets()], env={"FAME_LOG_FORMAT": "json"}, force=True
    )
    logging.getLogger("x").info("keep me")
    logging.getLogger("x").info("drop me")
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["keep me"]


def test_bad_settings_say_what_was_wrong() -> None:
    with pytest.raises(ConfigurationError, match="FAME_LOG_FORMAT='xml'"):
        configure_logging("info", env={"FAME_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigurationError, match="'loud' is not a log level"):
        parse_levels("info,famefabric=loud")
    with pytest.raises(ConfigurationError, match="logger name is missing"):
        parse_levels("=debug")
    assert parse_levels("INFO, a.b=debug") == (logging.INFO, {"a.b": logging.DEBUG})
