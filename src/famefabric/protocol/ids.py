"""Identifiers as the wire spells them (PROTOCOL.md §3.2).

Envelope ids, correlation ids, JSON-RPC ids, flow ids, instance ids and
routing epochs are 16 characters from ``[0-9a-zA-Z]``. Receivers treat every
id as an opaque string. The source id (``sid``) is the base62 form of the
first 16 bytes of the SHA-256 of the sender's physical path.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ID_LENGTH = 16

# Ids only need to be unique, not secret (the open profile signs nothing), so
# the random module's generator is enough: it is seeded from the OS and
# reseeded after fork by the random module itself.
_randbytes = random.randbytes


# Each random byte picks a character through this table. Bytes 248-255 favour
# the first eight characters slightly; an id still carries about 95 random
# bits, and this is ~25 times faster than drawing characters one by one
# (ids are made several times per message).
_BYTE_TO_CHAR = bytes(ord(ALPHABET[value % len(ALPHABET)]) for value in range(256))


def new_id() -> str:
    """Return a fresh 16-character id."""
    return _randbytes(ID_LENGTH).translate(_BYTE_TO_CHAR).decode("ascii")


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
