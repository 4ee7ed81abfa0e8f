"""The conversation store contract, run against the memory, SQLite and Redis stores."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from famefabric.chat import store as store_module
from famefabric.chat import stores
from famefabric.chat.conversation import ChatMessage, ConversationState
from famefabric.chat.store import (
    KEPT_TURN_IDS,
    ConversationExists,
    ConversationNotFound,
    ConversationStore,
    StoreUnavailable,
    VersionConflict,
    open_store,
)
from famefabric.chat.stores import MemoryConversationStore, SQLiteConversationStore
from famefabric.chat.stores.redis import RedisConversationStore
from famefabric.errors import ConfigurationError

if TYPE_CHECKING:
    from conftest import RedisServer


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """Opens stores of one kind on one location; except in memory, they share their data."""

    name: str
    build: Callable[[FakeClock, float | None], ConversationStore]
    opened: list[ConversationStore] = field(default_factory=list)

    @property
    def is_shared(self) -> bool:
        return self.name != "memory"

    def open(self, clock: FakeClock, *, idle_ttl: float | None = None) -> ConversationStore:
        store = self.build(clock, idle_ttl)
        self.opened.append(store)
        return store


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        built = Backend(
            "memory", lambda clock, ttl: MemoryConversationStore(idle_ttl=ttl, clock=clock)
        )
    elif request.param == "sqlite":
        path = tmp_path / "conversations.db"
        built = Backend(
            "sqlite", lambda clock, ttl: SQLiteConversationStore(path, idle_ttl=ttl, clock=clock)
        )
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"test:{uuid.uuid4().hex}:"
        built = Backend(
            "redis",
            lambda clock, ttl: RedisConversationStore(
                url, key_prefix=prefix, idle_ttl=ttl, clock=clock
            ),
        )
    yield built
    for opened in built.opened:
        await opened.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(backend: Backend, clock: FakeClock) -> ConversationStore:
    return backend.open(clock)


def conversation(
    conversation_id: str = "c1",
    *,
    system_prompt: str = "answer briefly",
    max_history_length: int = 3,
    history: tuple[ChatMessage, ...] = (),
    version: int = 0,
) -> ConversationState:
    return ConversationState(conversation_id, system_prompt, max_history_length, history, version)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 2.0) -> None:
    """Return once ``check`` is true; fail if it is still false after ``within`` seconds."""
    async with asyncio.timeout(within):
        for _ in range(int(within / 0.01)):
            if await check():
                return
            await asyncio.sleep(0.01)
    pytest.fail(f"still false after {within} s")


async def test_a_created_conversation_loads_back_equal(store: ConversationStore) -> None:
    state = conversation(
        history=(ChatMessage("user", "café ✓?"), ChatMessage("assistant", '"quoted"\nline')),
        version=7,
    )
    await store.create(state)
    assert await store.load("c1") == state


async def test_loading_an_unknown_conversation_returns_none(store: ConversationStore) -> None:
    assert await store.load("nobody") is None


async def test_create_trims_a_long_history_to_the_window(store: ConversationStore) -> None:
    history = tuple(ChatMessage("user", f"m{i}") for i in range(10))
    await store.create(conversation(history=history, max_history_length=2))
    loaded = await store.load("c1")
    assert loaded is not None
    assert loaded.history == history[-4:]


async def test_creating_an_existing_conversation_raises_conversation_exists(
    store: ConversationStore,
) -> None:
    await store.create(conversation())
    with pytest.raises(ConversationExists) as caught:
        await store.create(conversation(system_prompt="another"))
    assert str(caught.value) == "conversation 'c1' already exists; load it or choose another id"
    assert caught.value.conversation_id == "c1"
    assert await store.load("c1") == conversation()


async def test_commit_turn_appends_the_user_message_and_the_reply_in_order(
    store: ConversationStore,
) -> None:
    await store.create(conversation())
    first = await store.commit_turn("c1", expected_version=0, user_message="hi", reply="hello")
    second = await store.commit_turn("c1", expected_version=1, user_message="2+2?", reply="4")
    assert second.history == (
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "hello"),
        ChatMessage("user", "2+2?"),
        ChatMessage("assistant", "4"),
    )
    assert (first.version, second.version) == (1, 2)
    assert await store.load("c1") == second


async def test_commit_turn_trims_the_history_to_the_window(store: ConversationStore) -> None:
    expected = conversation(max_history_length=3)
    await store.create(expected)
    for turn in range(5):
        committed = await store.commit_turn(
            "c1", expected_version=turn, user_message=f"q{turn}", reply=f"a{turn}"
        )
        expected = expected.with_turn(f"q{turn}", f"a{turn}")
        assert committed == expected
    assert len(expected.history) == 6
    assert expected.history[0] == ChatMessage("user", "q2")
    assert await store.load("c1") == expected


async def test_a_blank_user_message_stores_only_the_reply(store: ConversationStore) -> None:
    await store.create(conversation())
    committed = await store.commit_turn("c1", expected_version=0, user_message=" \n", reply="hi!")
    assert committed.history == (ChatMessage("assistant", "hi!"),)
    assert await store.load("c1") == committed


async def test_a_commit_on_a_stale_version_raises_and_changes_nothing(
    store: ConversationStore,
) -> None:
    await store.create(conversation())
    current = await store.commit_turn("c1", expected_version=0, user_message="a", reply="b")
    with pytest.raises(VersionConflict) as caught:
        await store.commit_turn(
            "c1", expected_version=0, user_message="late", reply="lost", turn_id="t-late"
        )
    assert str(caught.value) == (
        "conversation 'c1' is at version 1, not 0: another turn was committed meanwhile; "
        "reload it and retry"
    )
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
    assert await store.load("c1") == current
    assert await store.find_turn("c1", "t-late") is None


async def test_a_commit_on_an_unknown_conversation_raises_conversation_not_found(
    store: ConversationStore,
) -> None:
    with pytest.raises(ConversationNotFound) as caught:
        await store.commit_turn("ghost", expected_version=0, user_message="a", reply="b")
    assert str(caught.value) == (
        "conversation 'ghost' does not exist (never created, deleted or expired after being "
        "idle); create it first"
    )


async def test_find_turn_returns_the_reply_committed_under_that_turn_id(
    store: ConversationStore,
) -> None:
    await store.create(conversation())
    await store.commit_turn("c1", expected_version=0, user_message="a", reply="r1", turn_id="t1")
    await store.commit_turn("c1", expected_version=1, user_message="b", reply="r2")
    assert await store.find_turn("c1", "t1") == "r1"
    assert await store.find_turn("c1", "t2") is None
    assert await store.find_turn("ghost", "t1") is None


async def test_only_the_most_recent_turn_ids_are_remembered(store: ConversationStore) -> None:
    await store.create(conversation(max_history_length=1))
    for turn in range(KEPT_TURN_IDS + 1):
        await store.commit_turn(
            "c1", expected_version=turn, user_message="q", reply=f"r{turn}", turn_id=f"t{turn}"
        )
    assert await store.find_turn("c1", "t0") is None
    assert await store.find_turn("c1", "t1") == "r1"
    assert await store.find_turn("c1", f"t{KEPT_TURN_IDS}") == f"r{KEPT_TURN_IDS}"


async def test_delete_removes_the_conversation_and_its_turns(store: ConversationStore) -> None:
    await store.create(conversation())
    await store.commit_turn("c1", expected_version=0, user_message="a", reply="b", turn_id="t1")
    assert await store.delete("c1") is True
    assert await store.load("c1") is None
    assert await store.delete("c1") is False
    await store.create(conversation())
    assert await store.find_turn("c1", "t1") is None
    assert await store.list_ids() == ["c1"]


async def test_list_ids_returns_the_most_recently_active_first_up_to_the_limit(
    store: ConversationStore, clock: FakeClock
) -> None:
    for conversation_id in ("a", "b", "c"):
        await store.create(conversation(conversation_id))
        clock.advance(1)
    await store.commit_turn("a", expected_version=0, user_message="x", reply="y")
    clock.advance(1)
    await store.touch("b")
    assert await store.list_ids() == ["b", "a", "c"]
    assert await store.list_ids(limit=2) == ["b", "a"]


async def test_touching_an_unknown_conversation_raises_conversation_not_found(
    store: ConversationStore,
) -> None:
    with pytest.raises(ConversationNotFound):
        await store.touch("ghost")


async def test_expire_idle_deletes_conversations_idle_longer_than_given(
    store: ConversationStore, clock: FakeClock
) -> None:
    for conversation_id in ("old", "touched", "committed"):
        await store.create(conversation(conversation_id))
    clock.advance(100)
    await store.touch("touched")
    await store.commit_turn("committed", expected_version=0, user_message="a", reply="b")
    clock.advance(50)
    assert await store.expire_idle(120) == 1
    assert await store.load("old") is None
    assert sorted(await store.list_ids()) == ["committed", "touched"]
    assert await store.expire_idle(120) == 0


async def test_a_store_with_idle_ttl_forgets_conversations_idle_longer(
    backend: Backend, clock: FakeClock
) -> None:
    store = backend.open(clock, idle_ttl=60)
    await store.create(conversation())
    await store.commit_turn("c1", expected_version=0, user_message="a", reply="b", turn_id="t1")
    clock.advance(59)
    assert await store.list_ids() == ["c1"]
    await store.touch("c1")
    clock.advance(59)
    assert await store.find_turn("c1", "t1") == "b"
    clock.advance(2)
    assert await store.load("c1") is None
    assert await store.find_turn("c1", "t1") is None
    assert await store.list_ids() == []
    with pytest.raises(ConversationNotFound):
        await store.commit_turn("c1", expected_version=1, user_message="a", reply="b")
    await store.create(conversation())
    assert await store.load("c1") == conversation()


async def test_a_lease_excludes_other_owners_until_released(store: ConversationStore) -> None:
    assert await store.acquire_lease("c1", "replica-a", ttl=30)
    assert not await store.acquire_lease("c1", "replica-b", ttl=30)
    assert await store.acquire_lease("c2", "replica-b", ttl=30)
    await store.release_lease("c1", "replica-a")
    assert await store.acquire_lease("c1", "replica-b", ttl=30)


async def test_a_lease_expires_by_itself(store: ConversationStore, clock: FakeClock) -> None:
    assert await store.acquire_lease("c1", "replica-a", ttl=0.05)
    assert not await store.acquire_lease("c1", "replica-b", ttl=30)
    clock.advance(0.1)
    await eventually(lambda: store.acquire_lease("c1", "replica-b", ttl=30))
    assert not await store.acquire_lease("c1", "replica-a", ttl=30)


async def test_acquiring_a_held_lease_again_renews_it_for_its_holder(
    store: ConversationStore, clock: FakeClock
) -> None:
    assert await store.acquire_lease("c1", "replica-a", ttl=0.05)
    assert await store.acquire_lease("c1", "replica-a", ttl=30)
    clock.advance(1)
    assert not await store.acquire_lease("c1", "replica-b", ttl=30)
    assert await store.acquire_lease("c1", "replica-a", ttl=0.05)
    clock.advance(0.1)
    await eventually(lambda: store.acquire_lease("c1", "replica-b", ttl=30))


async def test_releasing_a_lease_held_by_another_owner_does_nothing(
    store: ConversationStore,
) -> None:
    assert await store.acquire_lease("c1", "replica-a", ttl=30)
    await store.release_lease("c1", "replica-b")
    assert not await store.acquire_lease("c1", "replica-b", ttl=30)


async def test_exactly_one_of_twenty_concurrent_commits_on_one_version_wins(
    backend: Backend, clock: FakeClock
) -> None:
    replicas = [backend.open(clock)]
    if backend.is_shared:
        replicas.append(backend.open(clock))
    await replicas[0].create(conversation())
    outcomes = await asyncio.gather(
        *(
            replicas[attempt % len(replicas)].commit_turn(
                "c1", expected_version=0, user_message=f"q{attempt}", reply=f"a{attempt}"
            )
            for attempt in range(20)
        ),
        return_exceptions=True,
    )
    winners = [outcome for outcome in outcomes if isinstance(outcome, ConversationState)]
    conflicts = [outcome for outcome in outcomes if isinstance(outcome, VersionConflict)]
    assert (len(winners), len(conflicts)) == (1, 19)
    for replica in replicas:
        assert await replica.load("c1") == winners[0]


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
async def test_a_reopened_store_sees_the_committed_state(
    backend: Backend, clock: FakeClock
) -> None:
    first = backend.open(clock)
    await first.create(conversation())
    committed = await first.commit_turn(
        "c1", expected_version=0, user_message="a", reply="b", turn_id="t1"
    )
    await first.aclose()
    reopened = backend.open(clock)
    assert await reopened.load("c1") == committed
    assert await reopened.find_turn("c1", "t1") == "b"


async def test_the_sqlite_store_creates_its_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dirs" / "conversations.db"
    async with SQLiteConversationStore(path) as store:
        await store.create(conversation())
    with sqlite3.connect(path) as db:
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    db.close()
    assert mode == "wal"


async def test_the_sqlite_store_is_unavailable_when_its_file_cannot_be_opened(
    tmp_path: Path,
) -> None:
    async with SQLiteConversationStore(tmp_path) as store:
        with pytest.raises(StoreUnavailable) as caught:
            await store.load("c1")
    assert str(caught.value) == (
        f"conversation store sqlite:///{tmp_path} is unavailable (unable to open database "
        "file); turns will work again when it is back"
    )
    # No aiosqlite worker outlives the failure: one left behind would report to
    # this test's event loop after it closed ("Event loop is closed" in a thread).
    assert not [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]


async def test_the_redis_store_is_unavailable_while_redis_is_down_and_recovers(
    private_redis_server: RedisServer,
) -> None:
    async with RedisConversationStore(private_redis_server.url) as store:
        await store.create(conversation())
        private_redis_server.stop()
        with pytest.raises(StoreUnavailable) as caught:
            await store.load("c1")
        message = str(caught.value)
        assert message.startswith(f"conversation store {private_redis_server.url} is unavailable (")
        assert message.endswith("); turns will work again when it is back")
        private_redis_server.start()
        assert await store.load("c1") is None
        await store.create(conversation())
        assert await store.load("c1") == conversation()


async def test_open_store_builds_a_memory_store() -> None:
    async with open_store("memory://") as store:
        assert isinstance(store, MemoryConversationStore)
        assert store.url == "memory://"


async def test_open_store_resolves_a_relative_sqlite_path_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_store("sqlite:///data/chat/conversations.db") as store:
        assert isinstance(store, SQLiteConversationStore)
        await store.create(conversation())
    assert (tmp_path / "data" / "chat" / "conversations.db").is_file()


async def test_open_store_takes_an_absolute_sqlite_path_after_four_slashes(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/conversations.db"
    assert url.startswith("sqlite:////")
    async with open_store(url) as store:
        assert store.url == url
        await store.create(conversation())
    assert (tmp_path / "conversations.db").is_file()


async def test_open_store_builds_a_redis_store_for_a_redis_url(redis_url: str) -> None:
    async with open_store(redis_url, idle_ttl=30) as store:
        assert isinstance(store, RedisConversationStore)
        assert store.url == redis_url


@pytest.mark.parametrize(
    "url", ["postgres://db/chat", "memory", "memory://x", "sqlite://", "sqlite:///", "chat.db"]
)
def test_open_store_rejects_an_unknown_url_naming_the_accepted_forms(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    assert str(caught.value) == (
        f"unsupported conversation store URL {url!r}; expected memory://, "
        "sqlite:///relative/path.db, sqlite:////absolute/path.db or redis://host:port/db"
    )


def test_open_store_hides_the_password_of_a_rejected_url() -> None:
    with pytest.raises(ConfigurationError, match=r"'postgres://chat:\*\*\*@db/chat'"):
        open_store("postgres://chat:secret@db/chat")


def test_open_store_rejects_a_redis_url_whose_database_is_not_a_number() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store("redis://127.0.0.1:6379/first")
    assert str(caught.value) == (
        "conversation store URL 'redis://127.0.0.1:6379/first' is not a valid Redis URL "
        "(the database 'first' is not a number); expected redis://host:port/db"
    )


def test_open_store_rejects_a_redis_url_whose_port_is_not_a_number() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^conversation store URL 'redis://h:abc/0' is not a valid Redis URL \(",
    ):
        open_store("redis://h:abc/0")


@pytest.mark.parametrize("idle_ttl", [0, -5.0])
def test_open_store_rejects_an_idle_ttl_that_is_not_positive(idle_ttl: float) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store("memory://", idle_ttl=idle_ttl)
    assert str(caught.value) == (
        f"idle_ttl={idle_ttl!r} must be a positive number of seconds, or unset"
    )


def test_the_public_names_are_exported() -> None:
    assert sorted(stores.__all__) == sorted(
        name for name in dir(stores) if name.endswith("ConversationStore")
    )
    assert all(hasattr(store_module, name) for name in store_module.__all__)


async def test_several_stores_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    # Switching a new file to WAL fails at once with "database is locked" when
    # another connection opens it at the same moment; the store tries again.
    for attempt in range(20):
        path = str(tmp_path / f"race{attempt}.db")
        stores = [SQLiteConversationStore(path) for _ in range(4)]
        try:
            await asyncio.gather(
                *(
                    store.create(ConversationState(f"c{index}-{n}"))
                    for index, store in enumerate(stores)
                    for n in range(5)
                )
            )
        finally:
            for store in stores:
                await store.aclose()
        async with SQLiteConversationStore(path) as check:
            assert len(await check.list_ids(limit=100)) == 20


async def test_a_cancelled_call_leaves_the_store_usable(store: ConversationStore) -> None:
    """A turn cancelled mid-call (a client closing its stream) must not wedge the store."""
    await store.create(conversation("c1"))
    for yields in range(12):
        call = asyncio.ensure_future(store.load("c1"))
        for _ in range(yields):
            await asyncio.sleep(0)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        write = asyncio.ensure_future(store.acquire_lease("c1", f"o{yields}", 5.0))
        for _ in range(yields):
            await asyncio.sleep(0)
        write.cancel()
        await asyncio.gather(write, return_exceptions=True)
        await store.release_lease("c1", f"o{yields}")
    state = await store.load("c1")
    assert state is not None
    await store.commit_turn(
        "c1", expected_version=0, user_message="hi", reply="hello", turn_id=None
    )
    loaded = await store.load("c1")
    assert loaded is not None and loaded.version == 1


async def test_a_cancelled_aclose_of_the_sqlite_store_still_closes_it(tmp_path: Path) -> None:
    """Cancelled once or twice at any point, aclose closes the connection and its thread."""
    for yields in range(1, 9):  # a task cancelled before it first runs never calls aclose
        store = SQLiteConversationStore(tmp_path / f"close-{yields}.db")
        await store.create(conversation("c1"))
        async with store._lock:  # aclose must wait for the lock: cancel it there or later
            closing = asyncio.ensure_future(store.aclose())
            for _ in range(yields):
                await asyncio.sleep(0)
            closing.cancel()
        for _ in range(yields):
            await asyncio.sleep(0)
        closing.cancel()  # a second cancel must not cut the close short either
        outcome = await asyncio.gather(closing, return_exceptions=True)
        assert isinstance(outcome[0], asyncio.CancelledError | type(None)), outcome
        assert store._db is None
        # The worker thread ends right after answering the close: wait for that, bounded.
        workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
        for worker in workers:
            await asyncio.to_thread(worker.join, 5.0)
        assert not [worker for worker in workers if worker.is_alive()]
