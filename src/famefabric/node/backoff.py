"""When to retry a connection, and how long to wait first (PROTOCOL.md §5.7).

Both halves are pure so they can be tested without sleeping: the delays come
from a generator and retryability from a classifier over the exception (a
refused handshake carries its HTTP status in :class:`AttachRefused`). The
node's reconnect loop only asks them and sleeps.

Delays follow the reference node: before each retry wait ``d + uniform(0, d)``
seconds, ``d`` starting at 1 s and doubling up to a cap of 30 s. A fresh
generator is taken after every successful attach, which resets the delay.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from famefabric.errors import AttachRefused, ConnectionClosed, FabricError

__all__ = ["AttachRefused", "backoff_delays", "is_retryable"]

INITIAL_DELAY = 1.0
MAX_DELAY = 30.0

# Handshake statuses worth retrying even before the first attach: a reference
# sentinel answers 404 for a moment while it starts (§13); 408/429/5xx are
# transient by definition. Any other refusal means the URL or the system id
# is wrong, and retrying cannot fix it.
_TRANSIENT_STATUSES = frozenset({404, 408, 425, 429})

# The credentials were refused (no token, a bad or expired one, or one that
# does not allow this node): retrying with the same token cannot succeed, so
# these are final unless the node can fetch a new token.
_CREDENTIAL_STATUSES = frozenset({401, 403})


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


def is_retryable(
    error: BaseException, *, has_attached: bool, can_renew_token: bool = False
) -> bool:
    """Tell whether a failed connection attempt is worth retrying.

    * A handshake refused with 401 or 403 is final: the credentials were
      refused, and the same ones will be refused again. It is retried only
      when ``can_renew_token`` (the node gets its token from a provider that
      can fetch a new one).
    * Before the node has ever attached, any other refusal (a 4xx status
      other than the transient ones, or ``NodeAttachAck{ok: false}``) is
      final too: the URL or the system id is wrong.
    * Once the node has been attached, other failures are retried, because a
      restarting sentinel can refuse for a while (§13).

    Args:
        error: what the attempt raised.
        has_attached: whether this node was ever attached.
        can_renew_token: whether the next attempt would present a new token.

    Returns:
        True when the node should wait and try again.
    """
    if not isinstance(error, ConnectionClosed):
        # Timeouts and socket errors are transient; our own errors are not.
        return isinstance(error, OSError | TimeoutError) and not isinstance(error, FabricError)
    if not isinstance(error, AttachRefused):
        return True
    status = error.status
    if status in _CREDENTIAL_STATUSES:
        return can_renew_token
    if has_attached:
        return True
    if status is None:
        return False  # NodeAttachAck{ok: false}
    return status in _TRANSIENT_STATUSES or status >= 500
