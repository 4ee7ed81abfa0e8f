"""Token usage per turn: kept on the reply by every store, and read from what the LLM reports.

The store tests run against the memory, SQLite and Redis stores (the fixtures
of test_store.py); an SQLite file written before usage existed is upgraded on
open. The agent tests run the chat agent over a real sentinel, its OpenAI
adapter calling the stub server, which reports deterministic counts: prompt
tokens are 3 plus, per message sent, 4 plus its words; completion tokens are
the reply's words (the streamed pieces).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.in_process import fabric_settings, serving
from test_store import Backend, FakeClock, backend, clock, conversation, store

from famefabric import Agent, Sentinel
from famefabric.chat import ChatAgent
from famefabric.chat.conversation import ChatMessage
from famefabric.chat.openai_model import OpenAIChatModel
from famefabric.chat.store import ConversationStore
from famefabric.chat.stores import MemoryConversationStore, SQLiteConversationStore
from famefabric.chat.stores.redis import RedisConversationStore
from famefabric.chat.usage import TokenUsage, describe, total
from famefabric.testing import OpenAIStubServer, Reply

pytestmark = pytest.mark.timeout(60)

__all__ = ["backend", "clock", "store"]  # fixtures of test_store.py, used here too

USAGE = TokenUsage(11, 4, 15)


# -- the value ------------------------------------------------------------------


def test_reported_usage_is_read_from_the_openai_shape_and_refused_when_malformed() -> None:
    assert TokenUsage.reported(
        SimpleNamespace(prompt_tokens=7, completion_tokens=2, total_tokens=9)
    ) == TokenUsage(7, 2, 9)
    # A missing total is the sum; a missing or negative count means no usage.
    assert TokenUsage.reported(SimpleNamespace(prompt_tokens=7, completion_tokens=2)) == (
        TokenUsage(7, 2, 9)
    )
    assert TokenUsage.reported(None) is None
    assert TokenUsage.reported(SimpleNamespace(prompt_tokens=-1, completion_tokens=2)) is None
    assert TokenUsage.reported(SimpleNamespace(prompt_tokens="7", completion_tokens=2)) is None


def test_usage_json_round_trips_and_hostile_json_reads_as_none() -> None:
    assert TokenUsage.from_json(USAGE.to_json()) == USAGE
    for hostile in (
        None,
        [1, 2, 3],
        {"prompt_tokens": 1},
        {**USAGE.to_json(), "total_tokens": True},
    ):
        assert TokenUsage.from_json(hostile) is None


def test_total_skips_unreported_turns_and_describe_says_so() -> None:
    assert total([USAGE, None, TokenUsage(1, 2, 3)]) == TokenUsage(12, 6, 18)
    assert total([]) == TokenUsage(0, 0, 0)
    assert describe(USAGE) == "11 prompt + 4 completion = 15 tokens"
    assert describe(None) == "not reported"


# -- every store ----------------------------------------------------------------


async def test_a_committed_turn_keeps_its_usage_on_the_reply(store: ConversationStore) -> None:
    await store.create(conversation())
    committed = await store.commit_turn(
        "c1", expected_version=0, user_message="q", reply="a", usage=USAGE
    )
    assert committed.history == (
        ChatMessage("user", "q"),
        ChatMessage("assistant", "a", USAGE),
    )
    assert committed == conversation().with_turn("q", "a", USAGE)
    assert await store.load("c1") == committed


async def test_usage_stays_with_its_turn_as_the_window_moves_and_may_be_missing(
    store: ConversationStore,
) -> None:
    await store.create(conversation(max_history_length=2))
    for n in range(3):
        await store.commit_turn(
            "c1",
            expected_version=n,
            user_message=f"q{n}",
            reply=f"a{n}",
            usage=None if n == 1 else TokenUsage(n, 10 * n, 11 * n),
        )
    loaded = await store.load("c1")
    assert loaded is not None
    assert [(m.content, m.usage) for m in loaded.history] == [
        ("q1", None),
        ("a1", None),
        ("q2", None),
        ("a2", TokenUsage(2, 20, 22)),
    ]


async def test_a_reply_without_a_question_keeps_its_usage(store: ConversationStore) -> None:
    await store.create(conversation())
    await store.commit_turn("c1", expected_version=0, user_message=" ", reply="hi", usage=USAGE)
    loaded = await store.load("c1")
    assert loaded is not None and loaded.history == (ChatMessage("assistant", "hi", USAGE),)


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
async def test_a_reopened_store_reads_the_usage_back(backend: Backend, clock: FakeClock) -> None:
    first = backend.open(clock)
    await first.create(conversation())
    await first.commit_turn("c1", expected_version=0, user_message="q", reply="a", usage=USAGE)
    await first.aclose()
    loaded = await backend.open(clock).load("c1")
    assert loaded is not None and loaded.history[-1].usage == USAGE


# -- stores written before usage existed ------------------------------------------

_OLD_SQLITE_SCHEMA = """
CREATE TABLE conversations (id TEXT PRIMARY KEY, system_prompt TEXT NOT NULL,
    max_history_length INTEGER NOT NULL, version INTEGER NOT NULL, updated_at REAL NOT NULL);
CREATE INDEX conversations_by_activity ON conversations (updated_at);
CREATE TABLE messages (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq));
CREATE TABLE turns (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    turn_id TEXT NOT NULL, version INTEGER NOT NULL, reply TEXT NOT NULL,
    PRIMARY KEY (conversation_id, turn_id));
CREATE TABLE leases (conversation_id TEXT PRIMARY KEY, owner TEXT NOT NULL,
    expires_at REAL NOT NULL);
