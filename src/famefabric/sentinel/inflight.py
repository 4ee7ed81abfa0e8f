"""Requests the sentinel forwarded and that still await their reply (PROTOCOL.md §7.3).

When a child's connection closes, the sentinel NACKs (``CHILD_UNREACHABLE``)
every request it had delivered to that child and that is not answered yet,
so callers fail at once instead of waiting for their own timeout (the
reference never does this: its callers wait 30 s, C-15).

A request is tracked when it is a ``Data`` envelope with ``rtype`` REPLY (2)
or STREAM (4), an ``id``, a ``replyTo`` and a ``corrId``. Its reply is a
``Data`` envelope *from the child it was delivered to*, addressed to its
``replyTo``, whose ``corrId`` is the request's JSON-RPC id (that is what
agents put in replies, §8.2; it equals the envelope ``corrId`` for every
reference client). A unary request is settled by its first reply; a stream
by its end marker (a JSON-RPC response with neither ``result`` nor
``error``) or an error. A negative ``DeliveryAck`` from the child settles
either.

Memory is bounded: entries go away when answered, when either end
disconnects, when their deadline passes (10 minutes by default, or the
request's ``meta.deadline``, read only when expiring), and beyond
``max_per_source`` (or the global ``max_entries``) the *sending node's own*
oldest go first: a flood from one node never evicts another node's entries.

The table also answers two questions for authorization: does a reply from a
node answer a request that node received (:meth:`InflightRequests.answers`),
and did a node send the request a cancel notice names
(:meth:`InflightRequests.sent_by`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from famefabric.protocol.envelopes import is_request_rtype
from famefabric.protocol.frames import RTYPE_REPLY

DEFAULT_TTL = 600.0
MAX_TTL = 3600.0
"""Upper bound for a deadline taken from ``meta.deadline``."""

Key = tuple[str, str, str]
"""(destination child, replyTo, reply correlation id)."""


@dataclass(slots=True)
class InflightRequest:
    """One forwarded request awaiting its reply."""

    request_id: str
    corr_id: str
    reply_to: str
    trace_id: str | None
    to: str | None
    source: str
    destination: str
    stream: bool
    added: float
    """When it was forwarded (monotonic clock)."""
    deadline: object = None
    """The request's raw ``meta.deadline``, read only when expiring entries."""
    span: Any = None
    """The sentinel's open span of the request, when tracing is on."""


