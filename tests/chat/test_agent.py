"""ChatAgent over a real sentinel, with the OpenAI adapter calling the stub server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from support.in_process import fabric_settings, serving

from famefabric import Agent, RemoteError, Sentinel
from famefabric.chat import ChatAgent
from famefabric.chat.openai_model import OpenAIChatModel
from famefabric.chat.stores import MemoryConversationStore
from famefabric.testing import Delay, Echo, Fail, OpenAIStubServer, Reply, StreamFailAfter

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer(token_delay=0.002) as server:
        yield server


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    async with Sentinel(host="127.0.0.1", port=0, system_id="chatsentinel0001") as running:
        yield running


@pytest.fixture
async def chat(sentinel: Sentinel, llm: OpenAIStubServer) -> AsyncIterator[ChatAgent]:
    model = OpenAIChatModel(
        model="test-model", api_key="test", base_url=llm.url, timeout=1.0, max_retries=0
    )
    agent = ChatAgent(model=model, store=MemoryConversationStore(), max_message_chars=1000)
    async with serving(agent, "chat@fame.fabric", fabric_settings(sentinel.port)):
        yield agent
    await model.aclose()


def proxy() -> Agent:
    return Agent.remote_by_address("chat@fame.fabric")


async def start(conversation: str, *, history: int = 10, prompt: str = "be brief") -> None:
    task = await proxy().start_task(
        id=conversation, payload={"system_prompt": prompt}, history_length=history
    )
    assert task.status.state == "working"


async def history(conversation: str) -> list[dict[str, str]]:
    state = await proxy().get_conversation(conversation)
    return state["history"]  # type: ignore[no-any-return]


async def test_a_conversation_keeps_its_history(chat: ChatAgent, llm: OpenAIStubServer) -> None:
    await start("c1")
    assert await proxy().run_turn("c1", "") == "echo(1): "
    assert await proxy().run_turn("c1", "hello there") == "echo(3): hello there"
    assert llm.requests[-1].messages == [
        {"role": "system", "content": "be brief"},
        {"role": "assistant", "content": "echo(1): "},
        {"role": "user", "content": "hello there"},
    ]


async def test_the_sixth_turn_with_window_three_sends_one_plus_six_plus_one(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    await start("w", history=3)
    for n in range(6):
        await proxy().run_turn("w", f"q{n}")
    sixth = llm.requests[-1].messages
    assert len(sixth) == 1 + 6 + 1
    assert sixth[0]["role"] == "system"
    assert [m["content"] for m in sixth[1:]] == [
        "q2",
        "echo(6): q2",
        "q3",
        "echo(8): q3",
        "q4",
        "echo(8): q4",
        "q5",
    ]
    assert len(await history("w")) == 6


async def test_payload_window_wins_over_history_length(chat: ChatAgent) -> None:
    await proxy().start_task(id="p", payload={"max_history_length": 1}, history_length=9)
    for n in range(3):
        await proxy().run_turn("p", f"m{n}")
    assert [m["content"] for m in await history("p")] == ["m2", "echo(4): m2"]


async def test_a_failed_llm_call_leaves_the_history_unchanged(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    await start("a")
    await proxy().run_turn("a", "first")
    before = await history("a")
    llm.enqueue(Fail(500))
    with pytest.raises(RemoteError) as info:
        await proxy().run_turn("a", "second")
    assert info.value.data == {"code": "llm_error"}
    assert await history("a") == before
    assert await proxy().run_turn("a", "second") == "echo(4): second"


@pytest.mark.parametrize(
    ("behaviour", "code", "words"),
    [
        (Fail(401), "llm_auth", "OPENAI_API_KEY"),
        (Fail(404), "llm_model_not_found", "MODEL_NAME"),
        (Fail(429), "llm_rate_limited", "rate"),
        (Delay(3.0), "llm_timeout", "1"),
    ],
)
async def test_llm_errors_reach_the_client_with_a_stable_code(
    chat: ChatAgent, llm: OpenAIStubServer, behaviour: object, code: str, words: str
) -> None:
    await start("e")
    llm.enqueue(behaviour)  # type: ignore[arg-type]
    with pytest.raises(RemoteError) as info:
        await proxy().run_turn("e", "hi")
    assert info.value.data == {"code": code}
    assert words in info.value.message
    assert "Traceback" not in info.value.message
    assert await history("e") == []


async def test_turns_of_one_conversation_run_in_arrival_order(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    await start("o")
    llm.enqueue(Delay(0.3, then=Reply("slow")), Reply("fast"))
    asked = len(llm.requests)
    first = asyncio.ensure_future(proxy().run_turn("o", "one"))
    # The first turn is at the model (holding the conversation) before the second is sent.
    await asyncio.to_thread(llm.wait_for_requests, asked + 1, 5.0)
    second = asyncio.ensure_future(proxy().run_turn("o", "two"))
    assert await asyncio.gather(first, second) == ["slow", "fast"]
    assert [m["content"] for m in await history("o")] == ["one", "slow", "two", "fast"]


async def test_fifty_conversations_at_once_keep_separate_histories(chat: ChatAgent) -> None:
    ids = [f"conv{n}" for n in range(50)]
    await asyncio.gather(*(start(i) for i in ids))
    for turn in range(2):
        await asyncio.gather(*(proxy().run_turn(i, f"{i}-t{turn}") for i in ids))
    for i in ids:
        assert [m["content"] for m in await history(i)] == [
            f"{i}-t0",
            f"echo(2): {i}-t0",
            f"{i}-t1",
            f"echo(4): {i}-t1",
        ]


async def test_conversation_errors_say_what_to_do(chat: ChatAgent) -> None:
    with pytest.raises(RemoteError, match=r"no conversation 'ghost': start one with start_task"):
        await proxy().run_turn("ghost", "hi")
    await start("d")
    with pytest.raises(RemoteError, match=r"conversation 'd' already exists"):
        await start("d")
    with pytest.raises(RemoteError, match=r"message of 1001 characters is over the limit of 1000"):
        await proxy().run_turn("d", "x" * 1001)
    await proxy().end_conversation("d")
    await proxy().end_conversation("d")  # harmless
    with pytest.raises(RemoteError, match="no conversation 'd'"):
        await proxy().run_turn("d", "hi")


async def test_a_retried_turn_id_is_answered_from_the_store(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    await start("r")
    first = await proxy().run_turn("r", "hi", turn_id="turn-1")
    calls = len(llm.requests)
    assert await proxy().run_turn("r", "hi", turn_id="turn-1") == first
    assert len(llm.requests) == calls
    assert len(await history("r")) == 2


async def test_stream_turn_yields_pieces_and_commits_once(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    await start("s")
    pieces = [p async for p in proxy().stream_turn("s", "tell me a story")]
    assert len(pieces) > 1
    assert "".join(pieces) == "echo(2): tell me a story"
    assert [m["content"] for m in await history("s")] == [
        "tell me a story",
        "echo(2): tell me a story",
    ]


async def test_an_abandoned_stream_closes_the_llm_response_and_keeps_history(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    llm.enqueue(Echo())
    await start("x")
    await proxy().run_turn("x", "before")
    before = await history("x")
    llm.enqueue(Reply(" ".join(f"w{i}" for i in range(400))))
    server_before = len(llm.streams)
    stream = proxy().stream_turn("x", "long answer please")
    iterator = stream.__aiter__()
    first = await iterator.__anext__()
    assert first
    abandoned_at = time.monotonic()
    await iterator.aclose()  # type: ignore[attr-defined]
    record = await asyncio.to_thread(llm.wait_for_stream_closed, server_before, 5.0)
    assert record.closed_early
    assert record.closed_at is not None and record.closed_at - abandoned_at < 0.1
    assert record.tokens_sent < 400
    assert await history("x") == before
    assert await proxy().run_turn("x", "after") == "echo(4): after"


async def test_a_stream_failing_midway_reports_the_error_and_keeps_history(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    await start("f")
    llm.enqueue(StreamFailAfter(2))
    pieces: list[str] = []
    with pytest.raises(RemoteError) as info:
        async for piece in proxy().stream_turn("f", "go"):
            pieces.append(piece)
    assert len(pieces) == 2
    assert info.value.data is not None
    assert await history("f") == []


async def test_metadata_and_a_seeded_history_start_the_conversation(
    chat: ChatAgent, llm: OpenAIStubServer
) -> None:
    seeded = [{"role": "user", "content": "I like tea."}, {"role": "assistant", "content": "Tea."}]
    await proxy().start_task(
        id="m", payload={"system_prompt": "be brief", "metadata": {"k": "v"}, "history": seeded}
    )
    state = await proxy().get_conversation("m")
    assert state["metadata"] == {"k": "v"} and state["history"] == seeded
    await proxy().run_turn("m", "and now?")
    assert llm.requests[-1].messages == [
        {"role": "system", "content": "be brief"},
        *seeded,
        {"role": "user", "content": "and now?"},
    ]
    await start("plain")
    assert "metadata" not in await proxy().get_conversation("plain")


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "17 pairs, over the limit of 16"),
        ({"metadata": {"k": 1}}, "is int, not a string"),
        ({"history": [{"role": "system", "content": "x"}]}, "history\\[0\\] has role 'system'"),
        ({"history": [{"role": "user", "content": "x" * 1001}]}, "over the limit of 1000"),
    ],
)
async def test_start_task_refuses_bad_metadata_or_history_and_stores_nothing(
    chat: ChatAgent, payload: dict[str, object], said: str
) -> None:
    with pytest.raises(RemoteError, match=said):
        await proxy().start_task(id="bad", payload=payload)
    with pytest.raises(RemoteError, match="no conversation 'bad'"):
        await proxy().get_conversation("bad")
