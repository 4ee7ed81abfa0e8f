"""Settings of the fabric, read once at start-up from flags and the environment.

Nothing here runs at import time: :meth:`FabricSettings.from_env` is called by
the CLI and by :meth:`famefabric.fabric.FameFabric.create`. Each bad value
raises :class:`ConfigurationError` naming the variable, the value and what
was expected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from famefabric.errors import ConfigurationError
from famefabric.observability.logs import parse_levels

DEFAULT_ADMISSION_URL = "ws://localhost:8000/fame/v1/attach/ws/downstream"
DEFAULT_PORT = 8000

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(env: Mapping[str, str], key: str, default: bool = False) -> bool:
    """Read a boolean variable (true/false, 1/0, yes/no, on/off).

    Raises:
        ConfigurationError: the value is none of those.
    """
    raw = env.get(key)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{key}={raw!r} is not a boolean: expected true or false")


def env_int(env: Mapping[str, str], key: str, default: int, *, minimum: int | None = None) -> int:
    """Read an integer variable.

    Raises:
        ConfigurationError: the value is not an integer or is below ``minimum``.
    """
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"{key}={raw!r} must be at least {minimum}")
    return value


def env_float(env: Mapping[str, str], key: str, default: float, *, minimum: float = 0.0) -> float:
    """Read a number of seconds (or any non-negative float).

    Raises:
        ConfigurationError: the value is not a number or is below ``minimum``.
    """
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigurationError(f"{key}={raw!r} must be at least {minimum}")
    return value


def check_ws_url(key: str, url: str) -> str:
    """Validate a WebSocket URL setting.

    Raises:
        ConfigurationError: the URL is not ``ws://…`` or ``wss://…`` with a host.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(f"{key}={url!r} is not a valid URL: missing '://'")
    if scheme not in ("ws", "wss"):
        raise ConfigurationError(f"{key}={url!r} is not a valid URL: the scheme must be ws or wss")
    if not rest or rest.startswith("/"):
        raise ConfigurationError(f"{key}={url!r} is not a valid URL: missing host")
    return url.rstrip("/")


def check_ws_urls(key: str, value: str) -> str:
    """Validate one WebSocket URL or several, comma-separated (sentinels of one cluster).

    Raises:
        ConfigurationError: a URL is not ``ws://…`` or ``wss://…`` with a host.
    """
    parts = [part.strip() for part in value.split(",")]
    if len(parts) == 1:
        return check_ws_url(key, value)
    if not all(parts):
        raise ConfigurationError(f"{key}={value!r} has an empty URL between commas")
    return ",".join(check_ws_url(key, part) for part in parts)


@dataclass(frozen=True, slots=True)
class FabricSettings:
    """Everything a node or sentinel process reads from its environment.

    Attributes:
        admission_url: ``FAME_DIRECT_ADMISSION_URL``, the sentinel's attach URL (without the node id).
        node_id: ``FAME_NODE_ID``, a fixed system id (default: random per node process;
            for a sentinel, a stable id derived from host and port).
        show_envelopes: ``FAME_SHOW_ENVELOPES``, print every envelope to stderr.
        listener_port: ``FAME_LISTENER_PORT`` (or ``FAME_LISTENER_WEBSOCKET_PORT``), the sentinel's port.
        max_initial_attempts: ``FAME_SESSION_MAX_INITIAL_ATTEMPTS``, first-connect attempts (0 = forever).
        call_timeout: ``FAME_CALL_TIMEOUT``, default seconds a call waits for its answer.
        log_level: ``FAME_LOG_LEVEL``, the CLI's logging level, optionally with
            per-logger overrides (``info,famefabric.sentinel=debug``).
    """

    admission_url: str = DEFAULT_ADMISSION_URL
    node_id: str | None = None
    show_envelopes: bool = False
    listener_port: int = DEFAULT_PORT
    max_initial_attempts: int = 1
    call_timeout: float = 30.0
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FabricSettings:
        """Read the settings from ``env`` (default: the process environment).

        Raises:
            ConfigurationError: a variable has an invalid value; the message names it.
        """
        env = os.environ if env is None else env
        url = env.get("FAME_DIRECT_ADMISSION_URL") or DEFAULT_ADMISSION_URL
        port_key = (
            "FAME_LISTENER_PORT" if "FAME_LISTENER_PORT" in env else "FAME_LISTENER_WEBSOCKET_PORT"
        )
        log_level = (env.get("FAME_LOG_LEVEL") or "info").lower()
        parse_levels(log_level)  # a level, then optional logger=level overrides
        return cls(
            admission_url=check_ws_urls("FAME_DIRECT_ADMISSION_URL", url),
            node_id=env.get("FAME_NODE_ID") or None,
            show_envelopes=env_bool(env, "FAME_SHOW_ENVELOPES"),
            listener_port=env_int(env, port_key, DEFAULT_PORT, minimum=0),
            max_initial_attempts=env_int(env, "FAME_SESSION_MAX_INITIAL_ATTEMPTS", 1, minimum=0),
            call_timeout=env_float(env, "FAME_CALL_TIMEOUT", 30.0, minimum=0.001),
            log_level=log_level,
        )
