"""Token usage per turn, end to end: ``fame chat``'s ``/usage`` and ``fame conversations show``.

Real processes: a sentinel, a chat agent storing in an SQLite file and calling
the stub LLM, ``fame chat`` asking (streamed, then whole replies), and
``fame conversations show`` reading the file from another process. The stub
reports deterministic counts: prompt tokens are 3 plus, per message sent, 4
plus its words; completion tokens are the reply's words.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from support.clients import fame_chat
from support.pool import ProcessPool

from famefabric.testing import OpenAIStubServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

FAME = str(Path(sys.executable).with_name("fame"))

# system "be brief" 4+2, user "hello there" 4+2, +3; reply "echo(2): hello there", 3 words.
FIRST = "15 prompt + 3 completion = 18 tokens"
# + that reply 4+3, user "again" 4+1; reply "echo(4): again", 2 words.
SECOND = "27 prompt + 2 completion = 29 tokens"


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer(token_delay=0.001) as server:
        yield server


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('usage') / 'conversations.db'}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(module_processes: ProcessPool, llm: OpenAIStubServer, store: str) -> dict[str, str]:
    sentinel = await module_processes.our_sentinel(node_id="usageSentinel1")
    env = sentinel.node_env(
        {
            "OPENAI_BASE_URL": llm.url,
            "OPENAI_API_KEY": "test",
            "MODEL_NAME": "test",
            "CHAT_STORE": store,
        }
    )
    module_processes.spawn("chat-agent", [FAME, "agent", "chat"], env=env)
    await sentinel.wait_health(
        lambda health: health.get("addresses", 0) >= 1, what="the chat agent binds", within=15
    )
    return env


def chat(env: dict[str, str], *args: str, questions: str) -> str:
    result = fame_chat(env, *args, questions=questions)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_usage_shows_each_turn_and_the_total_in_the_repl_and_in_conversations_show(
    stack: dict[str, str], store: str
) -> None:
    before = chat(
        stack,
        "--conversation",
        "tokens1",
        "--new",
        "--keep",
        "--system-prompt",
        "be brief",
        questions="/usage\nhello there\n/usage\n",  # streamed
    )
    assert "(no turns yet)" in before
    assert "A> echo(2): hello there" in before
    assert f"turn 1: {FIRST}\ntotal: {FIRST}\n" in before

    after = chat(stack, "--no-stream", "--conversation", "tokens1", questions="again\n/usage\n")
    assert "A> echo(4): again" in after
    assert (
        f"turn 1: {FIRST}\nturn 2: {SECOND}\ntotal: 42 prompt + 5 completion = 47 tokens\n"
    ) in after

    shown = subprocess.run(
        [FAME, "conversations", "--store", store, "show", "tokens1"],
        env=stack,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    conversation = json.loads(shown.stdout)
    assert [m.get("usage") for m in conversation["history"]] == [
        None,
        {"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18},
        None,
        {"prompt_tokens": 27, "completion_tokens": 2, "total_tokens": 29},
    ]
    assert conversation["usage"] == {
        "prompt_tokens": 42,
        "completion_tokens": 5,
        "total_tokens": 47,
    }


def test_usage_is_listed_in_the_help(stack: dict[str, str]) -> None:
    assert "/usage         show the tokens each kept turn used" in chat(stack, questions="/help\n")
