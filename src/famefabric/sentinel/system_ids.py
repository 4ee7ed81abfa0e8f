"""System ids as the sentinel checks and chooses them (PROTOCOL.md §5.9, §6.1).

A system id is one path segment of an address: the sentinel refuses a child
whose id is not one, and derives its own from the host name and port when
none is configured, so that it stays the same across restarts.
"""

from __future__ import annotations

import hashlib
import re
import socket

from famefabric.protocol.ids import ID_LENGTH, base62

_SYSTEM_ID = re.compile(r"[A-Za-z0-9._-]+")


def is_valid_system_id(text: str) -> bool:
    """Tell whether ``text`` can be a system id: one path segment of an address (§6.1)."""
    return bool(_SYSTEM_ID.fullmatch(text)) and text not in {".", ".."}


def default_sentinel_id(
    node_id: str | None = None, *, port: int = 8000, hostname: str | None = None
) -> str:
    """Return the sentinel's system id, stable across restarts (§5.9).

    Args:
        node_id: a configured id (e.g. from ``FAME_NODE_ID``); returned as is when given.
        port: the listening port, so that two sentinels on one host differ.
        hostname: the host name to derive from (default: this host's).

    Returns:
        ``node_id``, or 16 base62 characters derived from the host name and port.
    """
    if node_id:
        return node_id
    host = hostname if hostname is not None else socket.gethostname()
    digest = hashlib.sha256(f"famefabric-sentinel|{host}|{port}".encode()).digest()
    return base62(digest[:16]).rjust(ID_LENGTH, "0")[:ID_LENGTH]
