"""A conversation store in one SQLite file, shareable by processes on one machine.

Why aiosqlite: it is the asyncio wrapper over the standard library's sqlite3
that the ecosystem uses; each connection runs its statements on one worker
thread, so a busy database never blocks the event loop.

Theory of operation. The file is in WAL mode, so readers never wait for the
writer, and every connection sets ``busy_timeout``, so writers from several
processes queue instead of failing. A turn is committed in one ``BEGIN
IMMEDIATE`` transaction: it takes the write lock first, then checks the
version, appends the messages, deletes those that fell out of the window,
bumps the version and records the turn id; another writer either sees the old
version and waits, or sees the new one and gets :class:`VersionConflict`.
Messages are numbered per conversation (``seq``) and only ever appended at the
end and deleted from the start, so the window is ``seq > last - max_messages``.

A store owns one connection, and a connection holds one transaction at a
time, so the store's methods run one after another behind an asyncio lock;
separate stores (replicas) are separate connections and run in parallel.
Memory stays small: SQLite's page cache is bounded (2 MB by default) and rows
are only turned into Python objects for the conversation being read.

``synchronous=NORMAL`` in WAL mode keeps every committed turn across a crash
of the process; only a power loss may drop the last turns.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosqlite

from famefabric.chat.conversation import ConversationState, trim, turn_messages
from famefabric.chat.metadata import decode_metadata, encode_metadata
from famefabric.chat.stores._contract import (
    KEPT_TURN_IDS,
    ConversationExists,
    ConversationNotFound,
    StoreUnavailable,
    VersionConflict,
)
from famefabric.chat.stores.shielded import to_the_end
from famefabric.chat.stores.sqlite_schema import (
    append,
    create_schema,
    load_history,
    make_private,
)
from famefabric.chat.usage import TokenUsage
from famefabric.options import optional_positive_seconds


class SQLiteConversationStore:
    """A :class:`~famefabric.chat.store.ConversationStore` in an SQLite file.

    The connection is opened on first use, creating the file, its parent
    directories and the tables as needed. :meth:`aclose` closes it; a later
    call opens a new one.

    Args:
        path: the database file.
        idle_ttl: when set, a conversation idle for longer than this many
            seconds behaves as if deleted, and :meth:`expire_idle` reclaims it.
        clock: returns the current time in seconds; inject a fake one in tests.
            Processes sharing a file must share a clock (the system's).
        busy_timeout: how long a statement waits for another process's write
            lock before the store reports itself unavailable, in seconds.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        idle_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 5.0,
    ) -> None:
        idle_ttl = optional_positive_seconds("idle_ttl", idle_ttl)
        self._path = Path(path)
        self._idle_ttl = idle_ttl
        self._clock = clock
        self._busy_timeout_ms = max(0, int(busy_timeout * 1000))
        self._lock = asyncio.Lock()
        self._db: aiosqlite.Connection | None = None

    @property
    def url(self) -> str:
        """Where the store lives, in the form :func:`~famefabric.chat.store.open_store` takes."""
        return f"sqlite:///{self._path}"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _connection(self) -> aiosqlite.Connection:
        if self._db is not None:
            return self._db
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Switching a new file to WAL needs the file to itself, and SQLite
        # answers "database is locked" at once (without the busy timeout) when
        # another process opens it at the same moment: try again for a while.
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            db = await self._open()
            try:
                await db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                await db.execute("PRAGMA journal_mode = WAL")
                await db.execute("PRAGMA synchronous = NORMAL")
                await db.execute("PRAGMA foreign_keys = ON")
                await db.execute("BEGIN IMMEDIATE")
                await create_schema(db)
                await db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                await db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            except BaseException:
                await db.close()
                raise
            self._db = db
            return db

    async def _open(self) -> aiosqlite.Connection:
        """Open the file, then hand the open connection to an aiosqlite worker.

        A failed ``aiosqlite.connect`` returns before its worker thread has
        stopped, and the thread then reports to the event loop, which may be
        closed by that time ("Event loop is closed" in the thread). Opening
        the file in a plain worker first means that a file that cannot be
        opened fails before any aiosqlite thread exists.
        """
        await asyncio.to_thread(make_private, self._path)
        raw = await asyncio.to_thread(
            sqlite3.connect, self._path, isolation_level=None, check_same_thread=False
        )
        return await aiosqlite.Connection(lambda: raw, iter_chunk_size=64)

    @asynccontextmanager
    async def _transaction(self, *, write: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """Run the body in one transaction, translating backend failures.

        A write transaction takes the database's write lock at once, so that
        the checks made in the body still hold when it writes.
        """
        async with self._lock:
            try:
                db = await self._connection()
                try:
                    if db.in_transaction:  # left open by a call cancelled at its very end
                        await to_the_end(db.execute("ROLLBACK"))
                    await to_the_end(db.execute("BEGIN IMMEDIATE" if write else "BEGIN"))
                    yield db
                    await to_the_end(db.execute("COMMIT"))
                except BaseException:
                    # Also when cancelled (a caller closing its stream): a transaction
                    # left open would refuse every later BEGIN. SQLite may already
                    # have rolled back (e.g. on a full disk).
                    if db.in_transaction:
                        await to_the_end(db.execute("ROLLBACK"))
                    raise
            except OSError as exc:
                raise StoreUnavailable(self.url, str(exc)) from exc
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
                    raise
                raise StoreUnavailable(self.url, str(exc)) from exc

    def _cutoff(self, now: float) -> float:
        """Return the oldest activity time of a live conversation."""
        return float("-inf") if self._idle_ttl is None else now - self._idle_ttl

    async def create(self, state: ConversationState) -> None:
        """Store a new conversation, its history trimmed to the window.

        Raises:
            ConversationExists: a conversation with this id is stored.
            StoreUnavailable: the database cannot be opened or written.
        """
        now = self._clock()
        history = trim(state.history, state.max_messages)
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT updated_at FROM conversations WHERE id = ?", (state.conversation_id,)
            )
            for (updated_at,) in rows:
                if updated_at >= self._cutoff(now):
                    raise ConversationExists(state.conversation_id)
                await db.execute("DELETE FROM conversations WHERE id = ?", (state.conversation_id,))
            await db.execute(
                "INSERT INTO conversations (id, system_prompt, max_history_length, version, "
                "updated_at, metadata) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    state.conversation_id,
                    state.system_prompt,
                    state.max_history_length,
                    state.version,
                    now,
                    encode_metadata(state.metadata),
                ),
            )
            await append(db, state.conversation_id, 0, history)

    async def load(self, conversation_id: str) -> ConversationState | None:
        """Return the stored state, or ``None`` when there is none.

        Raises:
            StoreUnavailable: the database cannot be opened or read.
        """
        now = self._clock()
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT system_prompt, max_history_length, version, updated_at, metadata "
                "FROM conversations WHERE id = ? AND updated_at >= ?",
                (conversation_id, self._cutoff(now)),
            )
            if not rows:
                return None
            ((system_prompt, max_history_length, version, updated_at, pairs),) = rows
            history = await load_history(db, conversation_id)
        return ConversationState(
            conversation_id,
            system_prompt,
            max_history_length,
            history,
            version,
            updated_at,
            decode_metadata(pairs),
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
            StoreUnavailable: the database cannot be opened or written.
        """
        now = self._clock()
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT system_prompt, max_history_length, version, "
                "(SELECT coalesce(max(seq), -1) FROM messages WHERE conversation_id = id), "
                "metadata "
                "FROM conversations WHERE id = ? AND updated_at >= ?",
                (conversation_id, self._cutoff(now)),
            )
            if not rows:
                raise ConversationNotFound(conversation_id)
            ((system_prompt, max_history_length, version, last_seq, pairs),) = rows
            if version != expected_version:
                raise VersionConflict(conversation_id, expected_version, version)
            version += 1
            added = turn_messages(user_message, reply, usage)
            await append(db, conversation_id, last_seq + 1, added)
            await db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND seq <= ?",
                (conversation_id, last_seq + len(added) - 2 * max_history_length),
            )
            await db.execute(
                "UPDATE conversations SET version = ?, updated_at = ? WHERE id = ?",
                (version, now, conversation_id),
            )
            if turn_id is not None:
                await db.execute(
                    "INSERT OR REPLACE INTO turns (conversation_id, turn_id, version, reply) "
                    "VALUES (?, ?, ?, ?)",
                    (conversation_id, turn_id, version, reply),
                )
                await db.execute(
                    "DELETE FROM turns WHERE conversation_id = ? AND version <= ?",
                    (conversation_id, version - KEPT_TURN_IDS),
                )
            history = await load_history(db, conversation_id)
        return ConversationState(
            conversation_id,
            system_prompt,
            max_history_length,
            history,
            version,
            metadata=decode_metadata(pairs),
        )

    async def find_turn(self, conversation_id: str, turn_id: str) -> str | None:
        """Return the reply committed under ``turn_id``, or ``None`` if not remembered.

        Raises:
            StoreUnavailable: the database cannot be opened or read.
        """
        now = self._clock()
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT turns.reply FROM turns JOIN conversations "
                "ON conversations.id = turns.conversation_id "
                "WHERE turns.conversation_id = ? AND turns.turn_id = ? "
                "AND conversations.updated_at >= ?",
                (conversation_id, turn_id, self._cutoff(now)),
            )
        return next((reply for (reply,) in rows), None)

    async def delete(self, conversation_id: str) -> bool:
        """Delete a conversation; return whether it was stored.

        Raises:
            StoreUnavailable: the database cannot be opened or written.
        """
        now = self._clock()
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT updated_at FROM conversations WHERE id = ?", (conversation_id,)
            )
            await db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        return any(updated_at >= self._cutoff(now) for (updated_at,) in rows)

    async def list_ids(self, *, limit: int = 100, prefix: str | None = None) -> list[str]:
        """Return up to ``limit`` conversation ids (starting with ``prefix``), most recent first.

        Raises:
            StoreUnavailable: the database cannot be opened or read.
        """
        now = self._clock()
        async with self._transaction(write=False) as db:
            if prefix is None:
                rows = await db.execute_fetchall(
                    "SELECT id FROM conversations WHERE updated_at >= ? "
                    "ORDER BY updated_at DESC, id LIMIT ?",
                    (self._cutoff(now), limit),
                )
            else:
                rows = await db.execute_fetchall(
                    "SELECT id FROM conversations WHERE updated_at >= ? "
                    "AND substr(id, 1, ?) = ? ORDER BY updated_at DESC, id LIMIT ?",
                    (self._cutoff(now), len(prefix), prefix, limit),
                )
        return [conversation_id for (conversation_id,) in rows]

    async def touch(self, conversation_id: str) -> None:
        """Record activity on a conversation without changing it.

        Raises:
            ConversationNotFound: no such conversation.
            StoreUnavailable: the database cannot be opened or written.
        """
        now = self._clock()
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ? AND updated_at >= ?",
                (now, conversation_id, self._cutoff(now)),
            )
            touched = cursor.rowcount
            await cursor.close()
            if touched == 0:
                raise ConversationNotFound(conversation_id)

    async def expire_idle(self, idle_seconds: float) -> int:
        """Delete conversations idle for longer than ``idle_seconds``; return how many.

        Expired leases are deleted as well.

        Raises:
            StoreUnavailable: the database cannot be opened or written.
        """
        now = self._clock()
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM conversations WHERE updated_at < ?", (now - idle_seconds,)
            )
            expired = cursor.rowcount
            await cursor.close()
            await db.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
        return expired

    async def acquire_lease(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Take the conversation's lease for ``ttl`` seconds, or renew it for its holder.

        Returns:
            Whether ``owner`` now holds the lease: ``False`` when another
            owner holds it.

        Raises:
            StoreUnavailable: the database cannot be opened or written.
        """
        now = self._clock()
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO leases (conversation_id, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (conversation_id) DO UPDATE "
                "SET owner = excluded.owner, expires_at = excluded.expires_at "
                "WHERE leases.owner = excluded.owner OR leases.expires_at <= ?",
                (conversation_id, owner, now + ttl, now),
            )
            acquired = cursor.rowcount > 0
            await cursor.close()
        return acquired

    async def release_lease(self, conversation_id: str, owner: str) -> None:
        """Give the lease back, if ``owner`` still holds it; otherwise do nothing.

        Raises:
            StoreUnavailable: the database cannot be opened or written.
        """
        async with self._transaction() as db:
            await db.execute(
                "DELETE FROM leases WHERE conversation_id = ? AND owner = ?",
                (conversation_id, owner),
            )

    async def aclose(self) -> None:
        """Close the connection, if open. Calling it again does nothing.

        The close runs to its end even when the caller is cancelled meanwhile (the
        cancel is raised after it), so no connection or worker thread is left behind
        to report to a closed event loop.
        """
        await to_the_end(self._close())

    async def _close(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()
