"""The stub OpenAI server, driven by the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from famefabric.testing import (
    Delay,
    Echo,
    Fail,
    Hang,
    OpenAIStubServer,
    Reply,
    StreamFailAfter,
)

pytestmark = pytest.mark.timeout(10)

MODEL = "gpt-4o-mini"
HI = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def server() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as running:
        yield running


@pytest.fixture
async def client(server: OpenAIStubServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0) as api:
        yield api


async def collect(stream: openai.AsyncStream[openai.types.chat.ChatCompletionChunk]) -> list[str]:
    pieces = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    return pieces


async def raw_exchange(server: OpenAIStubServer, request: bytes) -> tuple[str, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = head.strip().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        body = await reader.readexactly(int(headers["content-length"]))
        return status_line, headers, body.decode()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_default_answer_echoes_the_last_user_message(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model=MODEL, messages=HI)

    assert completion.choices[0].message.content == "echo(2): hi"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


async def test_streaming_reply_arrives_in_several_chunks(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=MODEL, messages=user("one two three four"), stream=True
    )

    pieces = await collect(stream)

    assert len(pieces) >= 4
    assert "".join(pieces) == "echo(1): one two three four"


async def test_streamed_chunks_carry_role_finish_reason_and_usage(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True}
    )

    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


async def test_first_chunk_arrives_before_the_last_token_is_produced() -> None:
    async with (
        OpenAIStubServer(token_delay=0.05) as server,
        openai.AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0) as client,
    ):
        server.enqueue(Reply("a b c d e f"))
        stream = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        record = server.streams[0]
        assert record.tokens_sent < 6
        assert not record.finished

        assert "".join([chunk.choices[0].delta.content] + await collect(stream)) == "a b c d e f"
        assert server.wait_for_stream_closed(0).finished


async def test_queued_behaviours_are_used_in_order_then_echo_again(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    server.enqueue(Reply("first"), Reply("second"))

    answers = [
        (await client.chat.completions.create(model=MODEL, messages=HI)).choices[0].message.content
        for _ in range(3)
    ]

    assert answers == ["first", "second", "echo(2): hi"]


@pytest.mark.parametrize(
    ("status", "error_class", "code", "text"),
    [
        (400, openai.BadRequestError, None, "Invalid request"),
        (401, openai.AuthenticationError, "invalid_api_key", "Incorrect API key provided: test"),
        (404, openai.NotFoundError, "model_not_found", f"The model `{MODEL}` does not exist"),
        (429, openai.RateLimitError, "rate_limit_exceeded", f"Rate limit reached for {MODEL}"),
        (500, openai.InternalServerError, None, "The server had an error"),
    ],
)
async def test_each_failure_status_raises_the_matching_openai_error(
    server: OpenAIStubServer,
    client: openai.AsyncOpenAI,
    status: int,
    error_class: type[openai.APIStatusError],
    code: str | None,
    text: str,
) -> None:
    server.enqueue(Fail(status))

    with pytest.raises(error_class) as caught:
        await client.chat.completions.create(model=MODEL, messages=HI)

    assert caught.value.status_code == status
    assert caught.value.code == code
    assert text in caught.value.message
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")


async def test_failure_message_can_be_chosen(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    server.enqueue(Fail(500, "boom"))

    with pytest.raises(openai.InternalServerError, match="boom"):
        await client.chat.completions.create(model=MODEL, messages=HI, stream=True)


async def test_rate_limit_carries_retry_after_headers(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    server.enqueue(Fail(429, retry_after=0.25))

    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HI)

    assert caught.value.response.headers["retry-after-ms"] == "250"
    assert caught.value.response.headers["retry-after"] == "1"


async def test_client_retries_a_rate_limited_request(server: OpenAIStubServer) -> None:
    server.enqueue(Fail(429, retry_after=0.01))
    async with openai.AsyncOpenAI(base_url=server.url, api_key="test", max_retries=1) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=HI)

    assert completion.choices[0].message.content == "echo(2): hi"
    assert len(server.requests) == 2


async def test_wrong_api_key_is_rejected_when_a_key_is_configured() -> None:
    async with OpenAIStubServer(api_key="sk-right-key-123456") as server:
        async with openai.AsyncOpenAI(
            base_url=server.url, api_key="sk-wrong-key-654321", max_retries=0
        ) as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await client.chat.completions.create(model=MODEL, messages=HI)
        async with openai.AsyncOpenAI(
            base_url=server.url, api_key="sk-right-key-123456", max_retries=0
        ) as client:
            completion = await client.chat.completions.create(model=MODEL, messages=HI)

    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong-key-654321" not in caught.value.message
    assert completion.choices[0].message.content == "echo(2): hi"


async def test_unknown_model_is_not_found_when_models_are_configured() -> None:
    async with (
        OpenAIStubServer(known_models=["gpt-known"]) as server,
        openai.AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0) as client,
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="gpt-missing", messages=HI)
        models = [model.id async for model in client.models.list()]

    assert caught.value.code == "model_not_found"
    assert "`gpt-missing` does not exist" in caught.value.message
    assert models == ["gpt-known"]


async def test_delayed_answer_makes_the_client_time_out(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    server.enqueue(Delay(5.0))

    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model=MODEL, messages=HI, timeout=0.2)


async def test_delayed_answer_does_not_hold_up_other_requests(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    server.enqueue(Delay(0.6, then=Reply("late")))
    slow = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=HI))
    await asyncio.to_thread(server.wait_for_requests, 1)

    started = time.monotonic()
    fast = await client.chat.completions.create(model=MODEL, messages=HI)

    assert time.monotonic() - started < 0.4
    assert fast.choices[0].message.content == "echo(2): hi"
    assert (await slow).choices[0].message.content == "late"


async def test_hanging_stream_is_recorded_as_closed_when_the_client_gives_up(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    server.enqueue(Hang())

    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model=MODEL, messages=HI, stream=True, timeout=0.2)

    record = server.wait_for_stream_closed(0)
    assert record.closed_early and record.tokens_sent == 0


async def test_abandoned_stream_is_closed_on_the_server_within_100_ms() -> None:
    async with (
        OpenAIStubServer(token_delay=0.01) as server,
        openai.AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0) as client,
    ):
        server.enqueue(Reply(" ".join(f"word{i}" for i in range(500))))
        stream = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        abandoned_at = time.monotonic()
        await stream.close()

        record = server.wait_for_stream_closed(0, timeout=2.0)

    assert record.closed_early and not record.finished
    assert record.closed_at is not None and record.closed_at - abandoned_at < 0.1
    assert 1 <= record.tokens_sent < 500


async def test_stream_failing_midway_raises_a_connection_error(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    server.enqueue(StreamFailAfter(2))
    stream = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    pieces: list[str] = []

    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            pieces.append(chunk.choices[0].delta.content or "")

    record = server.wait_for_stream_closed(0)
    assert "".join(pieces) == "echo(2): hi"
    assert record.tokens_sent == 2 and not record.finished and not record.closed_early


async def test_stream_failing_with_an_error_event_raises_an_api_error(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    server.enqueue(StreamFailAfter(1, error_event=True), Echo())
    stream = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)

    with pytest.raises(openai.APIError, match="The server had an error"):
        await collect(stream)
    again = await client.chat.completions.create(model=MODEL, messages=HI)

    assert again.choices[0].message.content == "echo(2): hi"


async def test_stream_failure_behaves_as_a_server_error_without_streaming(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    server.enqueue(StreamFailAfter(1))

    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=MODEL, messages=HI)


async def test_requests_are_recorded_with_their_messages(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    before = time.monotonic()
    await client.chat.completions.create(model=MODEL, messages=HI, temperature=0.5)

    server.wait_for_requests(1)
    recorded = server.requests[0]
    assert recorded.path == "/v1/chat/completions"
    assert recorded.messages == HI
    assert recorded.body["model"] == MODEL and recorded.body["temperature"] == 0.5
    assert recorded.headers["authorization"] == "Bearer test"
    assert recorded.received_at >= before


async def test_reset_forgets_requests_streams_and_queued_behaviours(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    await collect(await client.chat.completions.create(model=MODEL, messages=HI, stream=True))
    server.enqueue(Reply("never used"))

    server.reset()
    completion = await client.chat.completions.create(model=MODEL, messages=HI)

    assert completion.choices[0].message.content == "echo(2): hi"
    assert len(server.requests) == 1 and server.streams == []


async def test_waiting_for_missing_requests_times_out(server: OpenAIStubServer) -> None:
    with pytest.raises(TimeoutError):
        server.wait_for_requests(1, timeout=0.05)


async def test_many_sequential_requests_reuse_one_connection(
    server: OpenAIStubServer, client: openai.AsyncOpenAI
) -> None:
    for i in range(30):
        messages = user(f"n{i}")
        if i % 2:
            pieces = await collect(
                await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
            )
            assert "".join(pieces) == f"echo(1): n{i}"
        else:
            completion = await client.chat.completions.create(model=MODEL, messages=messages)
            assert completion.choices[0].message.content == f"echo(1): n{i}"

    assert server.connection_count == 1
    assert len(server.requests) == 30


async def test_unknown_path_gets_a_json_404(server: OpenAIStubServer) -> None:
    status, headers, body = await raw_exchange(
        server, b"GET /v1/nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )

    assert status == "HTTP/1.1 404 Not Found"
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["message"] == "Invalid URL (GET /v1/nothing)"


async def test_chunked_request_body_is_accepted(server: OpenAIStubServer) -> None:
    payload = json.dumps({"model": MODEL, "messages": user("chunked")}).encode()
    half = len(payload) // 2
    chunks = b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (
        half,
        payload[:half],
        len(payload) - half,
        payload[half:],
    )
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + chunks
    )

    status, _, body = await raw_exchange(server, request)

    assert status == "HTTP/1.1 200 OK"
    assert json.loads(body)["choices"][0]["message"]["content"] == "echo(1): chunked"


async def raw_until_closed(server: OpenAIStubServer, request: bytes) -> bytes:
    """Send ``request`` on a new connection and return everything until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: -5\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + b"x-pad: " + b"a" * 200_000 + b"\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nbad header line\r\n\r\n",
    ],
    ids=["garbage", "negative-length", "huge-head", "bad-header"],
)
async def test_malformed_requests_get_a_json_400_and_the_connection_closes(
    server: OpenAIStubServer, request_bytes: bytes
) -> None:
    answer = await raw_until_closed(server, request_bytes)

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request"), answer[:200]
    error = json.loads(body)["error"]
    assert error["message"].startswith("Malformed HTTP request: ")
    assert server.requests == []


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    server: OpenAIStubServer,
) -> None:
    def completion(text: str, *, close: bool = False) -> bytes:
        body = json.dumps({"model": MODEL, "messages": user(text)}).encode()
        connection = b"connection: close\r\n" if close else b""
        return (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + connection
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )

    answer = await raw_until_closed(server, completion("one") + completion("two", close=True))

    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.index(b"echo(1): one") < answer.index(b"echo(1): two")
    assert server.connection_count == 1


