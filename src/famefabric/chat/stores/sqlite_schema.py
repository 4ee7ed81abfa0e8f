"""The SQLite store's tables and rows: schema, upgrade of older files, message rows.

Tables: ``conversations`` (one row each: system prompt, window, version,
last activity), ``messages`` (numbered per conversation by ``seq``; a reply
carries the token usage of its turn in ``prompt_tokens``,
``completion_tokens`` and ``total_tokens``, ``NULL`` when not reported),
``turns`` (recent turn ids and their replies) and ``leases``.

A file written before the usage columns existed gets them on open
(``ALTER TABLE ... ADD COLUMN``); its older replies keep ``NULL`` usage.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import aiosqlite

from famefabric.chat.conversation import ChatMessage, Role
from famefabric.chat.usage import TokenUsage

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY,
        system_prompt TEXT NOT NULL,
        max_history_length INTEGER NOT NULL,
        version INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        metadata TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS conversations_by_activity ON conversations (updated_at)",
    """CREATE TABLE IF NOT EXISTS messages (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        total_tokens INTEGER,
        PRIMARY KEY (conversation_id, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS turns (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        turn_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        reply TEXT NOT NULL,
        PRIMARY KEY (conversation_id, turn_id)
    )""",
    """CREATE TABLE IF NOT EXISTS leases (
        conversation_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    )""",
)

USAGE_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens")
"""The columns of ``messages`` added after the first release, all ``INTEGER`` (nullable)."""

# Roles come back from SQLite as new strings; map them to the interned literals.
_ROLES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}


async def create_schema(db: aiosqlite.Connection) -> None:
    """Create the tables; add the usage columns and ``conversations.metadata`` to older ones.

    Runs inside the caller's write transaction, so that two processes opening
    one older file at once add each column once.
    """
    for statement in SCHEMA:
        await db.execute(statement)
    present = {row[1] for row in await db.execute_fetchall("PRAGMA table_info(messages)")}
    for column in USAGE_COLUMNS:
        if column not in present:
            await db.execute(f"ALTER TABLE messages ADD COLUMN {column} INTEGER")
    columns = {row[1] for row in await db.execute_fetchall("PRAGMA table_info(conversations)")}
    if "metadata" not in columns:  # a file from before conversation metadata
        await db.execute("ALTER TABLE conversations ADD COLUMN metadata TEXT")


async def append(
    db: aiosqlite.Connection, conversation_id: str, first_seq: int, messages: Iterable[ChatMessage]
) -> None:
    """Insert ``messages`` numbered from ``first_seq``, with their usage when known."""
    await db.executemany(
        "INSERT INTO messages (conversation_id, seq, role, content, prompt_tokens, "
        "completion_tokens, total_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                conversation_id,
                seq,
                message.role,
                message.content,
                *(
                    (None, None, None)
                    if message.usage is None
                    else (
                        message.usage.prompt_tokens,
                        message.usage.completion_tokens,
                        message.usage.total_tokens,
                    )
                ),
            )
            for seq, message in enumerate(messages, start=first_seq)
        ],
    )


async def load_history(db: aiosqlite.Connection, conversation_id: str) -> tuple[ChatMessage, ...]:
    """Return the stored messages of a conversation, oldest first."""
    rows = await db.execute_fetchall(
        "SELECT role, content, prompt_tokens, completion_tokens, total_tokens FROM messages "
        "WHERE conversation_id = ? ORDER BY seq",
        (conversation_id,),
    )
    return tuple(
        ChatMessage(
            _ROLES[role],
            content,
            None if prompt is None else TokenUsage(prompt, completion, total),
        )
        for role, content, prompt, completion, total in rows
    )


def make_private(path: Path) -> None:
    """Create ``path`` readable by its owner only (0600), or take others' access away.

    Conversations are private; SQLite gives its ``-wal`` and ``-shm`` files
    the database file's permissions. A path that cannot be opened is left
    for SQLite to report.
    """
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:
        return
