"""Addresses (PROTOCOL.md §6).

``participant@location``, split at the last ``@``. The location is a host
(``fame.fabric``, or a pool pattern ``*.fame.fabric``), a slash path
(``/S/C``, a physical address), or a host followed by a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from famefabric.errors import ProtocolError

DEFAULT_DOMAIN = "fame.fabric"
SYSTEM_PARTICIPANT = "__sys__"
RPC_PARTICIPANT_PREFIX = "__rpc__"

_PARTICIPANT = re.compile(r"[A-Za-z0-9_-]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_LABEL = re.compile(r"[A-Za-z0-9.-]+")


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address; build it with :func:`parse_address`."""

    participant: str
    host: str | None
    path: str | None

    @property
    def is_physical(self) -> bool:
        """Tell whether the address locates a node by path (no host)."""
        return self.host is None

    @property
    def is_pool_pattern(self) -> bool:
        """Tell whether the host is a pool pattern such as ``*.fame.fabric``."""
        return self.host is not None and self.host.startswith("*")

    def __str__(self) -> str:
        return f"{self.participant}@{self.host or ''}{self.path or ''}"


def _check_path(text: str, path: str) -> None:
    if path == "/":
        return
    for segment in path[1:].split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise ProtocolError(f"invalid address {text!r}: bad path segment {segment!r}")


def _check_host(text: str, host: str) -> None:
    labels = host.split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and len(labels) > 1:
            continue
        if not _LABEL.fullmatch(label):
            raise ProtocolError(f"invalid address {text!r}: bad host label {label!r}")


@lru_cache(maxsize=8192)
def parse_address(text: str) -> Address:
    """Parse and validate an address.

    Raises:
        ProtocolError: the text is not an address; the message says which part is wrong.
    """
    if not isinstance(text, str):
        raise ProtocolError(f"invalid address {text!r}: expected a string")
    participant, at, location = text.rpartition("@")
    if not at:
        raise ProtocolError(
            f"invalid address {text!r}: missing '@' (expected name@host or name@/path)"
        )
    if not _PARTICIPANT.fullmatch(participant):
        raise ProtocolError(f"invalid address {text!r}: bad participant {participant!r}")
    if not location:
        raise ProtocolError(f"invalid address {text!r}: empty location after '@'")
    if location.startswith("/"):
        _check_path(text, location)
        return Address(participant, None, location)
    host, slash, rest = location.partition("/")
    _check_host(text, host)
    path = None
    if slash:
        path = "/" + rest
        _check_path(text, path)
    return Address(participant, host, path)


def is_address(text: object) -> bool:
    """Tell whether ``text`` is a valid address string."""
    if not isinstance(text, str):
        return False
    try:
        parse_address(text)
    except ProtocolError:
        return False
    return True


def host_matches_pool(host: str, pattern_host: str) -> bool:
    """Tell whether ``host`` falls under a pool pattern such as ``*.fame.fabric``.

    The suffix itself matches too: ``fame.fabric`` is in ``*.fame.fabric``.
    """
    suffix = pattern_host[2:] if pattern_host.startswith("*.") else pattern_host
    return host == suffix or host.endswith("." + suffix)
