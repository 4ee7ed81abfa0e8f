"""Reading the clock: envelope timestamps, the one RFC 3339 formatter.

Kept out of :mod:`famefabric.protocol`, which does no I/O and reads no clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

_second_prefix: tuple[int, str] = (-1, "")


def timestamp() -> str:
    """Return the current UTC time as RFC 3339 with milliseconds and a ``Z`` suffix.

    Every envelope carries one, so the date is formatted once per second and
    only the milliseconds per call.
    """
    global _second_prefix
    clock = time.time()
    second = int(clock)
    if _second_prefix[0] != second:
        _second_prefix = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
    return f"{_second_prefix[1]}{int((clock - second) * 1000):03d}Z"


def format_timestamp(moment: datetime) -> str:
    """Format a moment as RFC 3339 in UTC with milliseconds and a ``Z`` suffix.

    A naive ``moment`` is taken as UTC.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
