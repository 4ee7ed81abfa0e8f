"""How ``fame chat`` opens a conversation: the system prompt always sent, unknown ids
refused unless ``--new``, resumed conversations kept, failures naming agent and operation.

A real sentinel on loopback, the chat agent on a real fabric node, the LLM the stub
server behind the real ``openai`` client; the client is :func:`run_chat` itself.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import pytest

from famefabric import FameFabric, Sentinel
from famefabric.agent import a2a
from famefabric.chat import ChatAgent
from famefabric.chat.client import ChatOptions, run_chat
from famefabric.chat.conversation import DEFAULT_SYSTEM_PROMPT
from famefabric.chat.openai_model import OpenAIChatModel
from famefabric.chat.stores import MemoryConversationStore
from famefabric.settings import FabricSettings
from famefabric.testing import OpenAIStubServer

pytestmark = pytest.mark.timeout(60)


class StrictAgent(ChatAgent):
    """Like the reference's chat agent: a conversation needs a system prompt."""

    seen: list[Any]

    async def start_task(self, params: a2a.TaskSendParams) -> a2a.Task:
        data = a2a.first_data_part(params.message) or {}
        self.seen.append(data.get("system_prompt"))
        if not data.get("system_prompt"):
            raise ValueError("system_prompt is required")
        return await super().start_task(params)


class BrokenTurnAgent(ChatAgent):
    async def run_turn(
        self, conversation_id: str, user_message: str, turn_id: str | None = None
    ) -> str:
        raise RuntimeError("the database is on fire")


@pytest.fixture
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest.fixture
async def settings() -> AsyncIterator[FabricSettings]:
    async with Sentinel(host="127.0.0.1", port=0, system_id="opensentinel001") as sentinel:
        yield replace(
            FabricSettings(),
            admission_url=f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream",
            call_timeout=20.0,
        )


async def serve(
    stack: AsyncExitStack, cls: type[ChatAgent], llm: str, settings: FabricSettings
) -> ChatAgent:
    model = OpenAIChatModel(model="m", api_key="k", base_url=llm, timeout=10.0, max_retries=0)
    stack.push_async_callback(model.aclose)
    agent = cls(model=model, store=MemoryConversationStore())
    fabric = await stack.enter_async_context(FameFabric.create(settings=settings))
    await fabric.serve(agent, "chat@fame.fabric")
    return agent


async def chat(settings: FabricSettings, lines: str, **options: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    read_fd, write_fd = os.pipe()  # a real pipe, as when questions are piped in
    os.write(write_fd, lines.encode())
    os.close(write_fd)
    with os.fdopen(read_fd, encoding="utf-8") as stdin:
        code = await run_chat(
            ChatOptions(stream=False, **options),
            settings,
            stdin=stdin,
            stdout=out,
            stderr=err,
        )
    return code, out.getvalue(), err.getvalue()


async def test_the_system_prompt_is_always_sent(
    llm: OpenAIStubServer, settings: FabricSettings
) -> None:
    async with AsyncExitStack() as stack:
        agent = await serve(stack, StrictAgent, llm.url, settings)
        assert isinstance(agent, StrictAgent)
        agent.seen = []
        code, out, err = await chat(settings, "hi\n")
        assert code == 0, err
        assert agent.seen == [DEFAULT_SYSTEM_PROMPT]
        assert "A> echo(2): hi" in out
        code, out, err = await chat(settings, "", system_prompt="Be terse.")
        assert agent.seen[-1] == "Be terse."


async def test_an_internal_error_names_the_agent_and_the_operation(
    llm: OpenAIStubServer, settings: FabricSettings
) -> None:
    async with AsyncExitStack() as stack:
        await serve(stack, BrokenTurnAgent, llm.url, settings)
        code, out, err = await chat(settings, "hi\n")
        assert code == 0, err
        assert (
            "error: the agent at chat@fame.fabric failed in run_turn: the database is on fire"
            in out
        )


async def test_an_unknown_conversation_is_refused_unless_new_and_resuming_keeps_it(
    llm: OpenAIStubServer, settings: FabricSettings
) -> None:
    async with AsyncExitStack() as stack:
        await serve(stack, ChatAgent, llm.url, settings)
        code, out, err = await chat(settings, "hi\n", conversation="typo0000000001")
        assert code == 1
        assert "no conversation 'typo0000000001' at chat@fame.fabric" in err
        assert "--new" in err and "A> " not in out

        code, out, err = await chat(settings, "hi\n", conversation="typo0000000001", new=True)
        assert code == 0, err
        assert out.startswith("new conversation typo0000000001")
        assert "conversation kept" not in out  # a new one ends on exit unless --keep

        code, out, err = await chat(settings, "", conversation="typo0000000001")
        assert code == 1  # it ended: gone

        code, out, err = await chat(
            settings, "one\n", conversation="keep0000000001", new=True, keep=True
        )
        assert "conversation kept" in out
        code, out, err = await chat(settings, "two\n", conversation="keep0000000001")
        assert code == 0, err
        assert "resumed (2 messages; kept on exit)" in out
        assert "A> echo(4): two" in out
        assert "conversation kept: resume it with  fame chat --conversation keep0000000001" in out
        code, out, err = await chat(settings, "", conversation="keep0000000001")
        assert "resumed (4 messages" in out
