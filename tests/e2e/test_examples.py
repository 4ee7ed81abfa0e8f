"""The examples as a new user runs them: clear errors, the original example's make targets."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import pexpect
import pytest
import pytest_asyncio
from support.pool import ProcessPool
from support.procs import FAME, OUR_PYTHON, REPO_ROOT, base_env
from support.sentinels import admission_url

from famefabric.testing import OpenAIStubServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

EXAMPLE_CLIENT = REPO_ROOT / "examples" / "echo" / "client.py"


def test_the_example_client_without_a_sentinel_says_so_in_a_few_lines() -> None:
    env = base_env({"FAME_DIRECT_ADMISSION_URL": admission_url(free_port())})
    result = subprocess.run(
        [str(OUR_PYTHON), str(EXAMPLE_CLIENT)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("echo client: ")
    assert "is the sentinel running?" in result.stderr
    assert len(result.stderr.splitlines()) <= 3, result.stderr


def test_the_stateful_example_has_the_original_make_targets() -> None:
    result = subprocess.run(
        [
            "make",
            "-n",
            "-C",
            str(REPO_ROOT / "examples" / "stateful-conversation"),
            "start",
            "run",
            "run-verbose",
            "stop",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "No rule to make target" not in result.stderr
    for target in ("start", "run", "run-verbose", "stop"):
        assert f"-C ../.. {target}" in result.stdout


@pytest_asyncio.fixture
async def chat_stack(processes: ProcessPool) -> AsyncIterator[dict[str, str]]:
    """A sentinel and the chat agent with the stub LLM, as real processes."""
    with OpenAIStubServer() as llm:
        sentinel = await processes.our_sentinel(node_id="exampleChat01")
        env = sentinel.node_env(
            {"OPENAI_BASE_URL": llm.url, "OPENAI_API_KEY": "k", "CHAT_STORE": "memory://"}
        )
        processes.spawn("chat-agent", [str(FAME), "agent", "chat"], env=env)
        await sentinel.wait_health(
            lambda h: h.get("addresses", 0) >= 1, what="chat binds", within=15
        )
        yield env


@pytest.mark.asyncio
async def test_ctrl_c_in_the_stateful_example_client_ends_it_at_once(
    chat_stack: dict[str, str],
) -> None:
    child = pexpect.spawn(
        str(OUR_PYTHON),
        ["client.py"],
        cwd=str(REPO_ROOT / "examples" / "stateful-conversation"),
        env=chat_stack,
        encoding="utf-8",
        timeout=20,
    )
    try:
        await asyncio.to_thread(child.expect_exact, "Q> ")
        child.sendintr()
        await asyncio.to_thread(child.expect_exact, "goodbye", timeout=5)  # no Enter needed
        await asyncio.to_thread(child.expect, pexpect.EOF, timeout=5)
        assert "Traceback" not in (child.before or "")
    finally:
        child.close(force=True)
