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
from support.clients import fame_chat
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
    result = fame_chat(stack, "--no-stream", questions="first\n\nsecond\n")
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
    result = fame_chat({**os.environ, **env}, questions="")
    assert result.returncode == 2
    assert "cannot reach the sentinel at ws://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr

    result = fame_chat({**os.environ, **empty_sentinel.node_env()}, questions="")
    assert result.returncode == 2
    assert result.stderr.startswith("no agent at chat@fame.fabric — is it running?")


def test_multi_line_messages_and_slash_commands_from_a_pipe(stack: dict[str, str]) -> None:
    questions = (
        "first part \\\n"
        "second part\n"
        '"""\n'
        "block one\n"
        "block two\n"
        '"""\n'
        "/help\n"
        "/history\n"
        "/system Be terse.\n"
        "/history\n"
        "after\n"
        "/bogus\n"
    )
    result = fame_chat(stack, "--no-stream", questions=questions)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Two messages of two lines each: two turns, not four.
    assert "A> echo(2): first part \nsecond part\n" in out
    assert "A> echo(4): block one\nblock two\n" in out
    assert "/system TEXT   start a new conversation" in out  # /help
    assert "Q> first part \nsecond part\nA> echo(2)" in out  # /history
    assert "new conversation " in out and "with system prompt: Be terse." in out
    assert "(no messages yet)" in out  # /history of the new conversation
    assert "A> echo(2): after" in out
    assert "unknown command /bogus; /help lists the commands" in out
    # Three turns, plus the two replies /history shows: no command was sent as a question.
    assert out.count("A> echo(") == 5


def test_a_paste_is_one_message_and_input_history_survives_the_session(
    stack: dict[str, str], tmp_path: Path
) -> None:
    env = {**stack, "FAME_DATA_DIR": str(tmp_path)}
    child = spawn_repl(env, "--no-stream")
    child.expect_exact("Q> ")
    child.send("\x1b[200~pasted one\npasted two\x1b[201~\r")  # what a terminal sends for a paste
    child.expect(r"A> echo\(2\): pasted one\r\npasted two\r\n")
    child.expect_exact("Q> ")
    child.sendline("remember this line")
    child.expect(r"A> echo\(4\): remember this line")
    child.expect_exact("Q> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    history = tmp_path / "chat_history"
    assert "remember this line" in history.read_text()
    assert history.stat().st_mode & 0o077 == 0

    again = spawn_repl(env, "--no-stream")
    again.expect_exact("Q> ")
    again.send("\x1b[A\r")  # up arrow: the last line of the previous session
    again.expect(r"A> echo\(2\): remember this line")
    again.expect_exact("Q> ")
    again.sendeof()
    again.expect(pexpect.EOF)
    again.close()


def test_fame_chat_help_documents_the_commands_and_multi_line_input() -> None:
    result = subprocess.run([FAME, "chat", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for documented in (
        "/help",
        "/new",
        "/system TEXT",
        "/history",
        "end each line but the last with \\",
        '"""',
    ):
        assert documented in result.stdout, documented


def test_verbose_traces_one_line_per_envelope_and_keeps_the_streamed_reply_whole(
    stack: dict[str, str],
) -> None:
    question = " ".join(f"w{i}" for i in range(30))
    result = subprocess.run(
        [FAME, "chat", "--verbose"],
        input=question + "\n",
        env=stack,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one terminal shows both
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert f"A> echo(2): {question}" in lines  # not split by trace lines
    traces = [line for line in lines if " envelope " in line]
    assert len(traces) > 30  # the streamed pieces were traced...
    split = [line for line in traces if not line[:4].isdigit()]
    assert split == []  # ...one line each, starting with the time
