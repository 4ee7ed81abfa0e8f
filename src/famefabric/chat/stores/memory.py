"""A conversation store held in a dict, for tests, development and throwaway runs.

It is a complete store: versions, turn ids, leases and idle expiry behave as
in the SQLite and Redis stores, but only within one process and only until it
exits. Every method runs without awaiting anything, so each one is atomic with
respect to the other tasks of the event loop.

Memory: a conversation is kept as its frozen :class:`ConversationState`, whose
history is a tuple of slotted :class:`ChatMessage` objects, plus a small record
of activity. A turn's reply is the same string object in the history and in
the turn-id record, so remembering a turn id costs a dict entry, not a copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Self

from famefabric.chat.conversation import ConversationState, trim
from famefabric.chat.stores._contract import (
    KEPT_TURN_IDS,
    ConversationExists,
    ConversationNotFound,
    VersionConflict,
)
from famefabric.chat.usage import TokenUsage
from famefabric.options import optional_positive_seconds


class _Entry:
    """One stored conversation: its state, last activity and recent turn ids."""

    __slots__ = ("state", "turns", "updated_at")

    def __init__(self, state: ConversationState, updated_at: float) -> None:
        self.state = state
        self.updated_at = updated_at
        self.turns: dict[str, str] | None = None


class MemoryConversationStore:
    """A :class:`~famefabric.chat.store.ConversationStore` that keeps everything in memory.

    Args:
        idle_ttl: when set, a conversation idle for longer than this many
            seconds behaves as if deleted, and :meth:`expire_idle` reclaims it.
        clock: returns the current time in seconds; inject a fake one in tests.
    """

    def __init__(
        self, *, idle_ttl: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        idle_ttl = optional_positive_seconds("idle_ttl", idle_ttl)
        self._idle_ttl = idle_ttl
        self._clock = clock
        # Insertion order is activity order: every write moves the entry to the end.
        self._entries: dict[str, _Entry] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    @property
    def url(self) -> str:
        """Where the store lives, in the form :func:`~famefabric.chat.store.open_store` takes."""
        return "memory://"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _live(self, conversation_id: str, now: float) -> _Entry | None:
        entry = self._entries.get(conversation_id)
        if entry is None:
            return None
        if self._idle_ttl is not None and now - entry.updated_at > self._idle_ttl:
            del self._entries[conversation_id]
            return None
        return entry

    def _mark_active(self, conversation_id: str, entry: _Entry, now: float) -> None:
        entry.updated_at = now
        del self._entries[conversation_id]
        self._entries[conversation_id] = entry

    async def create(self, state: ConversationState) -> None:
        """Store a new conversation, its history trimmed to the window.

        Raises:
            ConversationExists: a conversation with this id is stored.
        """
        now = self._clock()
        if self._live(state.conversation_id, now) is not None:
            raise ConversationExists(state.conversation_id)
        stored = replace(state, history=trim(state.history, state.max_messages))
        self._entries[state.conversation_id] = _Entry(stored, now)

    async def load(self, conversation_id: str) -> ConversationState | None:
        """Return the stored state, or ``None`` when there is none."""
        entry = self._live(conversation_id, self._clock())
        return None if entry is None else replace(entry.state, updated_at=entry.updated_at)

    async def commit_turn(
        self,
        conversation_id: str,
        *,
        expected_version: int,
        user_message: str,
        reply: str,
        turn_id: str | None = None,
        usage: TokenUsage | None = None,
    ) -> ConversationState:
        """Append a turn if the conversation is still at ``expected_version``.

        Returns:
            The new state.

        Raises:
            ConversationNotFound: no such conversation.
            VersionConflict: another turn was committed since ``expected_version``.
        """
        now = self._clock()
        entry = self._live(conversation_id, now)
        if entry is None:
            raise ConversationNotFound(conversation_id)
        if entry.state.version != expected_version:
            raise VersionConflict(conversation_id, expected_version, entry.state.version)
        entry.state = entry.state.with_turn(user_message, reply, usage)
        if turn_id is not None:
            turns = entry.turns if entry.turns is not None else {}
            turns.pop(turn_id, None)
            turns[turn_id] = reply
            while len(turns) > KEPT_TURN_IDS:
                del turns[next(iter(turns))]
            entry.turns = turns
        self._mark_active(conversation_id, entry, now)
        return entry.state

    async def find_turn(self, conversation_id: str, turn_id: str) -> str | None:
        """Return the reply committed under ``turn_id``, or ``None`` if not remembered."""
        entry = self._live(conversation_id, self._clock())
        if entry is None or entry.turns is None:
            return None
        return entry.turns.get(turn_id)

    async def delete(self, conversation_id: str) -> bool:
        """Delete a conversation; return whether it was stored."""
        entry = self._live(conversation_id, self._clock())
        if entry is None:
            return False
        del self._entries[conversation_id]
        return True

    async def list_ids(self, *, limit: int = 100, prefix: str | None = None) -> list[str]:
        """Return up to ``limit`` conversation ids (starting with ``prefix``), most recent first."""
        now = self._clock()
        ids: list[str] = []
        for conversation_id in reversed(self._entries):
            if len(ids) >= limit:
                break
            if prefix is not None and not conversation_id.startswith(prefix):
                continue
            entry = self._entries[conversation_id]
            if self._idle_ttl is None or now - entry.updated_at <= self._idle_ttl:
                ids.append(conversation_id)
        return ids

    async def touch(self, conversation_id: str) -> None:
        """Record activity on a conversation without changing it.

        Raises:
            ConversationNotFound: no such conversation.
        """
        now = self._clock()
        entry = self._live(conversation_id, now)
        if entry is None:
            raise ConversationNotFound(conversation_id)
        self._mark_active(conversation_id, entry, now)

    async def expire_idle(self, idle_seconds: float) -> int:
        """Delete conversations idle for longer than ``idle_seconds``; return how many."""
        now = self._clock()
        idle = [cid for cid, e in self._entries.items() if now - e.updated_at > idle_seconds]
        for conversation_id in idle:
            del self._entries[conversation_id]
        for conversation_id in [c for c, (_, until) in self._leases.items() if until <= now]:
            del self._leases[conversation_id]
        return len(idle)

    async def acquire_lease(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Take the conversation's lease for ``ttl`` seconds, or renew it for its holder.

        Returns:
            Whether ``owner`` now holds the lease: ``False`` when another
            owner holds it.
        """
        now = self._clock()
        held = self._leases.get(conversation_id)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._leases[conversation_id] = (owner, now + ttl)
        return True

    async def release_lease(self, conversation_id: str, owner: str) -> None:
        """Give the lease back, if ``owner`` still holds it; otherwise do nothing."""
        held = self._leases.get(conversation_id)
        if held is not None and held[0] == owner:
            del self._leases[conversation_id]

    async def aclose(self) -> None:
        """Do nothing: a memory store holds no resources. Its content stays readable."""
