"""When to retry a connection, and how long to wait first (PROTOCOL.md §5.7).

Both halves are pure so they can be tested without sleeping: the delays come
from a generator and retryability from a classifier over the exception. The
node's reconnect loop only asks them and sleeps.

Delays follow the reference node: before each retry wait ``d + uniform(0, d)``
seconds, ``d`` starting at 1 s and doubling up to a cap of 30 s. A fresh
generator is taken after every successful attach, which resets the delay.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator

from famefabric.errors import ConnectionClosed, FabricError

INITIAL_DELAY = 1.0
MAX_DELAY = 30.0

_HTTP_STATUS = re.compile(r"HTTP (\d{3})")

# Handshake statuses worth retrying even before the first attach: a reference
# sentinel answers 404 for a moment while it starts (§13); 408/429/5xx are
# transient by definition. Any other refusal (403 above all, §2.1) means the
# URL or the system id is wrong, and retrying cannot fix it.
_TRANSIENT_STATUSES = frozenset({404, 408, 425, 429})


class AttachRefused(ConnectionClosed):
    """The sentinel answered ``NodeAttachAck`` with ``ok: false`` (§4.2)."""


def backoff_delays(
    *,
    initial: float = INITIAL_DELAY,
    cap: float = MAX_DELAY,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Iterator[float]:
    """Yield the delays before successive retries: ``d + uniform(0, d)``, ``d`` doubling.

    Args:
        initial: the first ``d``, in seconds.
        cap: the largest ``d``; the jitter comes on top of it.
        uniform: the random source, ``uniform(a, b)`` as in :mod:`random`
            (inject a fixed one in tests).

    Returns:
        an endless iterator of delays in seconds.
    """
    delay = initial
    while True:
        yield delay + uniform(0.0, delay)
        delay = min(delay * 2.0, cap)


def http_status(error: BaseException) -> int | None:
    """Return the HTTP status of a refused WebSocket handshake, if ``error`` is one."""
    if not isinstance(error, ConnectionClosed):
        return None
    match = _HTTP_STATUS.fullmatch(error.reason or "")
    return int(match.group(1)) if match else None


def is_retryable(error: BaseException, *, has_attached: bool) -> bool:
    """Tell whether a failed connection attempt is worth retrying.

    Before the node has ever attached, a refusal (a 4xx handshake status
    other than the transient ones, or ``NodeAttachAck{ok: false}``) is final:
    it means the URL or the system id is wrong. Once the node has been
    attached, every connection failure is retried, because a restarting
    sentinel can refuse for a while (§13).

    Args:
        error: what the attempt raised.
        has_attached: whether this node was ever attached.

    Returns:
        True when the node should wait and try again.
    """
    if not isinstance(error, ConnectionClosed):
        # Timeouts and socket errors are transient; our own errors are not.
        return isinstance(error, OSError | TimeoutError) and not isinstance(error, FabricError)
    if has_attached:
        return True
    if isinstance(error, AttachRefused):
        return False
    status = http_status(error)
    if status is None:
        return True
    return status in _TRANSIENT_STATUSES or status >= 500
