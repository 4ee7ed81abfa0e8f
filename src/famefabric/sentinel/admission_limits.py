"""How many connections the sentinel takes, and how many wait to be accepted.

=====================  ===============================  =================================
Setting                Environment variable / flag      Default
=====================  ===============================  =================================
``max_connections``    ``FAME_SENTINEL_MAX_CONNECTIONS``  10000
                       ``--max-connections``
``backlog``            ``FAME_SENTINEL_BACKLOG``          the system maximum
                       ``--backlog``                      (``/proc/sys/net/core/somaxconn``)
=====================  ===============================  =================================

- ``max_connections``: WebSocket attaches open at once. A handshake beyond
  it is refused with HTTP 503, a ``Retry-After`` header and a one-line
  reason; nodes already attached are not touched, and the health endpoints
  always answer (they are not attaches). The sentinel raises its own
  open-file limit to fit ``max_connections`` plus a reserve for health
  checks and its own files; where the system will not allow that, it takes
  fewer connections and says so at start-up.
- ``backlog``: connections the kernel completes and queues before the
  sentinel accepts them. Too small a queue makes the kernel drop the SYNs
  of a burst of attaches, and those nodes wait a second or more for the
  retransmission.

:class:`ConnectionGate` is the count itself: :meth:`ConnectionGate.admit`
when a handshake is about to be accepted, :meth:`ConnectionGate.release`
when that connection ends. It is pure bookkeeping; the listener
(:mod:`famefabric.sentinel.server`) asks it and answers with
:func:`service_unavailable`.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Generic, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from famefabric.errors import ConfigurationError

log = logging.getLogger("famefabric.sentinel")

DEFAULT_MAX_CONNECTIONS = 10_000
SOMAXCONN_PATH = Path("/proc/sys/net/core/somaxconn")
RETRY_AFTER_SECONDS = 5
"""What a refused node is told to wait (``Retry-After``) before trying again."""
FILE_RESERVE = 256
"""Open files kept beyond ``max_connections``: health checks, refused handshakes, logs."""

MAX_CONNECTIONS_ENV = "FAME_SENTINEL_MAX_CONNECTIONS"
BACKLOG_ENV = "FAME_SENTINEL_BACKLOG"


def system_backlog(path: Path = SOMAXCONN_PATH) -> int:
    """Return the largest listen backlog the system allows.

    Reads ``/proc/sys/net/core/somaxconn`` (Linux); elsewhere, or when it
    cannot be read, :data:`socket.SOMAXCONN`.
    """
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return socket.SOMAXCONN
    return value if value > 0 else socket.SOMAXCONN


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The listener's limits; see the module docstring.

    Raises:
        ConfigurationError: a value is not a positive integer.
    """

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    backlog: int = field(default_factory=system_backlog)

    def __post_init__(self) -> None:
        for name, value in (("max_connections", self.max_connections), ("backlog", self.backlog)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"sentinel {name} must be a positive integer, got {value!r}"
                )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        max_connections: int | None = None,
        backlog: int | None = None,
    ) -> AdmissionLimits:
        """Return the limits from flags (given here), else the environment, else defaults.

        Raises:
            ConfigurationError: a value is not a positive integer.
        """
        env = os.environ if environ is None else environ
        if max_connections is None:
            max_connections = _int_env(env, MAX_CONNECTIONS_ENV)
        if backlog is None:
            backlog = _int_env(env, BACKLOG_ENV)
        values: dict[str, int] = {}
        if max_connections is not None:
            values["max_connections"] = max_connections
        if backlog is not None:
            values["backlog"] = backlog
        return cls(**values)


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(
            f"{name}={text!r} is not a whole number; unset it for the default"
        ) from None


def fit_open_files(
    max_connections: int,
    *,
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
    setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit,
) -> int:
    """Raise this process's open-file limit for ``max_connections``; return what fits.

    Each connection is one open file. The soft limit is raised (up to the
    hard one) to ``max_connections`` + :data:`FILE_RESERVE`; when that is
    not allowed, the connections that fit beside the reserve are returned
    (at least 1) and a warning says so.
    """
    wanted = max_connections + FILE_RESERVE
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    if soft >= wanted:
        return max_connections
    fits = max(1, soft - FILE_RESERVE)
    log.warning(
        "the open-file limit (%d) leaves room for %d connections, not %d; "
        "raise 'ulimit -n' to take more",
        soft,
        fits,
        max_connections,
    )
    return fits


_C = TypeVar("_C")


class ConnectionGate(Generic[_C]):
    """Counts open connections against a limit.

    Args:
        limit: the most connections admitted at once.
        is_closed: tells whether an admitted connection has ended without
            being released (a handshake that failed after admission); such
            ones are forgotten when the gate is full.
    """

    def __init__(self, limit: int, *, is_closed: Callable[[_C], bool]) -> None:
        self.limit = limit
        self._is_closed = is_closed
        self._open: set[_C] = set()
        self.refused = 0
        """Handshakes refused since start."""

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, connection: _C) -> bool:
        """Count ``connection`` in and return True, or return False when full."""
        if len(self._open) >= self.limit:
            self._open = {c for c in self._open if not self._is_closed(c)}
            if len(self._open) >= self.limit:
                self.refused += 1
                return False
        self._open.add(connection)
        return True

    def release(self, connection: _C) -> None:
        """Count ``connection`` out (when it ends); harmless if it was not admitted."""
        self._open.discard(connection)


def service_unavailable(connection: ServerConnection, limit: int) -> Response:
    """Return the refusal of a handshake beyond the connection limit: 503 with a reason."""
    reason = (
        f"sentinel is at its limit of {limit} connections "
        f"({MAX_CONNECTIONS_ENV}); try again in {RETRY_AFTER_SECONDS} s\n"
    )
    response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, reason)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
