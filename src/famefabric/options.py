"""Checks for option values given as arguments: one message and one exception for each kind.

Constructors that take numbers (seconds, counts) validate them here, so the
same mistake gets the same :class:`~famefabric.errors.ConfigurationError`
wherever it is made. (Environment variables are read and checked by
:mod:`famefabric.settings`.)
"""

from __future__ import annotations

import math

from famefabric.errors import ConfigurationError


def positive_seconds(name: str, value: float) -> float:
    """Return ``value`` if it is a finite number of seconds above zero.

    Raises:
        ConfigurationError: it is not; the message names ``name`` and the value.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise ConfigurationError(f"{name}={value!r} must be a positive number of seconds")
    return float(value)


def optional_positive_seconds(name: str, value: float | None) -> float | None:
    """Like :func:`positive_seconds`, but ``None`` (no limit) is allowed too.

    Raises:
        ConfigurationError: the value is neither ``None`` nor positive seconds.
    """
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise ConfigurationError(f"{name}={value!r} must be a positive number of seconds, or unset")
    return float(value)


def count(name: str, value: int, *, minimum: int = 0) -> int:
    """Return ``value`` if it is an integer of at least ``minimum``.

    Raises:
        ConfigurationError: it is not; the message names ``name``, the value and the minimum.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name}={value!r} must be an integer")
    if value < minimum:
        what = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        raise ConfigurationError(f"{name}={value!r} {what}")
    return value