class InflightRequests:
    """Forwarded requests indexed by destination and by source.

    Args:
        ttl: seconds an unanswered request is remembered without ``meta.deadline``.
        max_entries: the most requests remembered at once.
        max_per_source: the most requests remembered per sending node
            (default: ``max_entries``); its oldest are forgotten first.
        clock: monotonic clock in seconds (injectable for tests).
        wall_clock: Unix time in seconds, to read ``meta.deadline``.
    """

    __slots__ = (
        "_by_destination",
        "_by_request",
        "_by_source",
        "_clock",
        "_entries",
        "_max_entries",
        "_max_per_source",
        "_ttl",
        "_wall_clock",
    )

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 100_000,
        max_per_source: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_per_source = max_entries if max_per_source is None else max_per_source
        self._clock = clock
        self._wall_clock = wall_clock
        self._entries: dict[Key, InflightRequest] = {}
        self._by_destination: dict[str, set[Key]] = {}
        self._by_source: dict[str, dict[Key, None]] = {}
        self._by_request: dict[tuple[str, str], Key] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(
        self, envelope: Mapping[str, Any], *, source: str, destination: str, span: Any = None
    ) -> Key | None:
        """Remember a request just forwarded from ``source`` to ``destination``.

        Returns:
            The entry's key, or None when the envelope is not a trackable request.
        """
        request_id = envelope.get("id")
        corr_id = envelope.get("corrId")
        reply_to = envelope.get("replyTo")
        rtype = envelope.get("rtype")
        if (
            type(request_id) is not str
            or type(corr_id) is not str
            or type(reply_to) is not str
            or not is_request_rtype(rtype)
        ):
            return None
        payload = envelope["frame"].get("payload")
        match_id = corr_id
        if isinstance(payload, dict):
            rpc_id = payload.get("id")
            if type(rpc_id) is str:
                match_id = rpc_id
        key = (destination, reply_to, match_id)
        if key in self._entries:
            self._remove(key)
        own = self._by_source.get(source)
        if own is not None and (
            len(own) >= self._max_per_source or len(self._entries) >= self._max_entries
        ):
            self._remove(next(iter(own)))
        elif len(self._entries) >= self._max_entries:
            return None  # full of other nodes' requests: never evict theirs
        trace_id = envelope.get("traceId")
        to = envelope.get("to")
        meta = envelope.get("meta")
        deadline = meta.get("deadline") if type(meta) is dict else None
        self._entries[key] = InflightRequest(
            request_id,
            corr_id,
            reply_to,
            trace_id if type(trace_id) is str else None,
            to if type(to) is str else None,
            source,
            destination,
            not (rtype or 0) & RTYPE_REPLY,
            self._clock(),
            deadline,
            span,
        )
        keys = self._by_destination.get(destination)
        if keys is None:
            keys = self._by_destination[destination] = set()
        keys.add(key)
        own = self._by_source.get(source)
        if own is None:
            own = self._by_source[source] = {}
        own[key] = None
        self._by_request[(source, request_id)] = key
        return key

    def count_source(self, source: str) -> int:
        """Return how many requests sent by ``source`` await their replies."""
        own = self._by_source.get(source)
        return 0 if own is None else len(own)

    def count_destination(self, destination: str) -> int:
        """Return how many requests delivered to ``destination`` await its replies."""
        keys = self._by_destination.get(destination)
        return 0 if keys is None else len(keys)

    def answers(self, envelope: Mapping[str, Any], *, source: str) -> bool:
        """Tell whether ``envelope`` from ``source`` answers a request delivered to ``source``."""
        to = envelope.get("to")
        corr_id = envelope.get("corrId")
        return type(to) is str and type(corr_id) is str and (source, to, corr_id) in self._entries

    def sent_by(self, source: str, request_id: object) -> bool:
        """Tell whether ``source`` sent the request whose envelope id is ``request_id``."""
        return type(request_id) is str and (source, request_id) in self._by_request

    def destination_of(self, source: str, request_id: object) -> str | None:
        """Return where the request ``request_id`` sent by ``source`` was delivered, or None."""
        if type(request_id) is not str:
            return None
        key = self._by_request.get((source, request_id))
        return None if key is None else key[0]

    def drop_sources(self, prefix: str) -> int:
        """Forget every request sent by a source whose name starts with ``prefix``."""
        doomed = [source for source in self._by_source if source.startswith(prefix)]
        return sum(self.drop_source(source) for source in doomed)

    def settle(
        self, envelope: Mapping[str, Any], *, source: str, force: bool = False
    ) -> InflightRequest | None:
        """Settle the request that ``envelope``, sent by ``source``, answers, if any.

        Args:
            envelope: a ``Data`` or ``DeliveryAck`` envelope from ``source``.
            source: the child that sent it.
            force: settle a stream even if this is not its last item.

        Returns:
            The settled (and forgotten) request, or None.
        """
        to = envelope.get("to")
        corr_id = envelope.get("corrId")
        if type(to) is not str or type(corr_id) is not str:
            return None
        key = (source, to, corr_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not force:
            frame = envelope["frame"]
            if entry.stream and frame.get("type") == "Data":
                payload = frame.get("payload")
                # Stream items carry a result; the end marker has neither result
                # nor error, and an error ends the stream too (§8.3).
                if isinstance(payload, dict) and payload.get("result") is not None:
                    if payload.get("error") is None:
                        return None
            elif frame.get("type") == "DeliveryAck" and frame.get("ok") is not False:
                return None
        return self._remove(key)

    def discard(self, key: Key) -> InflightRequest | None:
        """Forget one entry; return it if it was still there."""
        return self._remove(key)

    def pop_destination(self, node_id: str) -> list[InflightRequest]:
        """Forget and return every request delivered to ``node_id`` (it went away)."""
        keys = self._by_destination.get(node_id)
        if not keys:
            return []
        removed = [self._remove(key) for key in list(keys)]
        return [entry for entry in removed if entry is not None]

    def drop_source(self, node_id: str) -> int:
        """Forget every request sent by ``node_id`` (nobody is left to answer); return the count."""
        keys = self._by_source.get(node_id)
        if not keys:
            return 0
        doomed = list(keys)
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def expire(self) -> list[InflightRequest]:
        """Forget and return the requests whose deadline has passed.

        A request expires ``ttl`` seconds after it was forwarded, or, when it
        carries ``meta.deadline``, a second after that deadline (at most
        ``MAX_TTL`` after it was forwarded).
        """
        now = self._clock()
        wall = self._wall_clock()
        late = [key for key, entry in self._entries.items() if self._is_late(entry, now, wall)]
        removed = [self._remove(key) for key in late]
        return [entry for entry in removed if entry is not None]

    def _is_late(self, entry: InflightRequest, now: float, wall: float) -> bool:
        age = now - entry.added
        if entry.deadline is not None:
            remaining = _seconds_until(entry.deadline, wall)
            if remaining is not None:
                # A grace second lets a reply sent right at the deadline settle it.
                return remaining < -1.0 or age >= MAX_TTL
        return age >= self._ttl

    def _remove(self, key: Key) -> InflightRequest | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        _discard_index(self._by_destination, entry.destination, key)
        own = self._by_source.get(entry.source)
        if own is not None:
            own.pop(key, None)
            if not own:
                del self._by_source[entry.source]
        if self._by_request.get((entry.source, entry.request_id)) == key:
            del self._by_request[(entry.source, entry.request_id)]
        return entry


def _discard_index(index: dict[str, set[Key]], node_id: str, key: Key) -> None:
    keys = index.get(node_id)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[node_id]


def _seconds_until(deadline: object, now: float) -> float | None:
    """Seconds from ``now`` (Unix time) to a ``meta.deadline``.

    Accepted forms: Unix time in seconds or milliseconds (a number), or an
    RFC 3339 timestamp. Anything else is ignored.
    """
    if isinstance(deadline, bool):
        return None
    if isinstance(deadline, int | float):
        value = float(deadline)
        if value > 1e11:
            value /= 1000.0
        return value - now
    if isinstance(deadline, str):
        try:
            moment = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None
        return moment.timestamp() - now
    return None
