"""The gateway through the official ``openai`` SDK: real sentinel, chat agent, gateway and stub LLM.

One stack per module (open mode, loopback): ``fame sentinel``, ``fame agent
chat`` (in-memory store, the LLM is an :class:`OpenAIStubServer` in this
process) and ``fame gateway``. Tests that need other limits start a second
gateway on the same sentinel.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import pytest_asyncio
from support.agents import our_chat_agent, start_agents
from support.pool import ProcessPool
from support.sentinels import OurSentinel
from support.web_stack import start_gateway

from famefabric.testing import Fail, OpenAIStubServer, Reply

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90), pytest.mark.asyncio(loop_scope="module")]

CHAT = "chat@fame.fabric"
WAIT = 10.0


async def get_json(url: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body

    return await asyncio.to_thread(fetch)


@dataclass
class Stack:
    sentinel: OurSentinel
    llm: OpenAIStubServer
    url: str

    def client(self, **kwargs: object) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=WAIT, **kwargs
        )


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(module_processes: ProcessPool, llm: OpenAIStubServer) -> Stack:
    sentinel = await module_processes.our_sentinel(node_id="gatewayApi01")
    await start_agents(module_processes, sentinel, [our_chat_agent(CHAT, llm.url)])
    _, url = await start_gateway(module_processes, sentinel)
    return Stack(sentinel, llm, url)


@pytest_asyncio.fixture(loop_scope="module")
async def client(stack: Stack) -> AsyncIterator[openai.AsyncOpenAI]:
    stack.llm.reset()
    stack.llm.token_delay = 0.0
    async with stack.client() as client:
        yield client


async def test_conversation_create_retrieve_items_delete(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    conversation = await client.conversations.create(
        items=[{"type": "message", "role": "system", "content": "You are terse."}]
    )
    assert conversation.id.startswith("conv_")
    assert conversation.created_at > 1_700_000_000
    got = await client.conversations.retrieve(conversation.id)
    assert got.id == conversation.id
    await client.responses.create(input="first", conversation=conversation.id)
    await client.responses.create(input="second", conversation=conversation.id)
    # The system prompt reached the LLM with the turn.
    assert stack.llm.requests[-1].messages[0] == {"role": "system", "content": "You are terse."}

    items = await client.conversations.items.list(conversation.id)
    texts = [(item.role, item.content[0].text) for item in items.data]  # type: ignore[union-attr]
    assert texts == [
        ("user", "first"),
        ("assistant", "echo(2): first"),
        ("user", "second"),
        ("assistant", "echo(4): second"),
    ]
    page = await client.conversations.items.list(conversation.id, limit=3)
    assert len(page.data) == 3 and page.has_more
    rest = await client.conversations.items.list(conversation.id, limit=3, after=page.data[-1].id)
    assert [item.content[0].text for item in rest.data] == ["echo(4): second"]  # type: ignore[union-attr]
    newest = await client.conversations.items.list(conversation.id, limit=1, order="desc")
    assert newest.data[0].content[0].text == "echo(4): second"  # type: ignore[union-attr]

    deleted = await client.conversations.delete(conversation.id)
    assert deleted.deleted and deleted.id == conversation.id
    with pytest.raises(openai.NotFoundError) as info:
        await client.conversations.retrieve(conversation.id)
    assert info.value.code == "conversation_not_found"


async def test_responses_create_continues_the_conversation(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    conversation = await client.conversations.create()
    first = await client.responses.create(
        model=CHAT, input="hello there", conversation=conversation.id
    )
    assert first.output_text == "echo(2): hello there"
    assert first.status == "completed"
    second = await client.responses.create(
        input=[{"role": "user", "content": "and again"}], conversation={"id": conversation.id}
    )
    assert second.output_text == "echo(4): and again"
    sent = stack.llm.requests[-1].messages
    assert sent[1:] == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "echo(2): hello there"},
        {"role": "user", "content": "and again"},
    ]


async def test_responses_stream_with_a_conversation(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    conversation = await client.conversations.create()
    await client.responses.create(input="one", conversation=conversation.id)
    stack.llm.enqueue(Reply("streamed reply in several pieces"))
    deltas: list[str] = []
    async with client.responses.stream(
        model=CHAT, input="two", conversation=conversation.id
    ) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert len(deltas) > 1
    assert "".join(deltas) == "streamed reply in several pieces"
    assert final.output_text == "streamed reply in several pieces"
    assert stack.llm.requests[-1].messages[1:3] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo(2): one"},
    ]
    items = await client.conversations.items.list(conversation.id)
    assert items.data[-1].content[0].text == "streamed reply in several pieces"  # type: ignore[union-attr]


async def test_closing_a_stream_cancels_the_turn_upstream(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    conversation = await client.conversations.create()
    stack.llm.token_delay = 0.05
    stack.llm.enqueue(Reply(" ".join(f"word{i}" for i in range(400))))
    seen = 0
    async with client.responses.stream(
        model=CHAT, input="talk", conversation=conversation.id
    ) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                seen += 1
                if seen == 3:
                    break
    record = await asyncio.to_thread(stack.llm.wait_for_stream_closed, 0, WAIT)
    assert record.closed_early and not record.finished
    assert record.tokens_sent < 100
    # The abandoned turn left the history unchanged, and the conversation is free again.
    items = await client.conversations.items.list(conversation.id)
    assert items.data == []
    stack.llm.token_delay = 0.0
    again = await client.responses.create(input="still there?", conversation=conversation.id)
    assert again.output_text == "echo(2): still there?"


async def test_an_idempotency_key_answers_a_retried_post_once(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    conversation = await client.conversations.create()
    headers = {"Idempotency-Key": "retry-me-0001"}
    first = await client.responses.create(
        input="only once", conversation=conversation.id, extra_headers=headers
    )
    asked = len(stack.llm.requests)
    retried = await client.responses.create(
        input="only once", conversation=conversation.id, extra_headers=headers
    )
    assert retried.id == first.id
    assert retried.output_text == first.output_text == "echo(2): only once"
    assert len(stack.llm.requests) == asked
    items = await client.conversations.items.list(conversation.id)
    assert len(items.data) == 2


async def test_chat_completions_stateless_stream_and_not(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    messages: list[dict[str, str]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "what now"},
    ]
    completion = await client.chat.completions.create(model=CHAT, messages=messages)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "echo(4): what now"
    assert stack.llm.requests[-1].messages == messages
    stack.llm.enqueue(Reply("a streamed completion"))
    stream = await client.chat.completions.create(model="chat", messages=messages, stream=True)  # type: ignore[arg-type]
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces) == "a streamed completion"
    models = await client.models.list()
    assert CHAT in [model.id for model in models.data]


async def test_responses_without_a_conversation_are_stateless(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    response = await client.responses.create(instructions="be kind", input="hey")
    assert response.output_text == "echo(2): hey"
    assert stack.llm.requests[-1].messages == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hey"},
    ]


async def test_the_conversation_list_shows_titles_newest_first(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    older = await client.conversations.create()
    await client.responses.create(input="the older one", conversation=older.id)
    newer = await client.conversations.create()
    await client.responses.create(input="the newer one", conversation=newer.id)
    data = (await get_json(f"{stack.url}/v1/conversations"))["data"]
    ids = [entry["id"] for entry in data]
    assert ids.index(newer.id) < ids.index(older.id)
    titles = {entry["id"]: entry["title"] for entry in data}
    assert titles[newer.id] == "the newer one"


# -- errors ------------------------------------------------------------------------------


async def test_unknown_conversation_and_model_are_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.create(input="x", conversation="conv_doesnotexist")
    assert info.value.code == "conversation_not_found"
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.create(model="gpt-4o", input="x")
    assert info.value.code == "model_not_found"
    assert "GET /v1/models" in info.value.message


async def test_no_agent_at_the_address_is_503(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        await client.responses.create(model="nobody@fame.fabric", input="x")
    assert info.value.status_code == 503
    assert info.value.code == "agent_unavailable"


async def test_a_failing_llm_is_502_with_our_code(stack: Stack, client: openai.AsyncOpenAI) -> None:
    stack.llm.enqueue(Fail(401))
    with pytest.raises(openai.APIStatusError) as info:
        await client.responses.create(input="x")
    assert info.value.status_code == 502
    assert info.value.code == "llm_auth"
    stack.llm.enqueue(Fail(401))
    conversation = await client.conversations.create()
    with pytest.raises(openai.APIStatusError) as info:
        async with client.responses.stream(
            model=CHAT, input="x", conversation=conversation.id
        ) as stream:
            async for _ in stream:
                pass
    assert info.value.status_code == 502


async def test_a_busy_conversation_is_409(stack: Stack, client: openai.AsyncOpenAI) -> None:
    conversation = await client.conversations.create()
    stack.llm.token_delay = 0.05
    stack.llm.enqueue(Reply(" ".join(["slow"] * 200)))
    async with client.responses.stream(
        model=CHAT, input="long one", conversation=conversation.id
    ) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                break
        with pytest.raises(openai.ConflictError) as info:
            await client.responses.create(input="meanwhile", conversation=conversation.id)
        assert info.value.code == "conversation_busy"


async def test_bad_requests_are_400_and_413(stack: Stack, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(input=[{"role": "bogus", "content": "x"}])  # type: ignore[list-item]
    assert "input" in info.value.message
    # A 2 MiB body is refused from its Content-Length, before it is read: the client
    # sends the head and a first piece only, then reads the answer (a client sending
    # all of it may meet a closed socket, depending on timing).
    status, answer = await early_answer(stack.url, "/v1/responses", content_length=2 << 20)
    assert status == 413
    assert json.loads(answer)["error"]["code"] == "body_too_large"


async def early_answer(base_url: str, path: str, *, content_length: int) -> tuple[int, bytes]:
    """POST a head announcing ``content_length`` bytes and 1 KiB of them; return the answer."""
    url = urllib.parse.urlsplit(base_url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(url.hostname, url.port), timeout=WAIT
    )
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + b'{"input": "' + b"x" * 1024)
        await writer.drain()
        # The gateway answers and closes ("Connection: close"): read to the end.
        raw = await asyncio.wait_for(reader.read(), timeout=WAIT)
    finally:
        writer.close()
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, body


async def test_too_many_streams_is_429(stack: Stack, module_processes: ProcessPool) -> None:
    _, url = await start_gateway(
        module_processes, stack.sentinel, {"FAME_GATEWAY_MAX_STREAMS_PER_USER": "1"}
    )
    stack.llm.reset()
    stack.llm.enqueue(Reply(" ".join(["slow"] * 200)))
    stack.llm.token_delay = 0.05
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        async with client.responses.stream(model=CHAT, input="hold this stream") as stream:
            async for event in stream:
                if event.type == "response.output_text.delta":
                    break
            with pytest.raises(openai.RateLimitError) as info:
                async with client.responses.stream(model=CHAT, input="a second one") as second:
                    async for _ in second:
                        pass
            assert info.value.code == "too_many_streams"
    stack.llm.token_delay = 0.0


async def test_metadata_and_initial_items_seed_the_conversation(
    stack: Stack, client: openai.AsyncOpenAI
) -> None:
    pairs = {"topic": "trips ✈", "owner": "team-a"}
    conversation = await client.conversations.create(
        metadata=pairs,
        items=[
            {"type": "message", "role": "system", "content": "You plan trips."},
            {"type": "message", "role": "user", "content": "I like trains."},
            {"type": "message", "role": "assistant", "content": "Noted: trains."},
        ],
    )
    assert conversation.metadata == pairs
    assert (await client.conversations.retrieve(conversation.id)).metadata == pairs
    items = await client.conversations.items.list(conversation.id)
    seeded = [(item.role, item.content[0].text) for item in items.data]  # type: ignore[union-attr]
    assert seeded == [("user", "I like trains."), ("assistant", "Noted: trains.")]

    await client.responses.create(input="Where to?", conversation=conversation.id)
    assert stack.llm.requests[-1].messages == [
        {"role": "system", "content": "You plan trips."},
        {"role": "user", "content": "I like trains."},
        {"role": "assistant", "content": "Noted: trains."},
        {"role": "user", "content": "Where to?"},
    ]
    listed = await get_json(f"{stack.url}/v1/conversations")
    mine = [c for c in listed["data"] if c["id"] == conversation.id]
    assert mine[0]["metadata"] == pairs and mine[0]["items_count"] == 4
    plain = await client.conversations.create()
    assert plain.metadata is None
    assert (await client.conversations.retrieve(plain.id)).metadata is None


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "17 pairs, over the limit of 16"),
        ({"metadata": {"k" * 65: "v"}}, "is not 1 to 64 characters"),
        ({"metadata": {"k": "v" * 513}}, "over the limit of 512"),
        ({"metadata": {"k": 7}}, "is int, not a string"),
        ({"metadata": {"k": ["v"]}}, "is list, not a string"),
        ({"metadata": "k=v"}, "got str"),
        ({"items": [{"type": "message", "role": "user", "content": "x"}] * 21}, "items"),
        ({"items": [{"type": "message", "role": "user", "content": "x" * 32_001}]}, "32000"),
        ({"items": [{"type": "message", "role": "tool", "content": "x"}]}, "items"),
    ],
)
async def test_hostile_metadata_and_items_are_400_with_the_openai_error_shape(
    stack: Stack, body: dict[str, Any], said: str
) -> None:
    requests_before = len(stack.llm.requests)
    request = urllib.request.Request(
        f"{stack.url}/v1/conversations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=WAIT)
    assert info.value.code == 400
    error = json.loads(info.value.read())["error"]
    assert error["type"] == "invalid_request_error"
    assert said in error["message"]
    assert len(stack.llm.requests) == requests_before


async def test_the_sdk_sees_a_400_for_too_many_metadata_pairs(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.conversations.create(metadata={f"k{i}": "v" for i in range(17)})
    assert info.value.param == "metadata"
    assert "up to 16 pairs" in info.value.message
