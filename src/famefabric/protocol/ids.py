"""Identifiers as the wire spells them (PROTOCOL.md §3.2).

Envelope ids, correlation ids, JSON-RPC ids, flow ids, instance ids and
routing epochs are 16 characters from ``[0-9a-zA-Z]``. Receivers treat every
id as an opaque string. The source id (``sid``) is the base62 form of the
first 16 bytes of the SHA-256 of the sender's physical path.
"""

from __future__ import annotations

import hashlib
import os
import random
from datetime import UTC, datetime
from functools import lru_cache

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ID_LENGTH = 16

# Ids only need to be unique, not secret (the open profile signs nothing), so a
# fast generator seeded from the OS is enough; it is reseeded after fork.
_random = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def new_id() -> str:
    """Return a fresh 16-character id."""
    return "".join(_random.choices(ALPHABET, k=ID_LENGTH))


def base62(data: bytes) -> str:
    """Encode bytes as a big-endian base62 number."""
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits)) or "0"


@lru_cache(maxsize=4096)
def source_id(physical_path: str) -> str:
    """Return the ``sid`` of a node at ``physical_path`` (informational on the wire)."""
    return base62(hashlib.sha256(physical_path.encode()).digest()[:16])


def timestamp(now: datetime | None = None) -> str:
    """Return an RFC 3339 UTC timestamp with millisecond precision and a ``Z`` suffix."""
    moment = now or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
