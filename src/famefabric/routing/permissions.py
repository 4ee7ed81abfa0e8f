"""Identities and their address permissions, free of I/O (docs/PROTOCOL.md, "Security").

An :class:`Identity` is what an admission token proves: a subject, the
addresses it may serve (bind), the addresses it may call (send requests to),
and whether it is an administrator. Tokens are verified elsewhere; this module
only decides.

Patterns are matched against the whole address text, ``participant@location``.
A location's segments are separated by ``.``, ``/`` or ``@``:

- ``*`` matches one segment (any run of characters without ``.``, ``/``, ``@``);
- ``>`` or ``**`` matches the rest, one segment or more (anything at all);
- every other character matches itself.

So ``chat@fame.fabric`` allows exactly that address, ``*@fame.fabric`` any
participant at that host, ``chat@*.fabric`` any one label, and ``>`` (or
``**``) every address. A pattern that starts with ``!`` denies: deny wins over
allow, whatever the order, as in NATS's permissions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

_MAX_CACHED = 4096
_SEGMENT_CHARS = r"[^./@]+"


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    if not pattern:
        raise ValueError("an address pattern cannot be empty")
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            parts.append(".+")
            index += 2
        elif pattern[index] == ">":
            parts.append(".+")
            index += 1
        elif pattern[index] == "*":
            parts.append(_SEGMENT_CHARS)
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts))


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid (allow or ``!``-deny) pattern, else raise ``ValueError``."""
    if not isinstance(pattern, str):
        raise ValueError(f"an address pattern must be a string, not {type(pattern).__name__}")
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body or any(ch.isspace() for ch in body):
        raise ValueError(f"invalid address pattern {pattern!r}: empty or contains white space")
    _compile(body)
    return pattern


@dataclass(frozen=True, slots=True)
class Permissions:
    """A set of allow and deny patterns; :meth:`allows` caches its answers."""

    patterns: tuple[str, ...] = ()
    _allow: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _deny: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _cache: dict[str, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        allow: list[re.Pattern[str]] = []
        deny: list[re.Pattern[str]] = []
        for pattern in self.patterns:
            check_pattern(pattern)
            if pattern.startswith("!"):
                deny.append(_compile(pattern[1:]))
            else:
                allow.append(_compile(pattern))
        object.__setattr__(self, "_allow", tuple(allow))
        object.__setattr__(self, "_deny", tuple(deny))
        object.__setattr__(self, "_cache", {})

    @classmethod
    def of(cls, patterns: Iterable[str]) -> Permissions:
        """Build from any iterable of patterns."""
        return cls(tuple(patterns))

    def allows(self, address: str) -> bool:
        """Tell whether ``address`` matches an allow pattern and no deny pattern."""
        cache = self._cache
        answer = cache.get(address)
        if answer is None:
            answer = not any(p.fullmatch(address) for p in self._deny) and any(
                p.fullmatch(address) for p in self._allow
            )
            if len(cache) >= _MAX_CACHED:
                cache.clear()
            cache[address] = answer
        return answer


EVERYTHING = Permissions((">",))
NOTHING = Permissions(())


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is, as its admission token says.

    Attributes:
        subject: the token's ``sub``; stamped by the sentinel on every request
            it forwards from this connection.
        serve: addresses it may bind (token claim ``fame_serve``).
        call: addresses it may send requests to (token claim ``fame_call``).
        admin: token claim ``fame_admin``; agents may show an admin every
            caller's data (it grants no address permission by itself).
        expires_at: the token's ``exp`` (unix seconds), or ``None``.
    """

    subject: str
    serve: Permissions = NOTHING
    call: Permissions = NOTHING
    admin: bool = False
    expires_at: float | None = None

    def may_serve(self, address: str) -> bool:
        """Tell whether this identity may bind ``address``."""
        return self.serve.allows(address)

    def may_call(self, address: str) -> bool:
        """Tell whether this identity may send a request to ``address``."""
        return self.call.allows(address)
