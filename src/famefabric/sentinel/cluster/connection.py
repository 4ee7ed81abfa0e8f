"""How a sentinel connects to the cluster's NATS servers (docs/CLUSTER.md).

The options of ``nats.connect``: every configured server, the sentinel's
name, the credentials and TLS of :class:`ClusterSettings`, quick reconnects,
and callbacks that log a lost and a regained connection.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from famefabric.sentinel.cluster.settings import ClusterSettings

log = logging.getLogger("famefabric.sentinel.cluster")

INITIAL_ATTEMPTS = 2
"""Retries per NATS server when joining, before the start-up fails."""


def connect_options(
    settings: ClusterSettings, sentinel_id: str, on_reconnected: Callable[[], Awaitable[None]]
) -> dict[str, Any]:
    """Return the keyword arguments of ``nats.connect`` for the sentinel ``sentinel_id``."""
    options: dict[str, Any] = {
        "servers": list(settings.servers),
        "name": f"fame-sentinel-{sentinel_id}",
        "connect_timeout": 2,
        "reconnect_time_wait": 0.25,
        "max_reconnect_attempts": INITIAL_ATTEMPTS,
        "no_echo": True,
        "error_cb": _on_error,
        "disconnected_cb": _on_disconnected,
        "reconnected_cb": on_reconnected,
    }
    if settings.user is not None:
        options["user"] = settings.user
        options["password"] = settings.password
    if settings.token is not None:
        options["token"] = settings.token
    if settings.creds_file is not None:
        options["user_credentials"] = settings.creds_file
    if settings.tls:
        options["tls"] = ssl.create_default_context(cafile=settings.ca_file)
    return options


async def _on_error(exc: Exception) -> None:
    log.warning("cluster: NATS error: %s", exc or type(exc).__name__)


async def _on_disconnected() -> None:
    log.warning("cluster: disconnected from NATS; reconnecting")
