"""``fame conversations list|show|delete`` run as a process against an SQLite file and Redis.

The conversations are written through the store's own API, as an agent would
have left them; the command then reads them from another process. Exit codes:
0 done, 1 no such conversation, 2 the store is unreachable or its URL invalid.
"""

from __future__ import annotations

import calendar
import importlib.metadata
import itertools
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from support.pool import ProcessPool
from support.procs import FAME, base_env
from test_replicas import RedisProcess, fame, redis_binary, store_url

from famefabric.chat.conversation import ConversationState
from famefabric.chat.store import open_store
from famefabric.testing import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

__all__ = ["redis_binary"]  # a fixture of this module too

_databases = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_redis(module_processes: ProcessPool, redis_binary: str) -> RedisProcess:
    """One Redis server for the module; each test takes a database of its own."""
    return await RedisProcess.start_new(module_processes, redis_binary, persistent=False)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store: a new SQLite file, or a Redis database no other test uses."""
    if request.param == "sqlite":
        yield store_url(tmp_path / "conversations.db")
        return
    redis: RedisProcess = request.getfixturevalue("module_redis")
    yield f"redis://127.0.0.1:{redis.port}/{next(_databases)}"


async def fill(url: str) -> None:
    """Store ``older`` with one exchange and ``newer`` without any; ``older`` changed last."""
    async with open_store(url) as opened:
        await opened.create(ConversationState("older", "Be brief.", max_history_length=5))
        await opened.create(ConversationState("newer"))
        await opened.commit_turn("older", expected_version=0, user_message="hi", reply="hello")


async def test_list_shows_ids_message_counts_and_first_words_most_recently_active_first(
    store: str,
) -> None:
    before = int(time.time())
    await fill(store)
    after = int(time.time()) + 1
    listed = fame("conversations", "--store", store, "list")
    assert (listed.returncode, listed.stderr) == (0, "")
    lines = listed.stdout.splitlines()
    activity = [re.search(r"  (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC  ", line) for line in lines]
    assert all(activity), lines
    # The last activity is the store's clock at the last change, shown in UTC.
    for match in activity:
        assert match is not None
        stamp = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
        assert before <= stamp <= after, (match.group(1), before, after)
    shown = [
        line.replace(f"{m.group(1)} UTC  ", "")
        for line, m in zip(lines, activity, strict=True)
        if m
    ]
    assert shown == [
        'older    2 messages  "hi"',
        "newer    0 messages  (no messages yet)",
    ]

    # --store may follow the action too.
    limited = fame("conversations", "list", "--limit", "1", "--store", store)
    assert limited.returncode == 0
    assert re.fullmatch(r'older  \S+ \S+ UTC    2 messages  "hi"\n', limited.stdout)


def test_list_of_an_empty_store_says_so_and_succeeds(store: str) -> None:
    listed = fame("conversations", "--store", store, "list")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.startswith("no conversations in ")


def test_the_default_store_is_in_the_data_dir_whatever_the_working_directory(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data-home"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = subprocess.run(
        [str(FAME), "conversations", "list"],
        cwd=elsewhere,
        env=base_env({"FAME_DATA_DIR": str(data)}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == f"no conversations in sqlite:///{data}/conversations.db\n"
    assert not (elsewhere / "data").exists()
    assert list(elsewhere.iterdir()) == []


def test_fame_version_prints_the_installed_version() -> None:
    result = fame("--version")
    assert result.returncode == 0
    assert result.stdout == f"fame {importlib.metadata.version('famefabric')}\n"


async def test_show_prints_the_conversation_with_its_history_as_json(store: str) -> None:
    await fill(store)
    shown = fame("conversations", "--store", store, "show", "older")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "id": "older",
        "system_prompt": "Be brief.",
        "max_history_length": 5,
        "version": 1,
        "history": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ],
    }


async def test_show_and_delete_of_an_unknown_id_exit_with_status_1_naming_it(store: str) -> None:
    await fill(store)
    for action in ("show", "delete"):
        result = fame("conversations", "--store", store, action, "nobody")
        assert result.returncode == 1, (action, result.stderr)
        assert result.stdout == ""
        assert result.stderr == f"no conversation 'nobody' in {store}\n"


async def test_delete_removes_the_conversation_and_a_second_delete_finds_nothing(
    store: str,
) -> None:
    await fill(store)
    deleted = fame("conversations", "--store", store, "delete", "older")
    assert (deleted.returncode, deleted.stdout) == (0, "deleted older\n")

    again = fame("conversations", "--store", store, "delete", "older")
    assert again.returncode == 1
    listed = fame("conversations", "--store", store, "list")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["newer"]
    async with open_store(store) as opened:
        assert await opened.load("older") is None
        assert await opened.load("newer") is not None


def test_the_store_comes_from_chat_store_when_no_flag_is_given(tmp_path: Path) -> None:
    url = store_url(tmp_path / "from-env.db")
    listed = fame("conversations", "show", "nobody", env={"CHAT_STORE": url})
    assert listed.returncode == 1
    assert listed.stderr == f"no conversation 'nobody' in {url}\n"


def test_an_unreachable_redis_exits_with_status_2_naming_the_store() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for action in (["list"], ["delete", "any"]):
        result = fame("conversations", "--store", url, *action)
        assert result.returncode == 2, (action, result.stderr)
        assert result.stderr.startswith(f"fame: conversation store {url} is unavailable")
        assert "Traceback" not in result.stderr


def test_an_invalid_store_url_exits_with_status_2_listing_the_accepted_forms() -> None:
    result = fame("conversations", "--store", "postgres://db/chat", "list")
    assert result.returncode == 2
    assert "unsupported conversation store URL 'postgres://db/chat'" in result.stderr
    assert "sqlite:///relative/path.db" in result.stderr and "redis://host:port/db" in result.stderr