INSERT INTO conversations VALUES ('old', 'be brief', 5, 1, 1700000000.0);
INSERT INTO messages VALUES ('old', 0, 'user', 'hi'), ('old', 1, 'assistant', 'hello');
"""


def _columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(messages)")]


async def test_an_sqlite_file_without_usage_columns_gets_them_and_keeps_its_turns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SQLITE_SCHEMA)
    assert "total_tokens" not in _columns(path)

    async with SQLiteConversationStore(path, clock=FakeClock()) as old:
        loaded = await old.load("old")
        assert loaded is not None
        assert loaded.history == (ChatMessage("user", "hi"), ChatMessage("assistant", "hello"))
        await old.commit_turn("old", expected_version=1, user_message="q", reply="a", usage=USAGE)
    assert _columns(path)[-3:] == ["prompt_tokens", "completion_tokens", "total_tokens"]

    # Opening the upgraded file again adds nothing twice.
    async with SQLiteConversationStore(path, clock=FakeClock()) as again:
        reloaded = await again.load("old")
    assert reloaded is not None
    assert [m.usage for m in reloaded.history] == [None, None, None, USAGE]
    assert len(_columns(path)) == 7


async def test_redis_messages_written_without_usage_still_load(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    async with RedisConversationStore(redis_url, key_prefix=prefix) as opened:
        await opened.create(conversation())
        client: Any = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            # The shape a store wrote before usage existed, and a usage that is not one.
            await client.rpush(
                f"{prefix}messages:c1",
                json.dumps({"role": "user", "content": "hi"}),
                json.dumps({"role": "assistant", "content": "yo", "usage": {"total_tokens": -1}}),
            )
        finally:
            await client.aclose()
        loaded = await opened.load("c1")
    assert loaded is not None
    assert loaded.history == (ChatMessage("user", "hi"), ChatMessage("assistant", "yo"))


# -- the agent records what the LLM reported ----------------------------------------


@pytest.fixture
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer(token_delay=0.001) as server:
        yield server


@pytest.fixture
async def chat(llm: OpenAIStubServer, tmp_path: Path) -> AsyncIterator[ChatAgent]:
    model = OpenAIChatModel(
        model="test-model", api_key="test", base_url=llm.url, timeout=5.0, max_retries=0
    )
    agent = ChatAgent(model=model, store=MemoryConversationStore())
    async with Sentinel(host="127.0.0.1", port=0, system_id="usageSentinel001") as sentinel:
        async with serving(agent, "chat@fame.fabric", fabric_settings(sentinel.port)):
            yield agent
    await model.aclose()


async def test_unary_and_streamed_turns_store_the_usage_the_llm_reported(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    proxy = Agent.remote_by_address("chat@fame.fabric")
    await proxy.start_task(id="u", payload={"system_prompt": "be brief"})
    assert await proxy.run_turn("u", "hello there") == "echo(2): hello there"
    pieces = [piece async for piece in proxy.stream_turn("u", "again")]
    assert "".join(pieces) == "echo(4): again"
    # The stream's usage came in the trailing chunk the adapter asked for.
    assert llm.requests[-1].body["stream_options"] == {"include_usage": True}

    shown = await proxy.get_conversation("u")
    # system "be brief" 4+2, user 4+2, +3 = 15; reply "echo(2): hello there" is 3 words.
    first = {"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18}
    # + reply 4+3, user "again" 4+1 = 27; reply "echo(4): again" is 2 words.
    second = {"prompt_tokens": 27, "completion_tokens": 2, "total_tokens": 29}
    assert shown["history"] == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "echo(2): hello there", "usage": first},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "echo(4): again", "usage": second},
    ]
    assert shown["usage"] == {"prompt_tokens": 42, "completion_tokens": 5, "total_tokens": 47}


async def test_a_retried_turn_id_does_not_count_its_usage_twice(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    proxy = Agent.remote_by_address("chat@fame.fabric")
    await proxy.start_task(id="r", payload={"system_prompt": "be brief"})
    llm.enqueue(Reply("one two three four"))
    await proxy.run_turn("r", "hi", turn_id="t1")
    assert await proxy.run_turn("r", "hi", turn_id="t1") == "one two three four"
    shown = await proxy.get_conversation("r")
    # system 6, user "hi" 5, +3 = 14; four words.
    assert shown["usage"] == {"prompt_tokens": 14, "completion_tokens": 4, "total_tokens": 18}
    assert len(llm.requests) == 1


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_hostile_or_missing_usage_is_stored_as_not_reported_and_the_turn_succeeds(
    chat: ChatAgent, llm: OpenAIStubServer, streamed: bool
) -> None:
    proxy = Agent.remote_by_address("chat@fame.fabric")
    await proxy.start_task(id="h", payload={"system_prompt": "be brief"})
    hostile: list[dict[str, Any]] = [
        {"prompt_tokens": 10**30, "completion_tokens": 1, "total_tokens": 10**30},
        {"prompt_tokens": -5, "completion_tokens": 1, "total_tokens": 1},
        {"prompt_tokens": 1.5, "completion_tokens": 1, "total_tokens": 2.5},
        {},
    ]
    for usage in hostile:
        llm.enqueue(Reply("fine", usage=usage))
        if streamed:
            assert [p async for p in proxy.stream_turn("h", "q")] == ["fine"]
        else:
            assert await proxy.run_turn("h", "q") == "fine"
    # Within bounds, an odd but possible total is kept as the server said.
    llm.enqueue(
        Reply("fine", usage={"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 9})
    )
    await proxy.run_turn("h", "q")
    shown = await proxy.get_conversation("h")
    replies = [m for m in shown["history"] if m["role"] == "assistant"]
    assert [m.get("usage") for m in replies] == [
        None,
        None,
        None,
        None,
        {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 9},
    ]
