"""Chat input bounds: history window, system prompt size, conversation ids; errors in the caller's terms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from support.in_process import fabric_settings, serving

from famefabric import Agent, RemoteError, Sentinel
from famefabric.chat import ChatAgent
from famefabric.chat.limits import ChatInputError, ChatInputLimits, conversation_id
from famefabric.chat.openai_model import OpenAIChatModel
from famefabric.chat.stores import MemoryConversationStore
from famefabric.errors import ConfigurationError
from famefabric.testing import OpenAIStubServer

pytestmark = pytest.mark.timeout(60)

LIMITS = ChatInputLimits(max_history_limit=50, max_system_prompt_chars=100)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "max_history_length must be a whole number from 1 to 1000, got 0"),
        (-3, "max_history_length must be a whole number from 1 to 1000, got -3"),
        (1001, "max_history_length must be a whole number from 1 to 1000, got 1001"),
        (2**63 - 1, "got a 19-digit number"),
        (None, "max_history_length is empty: give a whole number from 1 to 1000"),
        (2.5, "got 2.5"),
        ("10", "got '10'"),
        (True, "got true/false"),
        ([10], "got a list"),
    ],
)
def test_history_length_outside_one_to_the_cap_is_refused(value: object, message: str) -> None:
    with pytest.raises(ChatInputError, match=re.escape(message)):
        ChatInputLimits().history_length(value)


def test_history_length_within_the_cap_is_accepted_and_the_cap_is_configurable() -> None:
    assert ChatInputLimits().history_length(1) == 1
    assert ChatInputLimits().history_length(1000) == 1000
    limits = ChatInputLimits.from_env(
        {"CHAT_MAX_HISTORY_LIMIT": "5000", "CHAT_MAX_SYSTEM_PROMPT_CHARS": "10"}
    )
    assert limits.history_length(5000) == 5000
    with pytest.raises(ChatInputError, match="over the limit of 10"):
        limits.system_prompt("x" * 11)
    with pytest.raises(ConfigurationError, match="CHAT_MAX_HISTORY_LIMIT='0' must be at least 1"):
        ChatInputLimits.from_env({"CHAT_MAX_HISTORY_LIMIT": "0"})


def test_system_prompt_must_be_text_within_the_cap() -> None:
    assert ChatInputLimits().system_prompt("x" * 32_000) == "x" * 32_000
    with pytest.raises(ChatInputError, match="32,001 characters is over the limit of 32,000"):
        ChatInputLimits().system_prompt("x" * 32_001)
    with pytest.raises(ChatInputError, match="system_prompt must be text, got an object"):
        ChatInputLimits().system_prompt({"a": 1})


@pytest.mark.parametrize("good", ["a", "conv_1.2:3-x", "A" * 128])
def test_conversation_ids_that_follow_the_rule(good: str) -> None:
    assert conversation_id(good) == good


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        ("", "''"),
        ("A" * 129, "characters)"),
        ("has space", "'has space'"),
        ("slash/y", "'slash/y'"),
        ("é", "'é'"),
    ],
)
def test_conversation_ids_that_break_the_rule_say_what_it_is(bad: str, shown: str) -> None:
    with pytest.raises(ChatInputError) as caught:
        conversation_id(bad)
    message = str(caught.value)
    assert shown in message
    assert message.endswith("use 1 to 128 characters among letters, digits and . _ : -")
    assert len(message) < 200


@pytest.fixture
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest.fixture
async def chat(llm: OpenAIStubServer) -> AsyncIterator[ChatAgent]:
    model = OpenAIChatModel(
        model="test-model", api_key="test", base_url=llm.url, timeout=1.0, max_retries=0
    )
    agent = ChatAgent(model=model, store=MemoryConversationStore(), input_limits=LIMITS)
    async with Sentinel(host="127.0.0.1", port=0, system_id="chatlimits0001") as sentinel:
        async with serving(agent, "chat@fame.fabric", fabric_settings(sentinel.port)):
            yield agent
    await model.aclose()


def proxy() -> Agent:
    return Agent.remote_by_address("chat@fame.fabric")


async def refusal(call: Any) -> str:
    with pytest.raises(RemoteError) as caught:
        await call
    message = str(caught.value)
    for internal in ("unhashable", "datatype mismatch", "Traceback", "result too large"):
        assert internal not in message
    return message


async def test_bad_inputs_over_the_fabric_get_errors_in_the_callers_terms(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    agent = proxy()
    for payload, expected in [
        ({"max_history_length": 0}, "max_history_length must be a whole number from 1 to 50"),
        ({"max_history_length": None}, "max_history_length is empty"),
        ({"max_history_length": 2**63 - 1}, "got a 19-digit number"),
        ({"max_history_length": 51}, "from 1 to 50, got 51"),
        ({"max_history_length": "ten"}, "got 'ten'"),
        ({"system_prompt": "p" * 101}, "system_prompt of 101 characters is over the limit of 100"),
        ({"system_prompt": ["a"]}, "system_prompt must be text, got a list"),
    ]:
        assert expected in await refusal(agent.start_task(id="c", payload=payload))
    assert "is not valid: use 1 to 128 characters" in await refusal(
        agent.start_task(id="x" * 100_000, payload={})
    )
    assert "must be text" in await refusal(agent.run_turn(["c"], "hi"))
    assert "must be text" in await refusal(agent.get_conversation(7))
    assert "is not valid" in await refusal(agent.end_conversation("no spaces please"))
    assert "limit must be a whole number" in await refusal(agent.list_conversations(["x"]))
    # Nothing was stored by the refusals; a valid start then works and keeps its window.
    assert await agent.list_conversations() == []
    await agent.start_task(id="ok:1", payload={"max_history_length": 50})
    assert (
        await agent.run_turn("ok:1", "hello") == "echo(2): hello"
    )  # the default system prompt and the message
    assert (await agent.get_conversation("ok:1"))["max_history_length"] == 50
