"""Where conversations live between turns, so that they survive restarts and replicas.

A store holds :class:`ConversationState` values and changes them only through
:meth:`ConversationStore.commit_turn`, which is optimistic: a turn is computed
from a loaded state at some version, then committed only if the conversation
is still at that version. Two replicas answering the same conversation at once
both call the model, but only one commits; the other gets
:class:`VersionConflict`, reloads and decides again. A lease
(:meth:`ConversationStore.acquire_lease`) lets replicas avoid that wasted call
by taking turns; it expires by itself, so a crashed holder blocks nobody for
long, and the version check stays the guarantee.

A turn may carry a turn id chosen by the client. The store remembers the reply
committed under each of the last :data:`KEPT_TURN_IDS` turn ids, so a client
retrying a turn whose answer it lost gets the same reply, without a second
model call and without a second copy of the turn in the history.

Idle conversations go away: :meth:`ConversationStore.expire_idle` deletes
those idle longer than it is told, and a store opened with ``idle_ttl``
treats them as gone at once (Redis also deletes their keys by itself).

Three implementations, picked by URL in :func:`open_store`:

- ``memory://`` -- :class:`~famefabric.chat.stores.MemoryConversationStore`,
  one process, until it exits;
- ``sqlite:///path.db`` -- :class:`~famefabric.chat.stores.SQLiteConversationStore`,
  processes on one machine;
- ``redis://host:port/db`` -- :class:`~famefabric.chat.stores.redis.RedisConversationStore`,
  replicas anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from famefabric.chat.conversation import ConversationState
from famefabric.chat.stores import MemoryConversationStore, SQLiteConversationStore
from famefabric.chat.stores._contract import (
    KEPT_TURN_IDS,
    ConversationExists,
    ConversationNotFound,
    StoreUnavailable,
    VersionConflict,
    redact_url,
)
from famefabric.chat.usage import TokenUsage
from famefabric.errors import ConfigurationError
from famefabric.options import optional_positive_seconds

__all__ = [
    "KEPT_TURN_IDS",
    "ConversationExists",
    "ConversationNotFound",
    "ConversationStore",
    "StoreUnavailable",
    "VersionConflict",
    "open_store",
]

_ACCEPTED_URLS = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db or redis://host:port/db"
)


class ConversationStore(Protocol):
    """Stored conversations, shared by every replica that opens the same store.

    Every method may raise :class:`StoreUnavailable` when the backend cannot be
    reached; the store recovers by itself once the backend is back. Use the
    store as an async context manager, or call :meth:`aclose` when done.
    """

    @property
    def url(self) -> str:
        """Where the store lives, without credentials, for messages and logs."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def create(self, state: ConversationState) -> None:
        """Store a new conversation, its history trimmed to the window.

        Raises:
            ConversationExists: a conversation with this id is stored.
        """
        ...

    async def load(self, conversation_id: str) -> ConversationState | None:
        """Return the stored state, or ``None`` when there is none."""
        ...

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
        """Append a turn atomically if the conversation is still at ``expected_version``.

        Appends :func:`~famefabric.chat.conversation.turn_messages` (only the
        reply when ``user_message`` is blank), trims the history to the
        state's window, increments the version, remembers ``turn_id`` with the
        reply when given, and marks the conversation active. ``usage``, the
        tokens the LLM reported for the turn, is stored on the reply.

        Returns:
            The new state, equal to ``state.with_turn(user_message, reply, usage)``
            for the state at ``expected_version``.

        Raises:
            ConversationNotFound: no such conversation.
            VersionConflict: another turn was committed since
                ``expected_version``; nothing was changed.
        """
        ...

    async def find_turn(self, conversation_id: str, turn_id: str) -> str | None:
        """Return the reply committed under ``turn_id``, or ``None`` if not remembered."""
        ...

    async def delete(self, conversation_id: str) -> bool:
        """Delete a conversation; return whether it was stored."""
        ...

    async def list_ids(self, *, limit: int = 100, prefix: str | None = None) -> list[str]:
        """Return up to ``limit`` conversation ids, most recently active first.

        With ``prefix``, only the ids that start with it (one owner's, see
        :mod:`famefabric.chat.ownership`).
        """
        ...

    async def touch(self, conversation_id: str) -> None:
        """Mark a conversation active without changing it.

        Raises:
            ConversationNotFound: no such conversation.
        """
        ...

    async def expire_idle(self, idle_seconds: float) -> int:
        """Delete conversations idle for longer than ``idle_seconds``; return how many.

        Conversations the backend already expired by itself (Redis with
        ``idle_ttl``) are not counted.
        """
        ...

    async def acquire_lease(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Take or renew the conversation's lease for ``ttl`` seconds.

        The lease excludes every other owner until it is released or expires.
        Its holder renews it by acquiring it again, which restarts its ``ttl``;
        so holders that must exclude each other need distinct owner strings.
        A lease is independent of the conversation: one may lease an id before
        creating it.

        Returns:
            Whether ``owner`` now holds the lease: ``False`` when another
            owner holds it.
        """
        ...

    async def release_lease(self, conversation_id: str, owner: str) -> None:
        """Give the lease back, if ``owner`` still holds it; otherwise do nothing."""
        ...

    async def aclose(self) -> None:
        """Release the store's connections. Calling it again does nothing."""
        ...


def open_store(
    url: str, *, idle_ttl: float | None = None, clock: Callable[[], float] = time.time
) -> ConversationStore:
    """Build the store that ``url`` names; nothing is connected before its first call.

    Args:
        url: ``memory://``; ``sqlite:///relative/path.db`` (relative to the
            working directory) or ``sqlite:////absolute/path.db``, whose parent
            directories are created; ``redis://host:port/db`` (also
            ``rediss://`` and ``unix://``, as redis-py accepts them).
        idle_ttl: when set, conversations idle for longer than this many
            seconds are gone.
        clock: returns the current time in seconds; inject a fake one in tests.

    Raises:
        ConfigurationError: the URL has an unknown form, or ``idle_ttl`` is
            not positive.
    """
    idle_ttl = optional_positive_seconds("idle_ttl", idle_ttl)
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if separator and scheme == "memory" and not rest:
        return MemoryConversationStore(idle_ttl=idle_ttl, clock=clock)
    if separator and scheme == "sqlite" and rest.startswith("/") and rest != "/":
        return SQLiteConversationStore(rest[1:], idle_ttl=idle_ttl, clock=clock)
    if separator and scheme in ("redis", "rediss", "unix"):
        # Imported here, not above: see famefabric.chat.stores on redis-py's import cost.
        from famefabric.chat.stores.redis import RedisConversationStore

        try:
            return RedisConversationStore(url, idle_ttl=idle_ttl, clock=clock)
        except ValueError as exc:
            raise ConfigurationError(
                f"conversation store URL {redact_url(url)!r} is not a valid Redis URL "
                f"({exc}); expected redis://host:port/db"
            ) from exc
    raise ConfigurationError(
        f"unsupported conversation store URL {redact_url(url)!r}; expected {_ACCEPTED_URLS}"
    )
