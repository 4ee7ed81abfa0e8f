"""A conversation store in Redis, shared by agent replicas on several machines.

Why redis-py's asyncio API (``redis.asyncio``): it is the official Redis
client for Python; it pools connections, reconnects after a server restart
and reloads Lua scripts the restarted server no longer knows.

Theory of operation. A conversation is four keys under the store's prefix:

- ``conversation:<id>``, a hash: system_prompt, max_history_length, version
  and updated_at (the store's clock, in seconds);
- ``messages:<id>``, a list of messages, each one the JSON of
  :meth:`ChatMessage.to_dict`, oldest first;
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

Every operation that reads or changes several keys is one Lua script, which
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

import json
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from famefabric.chat.conversation import ChatMessage, ConversationState, trim, turn_messages
from famefabric.chat.stores._contract import (
    KEPT_TURN_IDS,
    ConversationExists,
    ConversationNotFound,
    StoreUnavailable,
    VersionConflict,
    redact_url,
)
from famefabric.options import optional_positive_seconds

DEFAULT_KEY_PREFIX = "famefabric:chat:"
"""The prefix of every key the store writes, unless another one is given."""

# Scripts share one calling convention. KEYS: conversation, messages, turns,
# turn order, activity. ARGV[1] is the conversation id, ARGV[2] the cutoff: a
# conversation last active before it counts as gone ('' when there is no
# idle_ttl). Every script that writes takes the clock's time and the TTL in
# milliseconds (0: none) next.
_IS_LIVE = """
local function is_live(updated_at)
    return updated_at and (ARGV[2] == '' or tonumber(updated_at) >= tonumber(ARGV[2]))
end
local function refresh_ttl(ttl)
    if tonumber(ttl) > 0 then
        for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
    end
end
"""

# ARGV[3] now, ARGV[4] ttl, ARGV[5] system prompt, ARGV[6] max_history_length,
# ARGV[7] version, ARGV[8..] messages.
_CREATE = (
    _IS_LIVE
    + """
if is_live(redis.call('HGET', KEYS[1], 'updated_at')) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'system_prompt', ARGV[5], 'max_history_length', ARGV[6],
    'version', ARGV[7], 'updated_at', ARGV[3])
if #ARGV > 7 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 8)) end
if ARGV[2] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[2]) end
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
refresh_ttl(ARGV[4])
return 1
"""
)

_LOAD = (
    _IS_LIVE
    + """
local fields = redis.call('HMGET', KEYS[1], 'updated_at', 'system_prompt',
    'max_history_length', 'version')
if not is_live(fields[1]) then return false end
local result = {fields[2], fields[3], fields[4]}
for _, message in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    table.insert(result, message)
end
return result
"""
)

# ARGV[3] now, ARGV[4] ttl, ARGV[5] expected version, ARGV[6] turn id ('' for
# none), ARGV[7] reply, ARGV[8] turn ids kept, ARGV[9..] messages.
# Returns {'missing'}, {'conflict', version} or {'ok', version, system prompt,
# max_history_length, messages...}.
_COMMIT = (
    _IS_LIVE
    + """
local fields = redis.call('HMGET', KEYS[1], 'updated_at', 'system_prompt',
    'max_history_length', 'version')
if not is_live(fields[1]) then return {'missing'} end
local version = tonumber(fields[4])
if version ~= tonumber(ARGV[5]) then return {'conflict', version} end
version = version + 1
redis.call('RPUSH', KEYS[2], unpack(ARGV, 9))
redis.call('LTRIM', KEYS[2], -2 * tonumber(fields[3]), -1)
redis.call('HSET', KEYS[1], 'version', version, 'updated_at', ARGV[3])
if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
    redis.call('LREM', KEYS[4], 0, ARGV[6])
    redis.call('RPUSH', KEYS[4], ARGV[6])
    while redis.call('LLEN', KEYS[4]) > tonumber(ARGV[8]) do
        redis.call('HDEL', KEYS[3], redis.call('LPOP', KEYS[4]))
    end
end
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
refresh_ttl(ARGV[4])
local result = {'ok', version, fields[2], fields[3]}
for _, message in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    table.insert(result, message)
end
return result
"""
)

# ARGV[3] turn id.
_FIND_TURN = (
    _IS_LIVE
    + """
if not is_live(redis.call('HGET', KEYS[1], 'updated_at')) then return false end
return redis.call('HGET', KEYS[3], ARGV[3])
"""
)

_DELETE = (
    _IS_LIVE
    + """
local live = is_live(redis.call('HGET', KEYS[1], 'updated_at'))
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
if live then return 1 end
return 0
"""
)

# ARGV[3] now, ARGV[4] ttl.
_TOUCH = (
    _IS_LIVE
    + """
if not is_live(redis.call('HGET', KEYS[1], 'updated_at')) then return 0 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
refresh_ttl(ARGV[4])
return 1
"""
)

# Here ARGV[2] is the idle cutoff given to expire_idle, never ''.
_EXPIRE = """
local updated_at = redis.call('HGET', KEYS[1], 'updated_at')
if updated_at and tonumber(updated_at) >= tonumber(ARGV[2]) then
    -- Active again: make sure its score says so, so that the sweep moves on.
    redis.call('ZADD', KEYS[5], updated_at, ARGV[1])
    return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
if updated_at then return 1 end
return 0
"""

# KEYS[1] the lease, ARGV[1] the owner, ARGV[2] the TTL in milliseconds.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

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
        self._create = self._client.register_script(_CREATE)
        self._load = self._client.register_script(_LOAD)
        self._commit = self._client.register_script(_COMMIT)
        self._find_turn = self._client.register_script(_FIND_TURN)
        self._delete = self._client.register_script(_DELETE)
        self._touch = self._client.register_script(_TOUCH)
        self._expire = self._client.register_script(_EXPIRE)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)

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
                    *map(_encode, history),
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
        system_prompt, max_history_length, version, *messages = reply
        return _state(conversation_id, system_prompt, max_history_length, version, messages)

    async def commit_turn(
        self,
        conversation_id: str,
        *,
        expected_version: int,
        user_message: str,
        reply: str,
        turn_id: str | None = None,
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
                    *map(_encode, turn_messages(user_message, reply)),
                ],
            )
        if result[0] == "missing":
            raise ConversationNotFound(conversation_id)
        if result[0] == "conflict":
            raise VersionConflict(conversation_id, expected_version, int(result[1]))
        _, version, system_prompt, max_history_length, *messages = result
        return _state(conversation_id, system_prompt, max_history_length, version, messages)

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


def _encode(message: ChatMessage) -> str:
    return json.dumps(message.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _state(
    conversation_id: str,
    system_prompt: str,
    max_history_length: str | int,
    version: str | int,
    messages: Sequence[str],
) -> ConversationState:
    return ConversationState(
        conversation_id,
        system_prompt,
        int(max_history_length),
        tuple(ChatMessage.from_dict(json.loads(message)) for message in messages),
        int(version),
    )
