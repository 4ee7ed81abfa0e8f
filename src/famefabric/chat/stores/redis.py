"""A conversation store in Redis, shared by agent replicas on several machines.

Why redis-py's asyncio API (``redis.asyncio``): it is the official Redis
client for Python; it pools connections, reconnects after a server restart
and reloads Lua scripts the restarted server no longer knows.

Theory of operation. A conversation is four keys under the store's prefix:

- ``conversation:<id>``, a hash: system_prompt, max_history_length, version,
  metadata (JSON, empty when none; absent in hashes written before it)
  and updated_at (the store's clock, in seconds);
- ``messages:<id>``, a list of messages, each one the JSON of
  :meth:`ChatMessage.to_record` (a reply with its turn's token usage), oldest
  first;
- ``turns:<id>``, a hash from turn id to reply, and ``turn-order:<id>``, the
  list of those turn ids, oldest first, to forget all but the last
  :data:`KEPT_TURN_IDS`.

The sorted set ``activity`` maps every id to its updated_at, for
:meth:`RedisConversationStore.list_ids` and
:meth:`RedisConversationStore.expire_idle`. A lease is the string key
``lease:<id>`` holding its owner, with a ``PX`` TTL so that it expires by
itself; it is taken when absent or renewed by its holder with one
compare-and-set script (``SET NX PX`` cannot renew), and released by
compare-and-delete.

Every operation that reads or changes several keys is one Lua script
(:mod:`famefabric.chat.stores.redis_scripts`), which
Redis runs atomically: ``commit_turn`` checks the version, appends, trims the
list to the window, bumps the version and records the turn id with nothing
interleaved. With ``idle_ttl`` set, each write also puts that TTL on the
conversation's keys, so Redis deletes idle conversations by itself;
:meth:`RedisConversationStore.expire_idle` then finds few or none to delete.

A command that fails on a broken connection is retried a few times (this is
what carries a store across a Redis restart). If the failure hid a successful
commit, the retry sees the new version and raises :class:`VersionConflict`;
the turn id recorded by that commit lets the caller find its reply.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from famefabric.chat.conversation import ConversationState, trim, turn_messages
from famefabric.chat.metadata import encode_metadata
from famefabric.chat.stores._contract import (
    KEPT_TURN_IDS,
    ConversationExists,
    ConversationNotFound,
    StoreUnavailable,
    VersionConflict,
    redact_url,
)
from famefabric.chat.stores.redis_scripts import (
    ACQUIRE,
    COMMIT,
    CREATE,
    DELETE,
    EXPIRE,
    FIND_TURN,
    LOAD,
    RELEASE,
    TOUCH,
    decode_state,
    encode,
)
from famefabric.chat.usage import TokenUsage
from famefabric.options import optional_positive_seconds

DEFAULT_KEY_PREFIX = "famefabric:chat:"
"""The prefix of every key the store writes, unless another one is given."""

# How many stale ids expire_idle examines per round trip.
_EXPIRE_BATCH = 256


class RedisConversationStore:
    """A :class:`~famefabric.chat.store.ConversationStore` in a Redis database.

    Nothing is sent to Redis before the first call. :meth:`aclose` closes the
    connections; a later call opens new ones.

    Args:
        url: the server and database, e.g. ``redis://127.0.0.1:6379/0``.
        key_prefix: put in front of every key, so that several stores (or
            tests) can share one database.
        idle_ttl: when set, a conversation idle for longer than this many
            seconds behaves as if deleted, and Redis deletes its keys.
        clock: returns the current time in seconds; inject a fake one in tests.
            Replicas sharing a database must share a clock (the system's).

    Raises:
        ValueError: ``url`` is not a Redis URL, or names a database that is
            not a number.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        idle_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        idle_ttl = optional_positive_seconds("idle_ttl", idle_ttl)
        parts = urlsplit(url)
        database = parts.path.removeprefix("/")
        if parts.scheme in ("redis", "rediss") and database and not database.isdigit():
            raise ValueError(f"the database {database!r} is not a number")
        self._url = redact_url(url)
        self._prefix = key_prefix
        self._idle_ttl = idle_ttl
        self._ttl_ms = 0 if idle_ttl is None else math.ceil(idle_ttl * 1000)
        self._clock = clock
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        )
        self._create = self._client.register_script(CREATE)
        self._load = self._client.register_script(LOAD)
        self._commit = self._client.register_script(COMMIT)
        self._find_turn = self._client.register_script(FIND_TURN)
        self._delete = self._client.register_script(DELETE)
        self._touch = self._client.register_script(TOUCH)
        self._expire = self._client.register_script(EXPIRE)
        self._acquire = self._client.register_script(ACQUIRE)
        self._release = self._client.register_script(RELEASE)

    @property
    def url(self) -> str:
        """Where the store lives, without the password."""
        return self._url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @asynccontextmanager
    async def _reaching_redis(self) -> AsyncIterator[None]:
        """Translate a lost or refused connection into :class:`StoreUnavailable`."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(self._url, str(exc) or type(exc).__name__) from exc

    def _keys(self, conversation_id: str) -> list[str]:
        p = self._prefix
        return [
            f"{p}conversation:{conversation_id}",
            f"{p}messages:{conversation_id}",
            f"{p}turns:{conversation_id}",
            f"{p}turn-order:{conversation_id}",
            f"{p}activity",
        ]

    def _cutoff(self, now: float) -> str:
        return "" if self._idle_ttl is None else repr(now - self._idle_ttl)

    async def create(self, state: ConversationState) -> None:
        """Store a new conversation, its history trimmed to the window.

        Raises:
            ConversationExists: a conversation with this id is stored.
            StoreUnavailable: Redis cannot be reached.
        """
        now = self._clock()
        history = trim(state.history, state.max_messages)
        async with self._reaching_redis():
            created = await self._create(
                keys=self._keys(state.conversation_id),
                args=[
                    state.conversation_id,
                    self._cutoff(now),
                    repr(now),
                    self._ttl_ms,
                    state.system_prompt,
                    state.max_history_length,
                    state.version,
                    encode_metadata(state.metadata) or "",
                    *map(encode, history),
                ],
            )
        if not created:
            raise ConversationExists(state.conversation_id)

    async def load(self, conversation_id: str) -> ConversationState | None:
        """Return the stored state, or ``None`` when there is none.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        async with self._reaching_redis():
            reply = await self._load(
                keys=self._keys(conversation_id),
                args=[conversation_id, self._cutoff(self._clock())],
            )
        if reply is None:
            return None
        updated_at, system_prompt, max_history_length, version, pairs, *messages = reply
        return decode_state(
            conversation_id, system_prompt, max_history_length, version, messages, updated_at, pairs
        )

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
            StoreUnavailable: Redis cannot be reached.
        """
        now = self._clock()
        async with self._reaching_redis():
            result = await self._commit(
                keys=self._keys(conversation_id),
                args=[
                    conversation_id,
                    self._cutoff(now),
                    repr(now),
                    self._ttl_ms,
                    expected_version,
                    turn_id if turn_id is not None else "",
                    reply,
                    KEPT_TURN_IDS,
                    *map(encode, turn_messages(user_message, reply, usage)),
                ],
            )
        if result[0] == "missing":
            raise ConversationNotFound(conversation_id)
        if result[0] == "conflict":
            raise VersionConflict(conversation_id, expected_version, int(result[1]))
        _, version, system_prompt, max_history_length, pairs, *messages = result
        return decode_state(
            conversation_id, system_prompt, max_history_length, version, messages, metadata=pairs
        )

    async def find_turn(self, conversation_id: str, turn_id: str) -> str | None:
        """Return the reply committed under ``turn_id``, or ``None`` if not remembered.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        async with self._reaching_redis():
            found: str | None = await self._find_turn(
                keys=self._keys(conversation_id),
                args=[conversation_id, self._cutoff(self._clock()), turn_id],
            )
        return found

    async def delete(self, conversation_id: str) -> bool:
        """Delete a conversation; return whether it was stored.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        async with self._reaching_redis():
            deleted = await self._delete(
                keys=self._keys(conversation_id),
                args=[conversation_id, self._cutoff(self._clock())],
            )
        return bool(deleted)

    async def list_ids(self, *, limit: int = 100, prefix: str | None = None) -> list[str]:
        """Return up to ``limit`` conversation ids (starting with ``prefix``), most recent first.

        With a prefix the activity index is read in pages until ``limit``
        ids match or it is exhausted.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        cutoff = self._cutoff(self._clock()) or "-inf"
        page = limit if prefix is None else max(limit, 500)
        ids: list[str] = []
        start = 0
        async with self._reaching_redis():
            while len(ids) < limit:
                members = await self._client.zrevrangebyscore(
                    f"{self._prefix}activity", "+inf", cutoff, start=start, num=page
                )
                ids.extend(str(m) for m in members if prefix is None or str(m).startswith(prefix))
                if prefix is None or len(members) < page:
                    break
                start += page
        return ids[:limit]

    async def touch(self, conversation_id: str) -> None:
        """Record activity on a conversation without changing it.

        Raises:
            ConversationNotFound: no such conversation.
            StoreUnavailable: Redis cannot be reached.
        """
        now = self._clock()
        async with self._reaching_redis():
            touched = await self._touch(
                keys=self._keys(conversation_id),
                args=[conversation_id, self._cutoff(now), repr(now), self._ttl_ms],
            )
        if not touched:
            raise ConversationNotFound(conversation_id)

    async def expire_idle(self, idle_seconds: float) -> int:
        """Delete conversations idle for longer than ``idle_seconds``; return how many.

        With ``idle_ttl`` set, Redis has usually deleted them already, and
        those are not counted.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        cutoff = repr(self._clock() - idle_seconds)
        activity = f"{self._prefix}activity"
        expired = 0
        async with self._reaching_redis():
            while True:
                ids = [
                    str(member)
                    for member in await self._client.zrangebyscore(
                        activity, "-inf", f"({cutoff}", start=0, num=_EXPIRE_BATCH
                    )
                ]
                if not ids:
                    return expired
                async with self._client.pipeline(transaction=False) as pipe:
                    for conversation_id in ids:
                        await self._expire(
                            keys=self._keys(conversation_id),
                            args=[conversation_id, cutoff],
                            client=pipe,
                        )
                    results: list[Any] = await pipe.execute()
                expired += sum(int(result) for result in results)

    async def acquire_lease(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Take the conversation's lease for ``ttl`` seconds, or renew it for its holder.

        The lease expires on the Redis server's clock, not the store's.

        Returns:
            Whether ``owner`` now holds the lease: ``False`` when another
            owner holds it.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        async with self._reaching_redis():
            acquired = await self._acquire(
                keys=[f"{self._prefix}lease:{conversation_id}"],
                args=[owner, max(1, math.ceil(ttl * 1000))],
            )
        return bool(acquired)

    async def release_lease(self, conversation_id: str, owner: str) -> None:
        """Give the lease back, if ``owner`` still holds it; otherwise do nothing.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        async with self._reaching_redis():
            await self._release(keys=[f"{self._prefix}lease:{conversation_id}"], args=[owner])

    async def aclose(self) -> None:
        """Close the connections to Redis. Calling it again does nothing."""
        await self._client.aclose()
