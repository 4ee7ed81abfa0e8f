"""Conversation metadata and seeded history: the bounds, and every store keeping them.

The store tests run against the memory, SQLite and Redis stores (the fixtures of
test_store.py); an SQLite file written before metadata existed gets the column on
open, and a Redis hash without the field loads as no metadata.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from test_store import Backend, FakeClock, backend, clock, conversation, store

from famefabric.chat.conversation import ChatMessage, ConversationState, conversation_to_json
from famefabric.chat.metadata import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
    MAX_SEEDED_MESSAGES,
    decode_metadata,
    encode_metadata,
    metadata,
    seeded_history,
)
from famefabric.chat.store import ConversationStore
from famefabric.chat.stores import SQLiteConversationStore
from famefabric.chat.stores.redis import RedisConversationStore
from famefabric.errors import ChatInputError

pytestmark = pytest.mark.timeout(60)

__all__ = ["backend", "clock", "store"]  # fixtures of test_store.py, used here too

PAIRS = {"topic": "café ✓", "empty": "", "k" * MAX_METADATA_KEY_CHARS: "v" * 512}


# -- the bounds ---------------------------------------------------------------------


def test_metadata_within_the_bounds_is_kept_and_empty_is_none() -> None:
    many = {f"k{i}": str(i) for i in range(MAX_METADATA_PAIRS)}
    assert metadata(many) == many
    assert metadata(PAIRS) == PAIRS
    assert metadata(None) is None
    assert metadata({}) is None


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ({f"k{i}": "v" for i in range(MAX_METADATA_PAIRS + 1)}, "17 pairs, over the limit of 16"),
        ({"k" * (MAX_METADATA_KEY_CHARS + 1): "v"}, "is not 1 to 64 characters"),
        ({"": "v"}, "is not 1 to 64 characters"),
        ({"k": "v" * (MAX_METADATA_VALUE_CHARS + 1)}, "513 characters, over the limit of 512"),
        ({"k": 1}, "is int, not a string"),
        ({"k": None}, "is NoneType, not a string"),
        ({"k": {"nested": "x"}}, "is dict, not a string"),
        (["k", "v"], "got list"),
        ("k=v", "got str"),
    ],
)
def test_metadata_out_of_bounds_is_refused_saying_what_is_accepted(
    value: object, said: str
) -> None:
    with pytest.raises(ChatInputError) as info:
        metadata(value)
    assert said in str(info.value)
    assert "up to 16 pairs" in str(info.value)


def test_seeded_history_keeps_user_and_assistant_messages_in_order() -> None:
    seeded = seeded_history(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], 100
    )
    assert seeded == (ChatMessage("user", "hi"), ChatMessage("assistant", "hello"))
    assert seeded_history(None, 100) == ()


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ([{"role": "user", "content": "x"}] * (MAX_SEEDED_MESSAGES + 1), "21 messages"),
        ([{"role": "system", "content": "x"}], "history[0] has role 'system'"),
        ([{"role": "user", "content": "ok"}, {"role": "tool", "content": "x"}], "history[1]"),
        ([{"role": "user", "content": 5}], "content is int, not text"),
        ([{"role": "user", "content": "x" * 101}], "101 characters, over the limit of 100"),
        (["hello"], "history[0] has role None"),
        ({"role": "user"}, "got dict"),
    ],
)
def test_a_bad_seeded_history_is_refused_saying_what_was_wrong(value: object, said: str) -> None:
    with pytest.raises(ChatInputError) as info:
        seeded_history(value, 100)
    assert said in str(info.value)


def test_stored_metadata_round_trips_and_unreadable_is_none() -> None:
    assert decode_metadata(encode_metadata(PAIRS)) == PAIRS
    assert encode_metadata(None) is None and encode_metadata({}) is None
    for stored in (None, "", "not json", "[1]", b""):
        assert decode_metadata(stored) is None


def test_get_conversation_shows_metadata_only_when_there_is_some() -> None:
    assert "metadata" not in conversation_to_json(conversation())
    shown = conversation_to_json(conversation_with(PAIRS))
    assert shown["metadata"] == PAIRS


def conversation_with(pairs: dict[str, str] | None, **kwargs: Any) -> ConversationState:
    return replace(conversation(**kwargs), metadata=pairs)


# -- every store keeps them -----------------------------------------------------------


async def test_metadata_and_seeded_history_load_back_and_survive_turns(
    store: ConversationStore,
) -> None:
    seeded = (ChatMessage("user", "earlier"), ChatMessage("assistant", "noted"))
    state = conversation_with(PAIRS, history=seeded)
    await store.create(state)
    assert await store.load("c1") == state
    after = await store.commit_turn("c1", expected_version=0, user_message="q", reply="a")
    assert after.metadata == PAIRS
    loaded = await store.load("c1")
    assert loaded is not None and loaded.metadata == PAIRS
    assert loaded.history == (*seeded, ChatMessage("user", "q"), ChatMessage("assistant", "a"))


async def test_a_conversation_without_metadata_loads_with_none(store: ConversationStore) -> None:
    await store.create(conversation())
    loaded = await store.load("c1")
    assert loaded is not None and loaded.metadata is None


async def test_a_reopened_store_reads_the_metadata_back(backend: Backend, clock: FakeClock) -> None:
    first = backend.open(clock)
    await first.create(conversation_with(PAIRS))
    await first.aclose()
    loaded = await backend.open(clock).load("c1")
    expected = PAIRS if backend.is_shared else None
    assert (loaded.metadata if loaded is not None else None) == expected


# -- stores written before metadata existed ---------------------------------------------

_OLD_SQLITE_SCHEMA = """
CREATE TABLE conversations (id TEXT PRIMARY KEY, system_prompt TEXT NOT NULL,
    max_history_length INTEGER NOT NULL, version INTEGER NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE messages (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,
    prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER,
    PRIMARY KEY (conversation_id, seq));
INSERT INTO conversations VALUES ('old', 'be brief', 5, 1, 1700000000.0);
INSERT INTO messages VALUES ('old', 0, 'user', 'hi', NULL, NULL, NULL),
    ('old', 1, 'assistant', 'hello', NULL, NULL, NULL);
"""


def _columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(conversations)")]


async def test_an_sqlite_file_without_the_metadata_column_gets_it_and_keeps_its_turns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SQLITE_SCHEMA)
    assert "metadata" not in _columns(path)
    async with SQLiteConversationStore(path, clock=FakeClock()) as old:
        loaded = await old.load("old")
        assert loaded is not None and loaded.metadata is None
        assert loaded.history == (ChatMessage("user", "hi"), ChatMessage("assistant", "hello"))
        await old.commit_turn("old", expected_version=1, user_message="q", reply="a")
        await old.create(conversation_with(PAIRS))
    assert _columns(path)[-1] == "metadata"
    async with SQLiteConversationStore(path, clock=FakeClock()) as again:  # adds nothing twice
        reloaded = await again.load("c1")
        old_one = await again.load("old")
    assert reloaded is not None and reloaded.metadata == PAIRS
    assert old_one is not None and old_one.version == 2 and old_one.metadata is None
    assert _columns(path).count("metadata") == 1


async def test_a_redis_hash_without_the_metadata_field_loads_with_none(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    async with RedisConversationStore(redis_url, key_prefix=prefix) as opened:
        await opened.create(conversation_with(PAIRS))
        client: Any = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            assert await client.hdel(f"{prefix}conversation:c1", "metadata") == 1
        finally:
            await client.aclose()
        loaded = await opened.load("c1")
        assert loaded is not None and loaded.metadata is None
        after = await opened.commit_turn("c1", expected_version=0, user_message="q", reply="a")
    assert after.metadata is None and after.history[-1] == ChatMessage("assistant", "a")
