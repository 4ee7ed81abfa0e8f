"""No log floods: identical warnings beyond a burst are counted instead of written.

A peer that sends the same bad frame 100,000 times must not write 100,000
warnings. :class:`RepeatFilter` lets the first ``burst`` records of one
message (same logger, level and text) through in each ``window`` of
seconds, drops the rest, and appends the count of what it dropped to the
next one it lets through::

    node x sent a malformed frame (… and 9,999 more in the last 10 s)

Only WARNING and above are limited; INFO and DEBUG pass untouched.

=========================  ============================  =======
Setting                    Environment variable          Default
=========================  ============================  =======
``burst``                  ``FAME_LOG_REPEAT_BURST``     10
``window``                 ``FAME_LOG_REPEAT_WINDOW``    10 s
=========================  ============================  =======

The filter works on any handler (plain text, JSON): :func:`install_repeat_filter`
adds one to every handler of the root logger, which is what the ``fame``
commands do once they have configured logging.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from famefabric.errors import ConfigurationError

BURST_ENV = "FAME_LOG_REPEAT_BURST"
WINDOW_ENV = "FAME_LOG_REPEAT_WINDOW"
DEFAULT_BURST = 10
DEFAULT_WINDOW = 10.0
MAX_TRACKED = 4096
"""Distinct messages remembered at once; the least recently seen is forgotten first."""

_Key = tuple[str, int, str]


@dataclass(slots=True)
class _Seen:
    window_start: float
    passed: int
    dropped: int


class RepeatFilter(logging.Filter):
    """Let ``burst`` identical warnings through per ``window`` seconds; count the rest.

    Args:
        burst: records of one message let through per window.
        window: the window's length in seconds.
        clock: monotonic seconds; injectable for tests.

    Raises:
        ConfigurationError: ``burst`` or ``window`` is not positive.
    """

    def __init__(
        self,
        *,
        burst: int = DEFAULT_BURST,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigurationError(f"{BURST_ENV} must be a positive integer, got {burst!r}")
        if not window > 0:
            raise ConfigurationError(f"{WINDOW_ENV} must be a positive number, got {window!r}")
        self.burst = burst
        self.window = window
        self._clock = clock
        self._seen: OrderedDict[_Key, _Seen] = OrderedDict()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RepeatFilter:
        """Return a filter with ``FAME_LOG_REPEAT_BURST`` / ``FAME_LOG_REPEAT_WINDOW``.

        Raises:
            ConfigurationError: a value is not a positive number.
        """
        env = os.environ if environ is None else environ
        burst, window = DEFAULT_BURST, DEFAULT_WINDOW
        try:
            if (text := env.get(BURST_ENV, "").strip()) != "":
                burst = int(text)
            if (text := env.get(WINDOW_ENV, "").strip()) != "":
                window = float(text)
        except ValueError:
            raise ConfigurationError(
                f"{BURST_ENV} must be a whole number and {WINDOW_ENV} a number of seconds, "
                f"got {env.get(BURST_ENV)!r} and {env.get(WINDOW_ENV)!r}"
            ) from None
        return cls(burst=burst, window=window)

    def filter(self, record: logging.LogRecord) -> bool:
        """Tell whether ``record`` is written; add the dropped count to the first of a window."""
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(now, 1, 0)
            if len(self._seen) > MAX_TRACKED:
                self._seen.popitem(last=False)
            return True
        self._seen.move_to_end(key)
        if now - seen.window_start >= self.window:
            dropped, elapsed = seen.dropped, now - seen.window_start
            seen.window_start, seen.passed, seen.dropped = now, 1, 0
            if dropped:
                record.msg = f"{key[2]} (… and {dropped:,} more in the last {elapsed:.0f} s)"
                record.args = None
            return True
        if seen.passed < self.burst:
            seen.passed += 1
            return True
        seen.dropped += 1
        return False


def install_repeat_filter(
    handlers: Iterable[logging.Handler] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> RepeatFilter:
    """Add one :class:`RepeatFilter` (from the environment) to ``handlers``.

    Args:
        handlers: where to add it (default: every handler of the root logger).
        environ: where the settings come from (default: ``os.environ``).

    Returns:
        The filter, shared by all those handlers.

    Raises:
        ConfigurationError: a setting is not a positive number.
    """
    repeat = RepeatFilter.from_env(environ)
    targets = logging.getLogger().handlers if handlers is None else handlers
    for handler in targets:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(repeat)
    return repeat
