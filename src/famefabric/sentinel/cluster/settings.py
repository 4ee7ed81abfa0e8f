"""How a sentinel joins a cluster: NATS servers, credentials, timing (docs/CLUSTER.md).

Read once at start-up by :meth:`ClusterSettings.from_env`. Secrets come only
from the environment or from files named there, never from the command line
or the URL: a URL with ``user:password@`` is refused, so that no password
ends up in ``ps`` output, shell history or a log line that prints the URL.

=====================================  ======================================================
Variable                               Meaning
=====================================  ======================================================
``FAME_CLUSTER_URL``                   NATS servers, comma-separated ``nats://HOST:PORT``
                                       (``tls://`` for TLS); the ``--cluster`` flag wins
``FAME_CLUSTER_CREDS``                 a NATS credentials file (JWT + NKey seed)
``FAME_CLUSTER_USER``                  user name (with ``FAME_CLUSTER_PASSWORD``)
``FAME_CLUSTER_PASSWORD``              its password (``FAME_CLUSTER_PASSWORD_FILE``: read from
                                       a file)
``FAME_CLUSTER_TOKEN``                 a NATS token (``FAME_CLUSTER_TOKEN_FILE``: from a file)
``FAME_CLUSTER_CA``                    a CA bundle (PEM) to verify the NATS servers' TLS
                                       certificates; implies TLS
``FAME_CLUSTER_PREFIX``                the subject prefix the cluster uses (default ``fame``)
``FAME_CLUSTER_PEER_TIMEOUT``          seconds without a heartbeat after which a peer sentinel
                                       counts as gone (default 2)
=====================================  ======================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from famefabric.errors import ConfigurationError
from famefabric.settings import env_float

DEFAULT_PREFIX = "fame"
DEFAULT_PEER_TIMEOUT = 2.0
"""Seconds without a heartbeat before a peer's bindings are dropped."""
HEARTBEAT_FRACTION = 4
"""Heartbeats per peer timeout: a peer must miss this many before it counts as gone."""
_SCHEMES = ("nats", "tls")
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Where the cluster's NATS servers are and how to authenticate to them.

    Attributes:
        servers: NATS server URLs, tried in order (the client reconnects to any).
        prefix: the first subject tokens of every subject the cluster uses.
        creds_file: a NATS ``.creds`` file.
        user: a NATS user name.
        password: its password (kept out of ``repr``).
        token: a NATS token (kept out of ``repr``).
        ca_file: a CA bundle to verify the servers' TLS certificates.
        peer_timeout: seconds without a heartbeat before a peer counts as gone.
    """

    servers: tuple[str, ...]
    prefix: str = DEFAULT_PREFIX
    creds_file: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    peer_timeout: float = DEFAULT_PEER_TIMEOUT

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigurationError("a cluster needs at least one NATS server URL")
        if not _PREFIX.fullmatch(self.prefix):
            raise ConfigurationError(
                f"FAME_CLUSTER_PREFIX={self.prefix!r} is not a NATS subject prefix: "
                "use letters, digits, '_', '-' and '.' between tokens"
            )
        if self.password is not None and self.user is None:
            raise ConfigurationError("FAME_CLUSTER_PASSWORD is set but FAME_CLUSTER_USER is not")
        if self.peer_timeout < 0.2:
            raise ConfigurationError(
                f"FAME_CLUSTER_PEER_TIMEOUT={self.peer_timeout:g} is too short: use at least 0.2 s"
            )

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between this sentinel's heartbeats."""
        return self.peer_timeout / HEARTBEAT_FRACTION

    @property
    def tls(self) -> bool:
        """Whether the connection must use TLS (a ``tls://`` URL or a CA)."""
        return self.ca_file is not None or any(s.startswith("tls://") for s in self.servers)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, url: str | None = None
    ) -> ClusterSettings | None:
        """Read the cluster settings; None when no NATS URL is configured (no cluster).

        Args:
            env: the environment (default: the process's).
            url: the ``--cluster`` flag's value; it wins over ``FAME_CLUSTER_URL``.

        Raises:
            ConfigurationError: a value is invalid; the message names the variable.
        """
        env = os.environ if env is None else env
        raw = url if url is not None else env.get("FAME_CLUSTER_URL", "")
        if not raw.strip():
            return None
        key = "--cluster" if url is not None else "FAME_CLUSTER_URL"
        servers = tuple(parse_servers(key, raw))
        creds = env.get("FAME_CLUSTER_CREDS") or None
        if creds is not None and not Path(creds).is_file():
            raise ConfigurationError(f"FAME_CLUSTER_CREDS={creds!r} is not a readable file")
        ca_file = env.get("FAME_CLUSTER_CA") or None
        if ca_file is not None and not Path(ca_file).is_file():
            raise ConfigurationError(f"FAME_CLUSTER_CA={ca_file!r} is not a readable file")
        return cls(
            servers=servers,
            prefix=env.get("FAME_CLUSTER_PREFIX") or DEFAULT_PREFIX,
            creds_file=creds,
            user=env.get("FAME_CLUSTER_USER") or None,
            password=_secret(env, "FAME_CLUSTER_PASSWORD"),
            token=_secret(env, "FAME_CLUSTER_TOKEN"),
            ca_file=ca_file,
            peer_timeout=env_float(
                env, "FAME_CLUSTER_PEER_TIMEOUT", DEFAULT_PEER_TIMEOUT, minimum=0.2
            ),
        )


def parse_servers(key: str, raw: str) -> list[str]:
    """Split and check a comma-separated list of NATS URLs.

    Raises:
        ConfigurationError: a URL has another scheme, no host, or embedded credentials.
    """
    servers = []
    for part in raw.split(","):
        text = part.strip()
        if not text:
            continue
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"{key}: {text!r} is not a valid URL ({exc})") from None
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ConfigurationError(
                f"{key}: {text!r} is not a NATS URL: expected nats://HOST:PORT or tls://HOST:PORT"
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(
                f"{key}: a NATS URL must not carry credentials; set FAME_CLUSTER_USER and "
                "FAME_CLUSTER_PASSWORD, FAME_CLUSTER_TOKEN or FAME_CLUSTER_CREDS instead"
            )
        servers.append(f"{parts.scheme}://{parts.hostname}:{port or 4222}")
    if not servers:
        raise ConfigurationError(f"{key}={raw!r} names no NATS server")
    return servers


def _secret(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(key) or None
    path = env.get(key + "_FILE") or None
    if value is not None and path is not None:
        raise ConfigurationError(f"set {key} or {key}_FILE, not both")
    if path is None:
        return value
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"{key}_FILE={path!r} cannot be read: {exc.strerror}") from None
    if not text:
        raise ConfigurationError(f"{key}_FILE={path!r} is empty")
    return text