async def test_an_http_1_0_stream_ends_with_the_connection(server: OpenAIStubServer) -> None:
    body = json.dumps({"model": MODEL, "messages": user("old"), "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.0\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body) + body
    )

    answer = await raw_until_closed(server, request)

    head, _, events = answer.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert events.rstrip().endswith(b"data: [DONE]")
    assert server.wait_for_stream_closed(0).finished


async def test_stopping_the_server_ends_hanging_requests() -> None:
    server = OpenAIStubServer()
    await server.__aenter__()
    server.enqueue(Hang())
    async with openai.AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0) as api:
        hanging = asyncio.create_task(api.chat.completions.create(model=MODEL, messages=HI))
        await asyncio.to_thread(server.wait_for_requests, 1)

        await server.__aexit__(None, None, None)

        with pytest.raises(openai.APIConnectionError):
            await hanging


def test_server_stops_idempotently_and_can_be_used_synchronously() -> None:
    server = OpenAIStubServer()
    with server:
        with openai.OpenAI(base_url=server.url, api_key="test", max_retries=0) as client:
            completion = client.chat.completions.create(model=MODEL, messages=HI)
    server.stop()

    assert completion.choices[0].message.content == "echo(2): hi"
    with pytest.raises(RuntimeError):
        _ = server.url


def test_command_line_server_answers_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "famefabric.testing.openai_server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        with openai.OpenAI(base_url=url, api_key="test", max_retries=0) as client:
            completion = client.chat.completions.create(model=MODEL, messages=HI)
        assert completion.choices[0].message.content == "echo(2): hi"
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=5)

    assert process.returncode == 0
    assert errors == ""
