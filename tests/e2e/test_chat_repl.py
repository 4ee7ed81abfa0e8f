"""The chat REPL through a pseudo-terminal, against real sentinel and chat-agent processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
import pytest_asyncio
from support.pool import ProcessPool
from support.sentinels import OurSentinel, admission_url

from famefabric.testing import Fail, OpenAIStubServer, Reply, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

FAME = str(Path(sys.executable).with_name("fame"))


@pytest.fixture(scope="module")
def slow_llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer(token_delay=0.02) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(module_processes: ProcessPool, slow_llm: OpenAIStubServer) -> dict[str, str]:
    processes = module_processes
    sentinel = await processes.our_sentinel(node_id="replSentinel01")
    env = sentinel.node_env(
        {
            "OPENAI_BASE_URL": slow_llm.url,
            "OPENAI_API_KEY": "test",
            "MODEL_NAME": "test",
            "CHAT_STORE": "memory://",
        }
    )
    processes.spawn("chat-agent", [FAME, "agent", "chat"], env=env)
    await sentinel.wait_health(
        lambda health: health.get("addresses", 0) >= 1, what="the chat agent binds", within=15
    )
    return env


def spawn_repl(env: dict[str, str], *args: str) -> pexpect.spawn:
    child = pexpect.spawn(FAME, ["chat", *args], env=env, encoding="utf-8", timeout=15)
    child.expect(r"conversation (\w+)")
    return child


def test_questions_get_streamed_answers_and_exit_says_goodbye(stack: dict[str, str]) -> None:
    child = spawn_repl(stack)
    child.expect_exact("Q> ")
    child.sendline("hello there")
    child.expect(r"A> echo\(2\): hello there\r\n")
    child.expect_exact("Q> ")
    child.sendline("and again")
    child.expect(r"A> echo\(4\): and again\r\n")
    child.expect_exact("Q> ")
    child.sendline("exit")
    child.expect_exact("goodbye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_stops_a_streaming_reply_and_the_conversation_goes_on(
    stack: dict[str, str], slow_llm: OpenAIStubServer
) -> None:
    child = spawn_repl(stack)
    child.expect_exact("Q> ")
    slow_llm.enqueue(Reply(" ".join(f"word{i}" for i in range(300))))
    child.sendline("tell me everything")
    child.expect("word3 ")
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact("Q> ")
    record = slow_llm.wait_for_stream_closed(len(slow_llm.streams) - 1, timeout=5)
    assert record.closed_early and record.tokens_sent < 300
    child.sendline("next question")
    # The stopped turn left no trace: this is the conversation's first stored exchange.
    child.expect(r"A> echo\(2\): next question\r\n")
    child.expect_exact("Q> ")
    child.sendintr()
    child.expect_exact("goodbye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_an_llm_error_is_printed_and_the_repl_goes_on(
    stack: dict[str, str], slow_llm: OpenAIStubServer
) -> None:
    child = spawn_repl(stack, "--no-stream")
    child.expect_exact("Q> ")
    slow_llm.enqueue(Fail(401))
    child.sendline("hi")
    child.expect(r"A> error: .*OPENAI_API_KEY")
    child.expect_exact("Q> ")
    child.sendline("hi")
    child.expect(r"A> echo\(2\): hi")
    child.expect_exact("Q> ")
    child.sendeof()
    child.expect_exact("goodbye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_piped_questions_are_answered_one_per_line(stack: dict[str, str]) -> None:
    result = subprocess.run(
        [FAME, "chat", "--no-stream"],
        input="first\n\nsecond\n",
        env=stack,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.splitlines() if line.startswith("A> ")]
    assert answers == ["A> echo(2): first", "A> echo(4): second"]
    assert result.stdout.rstrip().endswith("goodbye")


@pytest_asyncio.fixture
async def empty_sentinel(processes: ProcessPool) -> OurSentinel:
    """A sentinel no agent attaches to."""
    return await processes.our_sentinel(node_id="emptySentinel1")


def test_unreachable_sentinel_and_missing_agent_exit_with_code_two(
    empty_sentinel: OurSentinel,
) -> None:
    env = {"FAME_DIRECT_ADMISSION_URL": admission_url(free_port())}
    result = subprocess.run(
        [FAME, "chat"],
        input="",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "cannot reach the sentinel at ws://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr

    result = subprocess.run(
        [FAME, "chat"],
        input="",
        env={**os.environ, **empty_sentinel.node_env()},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("no agent at chat@fame.fabric — is it running?")
