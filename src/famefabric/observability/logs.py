"""Log output: plain text by default, one JSON object per line with ``FAME_LOG_FORMAT=json``.

:func:`configure_logging` installs one handler on the root logger. Its level
comes from the caller (a ``--log-level`` flag) or ``FAME_LOG_LEVEL``, which
may also set levels per logger: ``info,famefabric.sentinel=debug,openai=warning``.
Filters given to it (the repeat limiter of :mod:`famefabric.log_limits`, say)
sit on the handler, so they apply to every record whatever its format.

A JSON line holds ``time`` (RFC 3339 UTC), ``level``, ``logger`` and
``message``; ``trace_id`` and ``span_id`` when a traced operation logged it
(:mod:`famefabric.observability.tracing`); ``conversation_id`` while a chat
turn runs (:data:`conversation_id`); ``exception`` with the traceback when
there is one. Nothing else from the record is copied: arguments a caller
passed are formatted into the message by that caller, and no field ever
holds a credential or a message body the code did not put in the text.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

import orjson

from famefabric.clock import format_timestamp
from famefabric.errors import ConfigurationError
from famefabric.observability import tracing

FORMAT_SETTING = "FAME_LOG_FORMAT"
"""``text`` (the default) or ``json``."""
LEVEL_SETTING = "FAME_LOG_LEVEL"
"""A level, optionally followed by ``logger=level`` overrides, comma-separated."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY_LOGGERS = ("httpx", "httpcore", "openai")
"""Libraries that log every request at INFO: kept at WARNING unless overridden."""

_OURS = "_famefabric_handler"

conversation_id: ContextVar[str | None] = ContextVar("famefabric_conversation_id", default=None)
"""The conversation whose turn is running, added to JSON log lines."""


@contextmanager
def conversation(identifier: str) -> Iterator[None]:
    """Tag the log lines written inside the block with ``conversation_id``."""
    token = conversation_id.set(identifier)
    try:
        yield
    finally:
        conversation_id.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (no newline inside)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": format_timestamp(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = tracing.current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        conversation = conversation_id.get()
        if conversation is not None:
            line["conversation_id"] = conversation
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def parse_levels(spec: str, *, setting: str = LEVEL_SETTING) -> tuple[int | None, dict[str, int]]:
    """Parse ``info,famefabric.sentinel=debug`` into a root level and per-logger levels.

    Raises:
        ConfigurationError: a level is not a logging level name.
    """
    root: int | None = None
    overrides: dict[str, int] = {}
    for part in (piece.strip() for piece in spec.split(",")):
        if not part:
            continue
        name, sep, value = part.rpartition("=")
        level = logging.getLevelName(value.strip().upper())
        if not isinstance(level, int):
            raise ConfigurationError(
                f"{setting}={spec!r}: {value.strip()!r} is not a log level "
                "(expected debug, info, warning or error, optionally as logger=level)"
            )
        if sep:
            if not name.strip():
                raise ConfigurationError(f"{setting}={spec!r}: a logger name is missing before '='")
            overrides[name.strip()] = level
        else:
            root = level
    return root, overrides


def log_format(env: Mapping[str, str] | None = None) -> str:
    """Return ``text`` or ``json`` from ``FAME_LOG_FORMAT``.

    Raises:
        ConfigurationError: another value.
    """
    raw = (env if env is not None else os.environ).get(FORMAT_SETTING, "text")
    value = raw.strip().lower() or "text"
    if value not in ("text", "json"):
        raise ConfigurationError(f"{FORMAT_SETTING}={raw!r} is not valid: expected text or json")
    return value


def configure_logging(
    level: str | None = None,
    *,
    default: str = "info",
    filters: Sequence[logging.Filter] = (),
    stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    force: bool = False,
) -> logging.Handler | None:
    """Send log records to ``stream`` (stderr) as text or JSON lines; return the handler.

    Like :func:`logging.basicConfig`, it leaves logging alone (and returns
    None) when the root logger already has handlers that it did not install,
    unless ``force``: a program embedding famefabric keeps its own set-up.
    Calling it again replaces the handler it installed before.

    Args:
        level: a level or level spec from a flag; wins over ``FAME_LOG_LEVEL``.
        default: the root level when neither says.
        filters: added to the handler (e.g. a repeat-rate limiter).
        stream: where lines go (default: stderr).
        env: the environment (default: ``os.environ``).

    Raises:
        ConfigurationError: a bad ``FAME_LOG_FORMAT`` or level.
    """
    env = env if env is not None else os.environ
    fmt = log_format(env)
    root_level, overrides = parse_levels(default)
    env_spec = env.get(LEVEL_SETTING, "")
    if env_spec.strip():
        env_root, env_overrides = parse_levels(env_spec)
        root_level = env_root if env_root is not None else root_level
        overrides |= env_overrides
    if level:
        flag_root, flag_overrides = parse_levels(level, setting="--log-level")
        root_level = flag_root if flag_root is not None else root_level
        overrides |= flag_overrides
    root = logging.getLogger()
    if not force and any(not getattr(h, _OURS, False) for h in root.handlers):
        return None
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _OURS, True)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    for log_filter in filters:
        handler.addFilter(log_filter)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(root_level if root_level is not None else logging.INFO)
    for noisy in NOISY_LOGGERS:
        if noisy not in overrides:
            logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for name, value in overrides.items():
        logging.getLogger(name).setLevel(value)
    return handler
