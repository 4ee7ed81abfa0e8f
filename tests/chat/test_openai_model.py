"""Tests for the OpenAI adapter, run against the local stub of the Chat Completions API."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx2
import openai
import pytest

from famefabric.chat.conversation import ChatMessage
from famefabric.chat.model import (
    ChatModel,
    ChatModelError,
    ModelAuthenticationError,
    ModelBadResponse,
    ModelFailure,
    ModelNotConfigured,
    ModelNotFound,
    ModelRateLimited,
    ModelTimeout,
    ModelUnreachable,
)
from famefabric.chat.openai_model import OpenAIChatModel
from famefabric.testing.openai_server import (
    Delay,
    Fail,
    OpenAIStubServer,
    Reply,
    StreamFailAfter,
)

MODEL = "gpt-4.1-mini"
MESSAGES = [
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "hi"),
    ChatMessage("assistant", "hello"),
    ChatMessage("user", "tell me a story"),
]
LONG_REPLY = " ".join(f"word{i}" for i in range(200))


@pytest.fixture
def server() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest.fixture
def slow_server() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer(token_delay=0.02) as server:
        yield server


def make_model(base_url: str, **options: float) -> OpenAIChatModel:
    timeout = options.get("timeout", 5.0)
    return OpenAIChatModel(
        model=MODEL, api_key="sk-test", base_url=base_url, timeout=timeout, max_retries=0
    )


@pytest.fixture
async def model(server: OpenAIStubServer) -> AsyncIterator[OpenAIChatModel]:
    model = make_model(server.url)
    yield model
    await model.aclose()


@pytest.fixture
async def slow_model(slow_server: OpenAIStubServer) -> AsyncIterator[OpenAIChatModel]:
    model = make_model(slow_server.url)
    yield model
    await model.aclose()


def closed_port_url() -> str:
    """Return the URL of a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def collect(
    model: OpenAIChatModel, pieces: list[str], messages: list[ChatMessage] = MESSAGES
) -> None:
    async for piece in model.stream(messages):
        pieces.append(piece)


def test_openai_chat_model_is_a_chat_model(server: OpenAIStubServer) -> None:
    model: ChatModel = make_model(server.url)

    assert model.describe() == f"{MODEL} at {server.url}"


async def test_complete_returns_the_reply_and_sends_the_messages_exactly(
    server: OpenAIStubServer, model: OpenAIChatModel
) -> None:
    reply = await model.complete(MESSAGES)

    assert reply == "echo(4): tell me a story"
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "tell me a story"},
        ],
    }
    assert request.headers["authorization"] == "Bearer sk-test"


async def test_successive_calls_reuse_one_pooled_connection(
    server: OpenAIStubServer, model: OpenAIChatModel
) -> None:
    await model.complete(MESSAGES)
    await model.complete(MESSAGES)
    assert [piece async for piece in model.stream(MESSAGES)]
    await model.complete(MESSAGES)

    assert server.connection_count == 1


async def test_stream_yields_pieces_that_concatenate_to_the_reply(
    server: OpenAIStubServer, model: OpenAIChatModel
) -> None:
    server.enqueue(Reply("the quick brown fox"))

    pieces = [piece async for piece in model.stream(MESSAGES)]

    assert pieces == ["the ", "quick ", "brown ", "fox"]
    [request] = server.requests
    assert request.body["stream"] is True
    assert request.messages == [message.to_dict() for message in MESSAGES]
    assert server.wait_for_stream_closed(0, timeout=1.0).finished


async def test_complete_returns_empty_text_for_an_empty_reply(
    server: OpenAIStubServer, model: OpenAIChatModel
) -> None:
    server.enqueue(Reply(""), Reply(""))

    assert await model.complete(MESSAGES) == ""
    assert [piece async for piece in model.stream(MESSAGES)] == []


AUTH_MESSAGE = (
    "the LLM server rejected the API key: check OPENAI_API_KEY"
    " and your organization/project permissions"
)
NOT_FOUND_MESSAGE = (
    f"model {MODEL!r} does not exist or your key cannot use it:"
    " set MODEL_NAME to a model your key can use"
)
STATUS_CASES = [
    pytest.param(Fail(401), ModelAuthenticationError, AUTH_MESSAGE, id="401"),
    pytest.param(Fail(403), ModelAuthenticationError, AUTH_MESSAGE, id="403"),
    pytest.param(Fail(404), ModelNotFound, NOT_FOUND_MESSAGE, id="404"),
    pytest.param(
        Fail(429, message="Rate limit reached for requests"),
        ModelRateLimited,
        "the LLM server refused the request for rate or quota limits"
        " (Rate limit reached for requests):"
        " retry later or check the plan and quota of the OPENAI_API_KEY account",
        id="429",
    ),
    pytest.param(
        Fail(400),
        ModelFailure,
        "the LLM server answered HTTP 400 (Invalid request: the request was rejected.):"
        " retry the turn, or act on the server's message if it persists",
        id="400",
    ),
    pytest.param(
        Fail(500),
        ModelFailure,
        "the LLM server answered HTTP 500"
        " (The server had an error while processing your request. Sorry about that!):"
        " retry the turn, or act on the server's message if it persists",
        id="500",
    ),
    pytest.param(
        Fail(503),
        ModelFailure,
        "the LLM server answered HTTP 503"
        " (The engine is currently overloaded, please try again later.):"
        " retry the turn, or act on the server's message if it persists",
        id="503",
    ),
]


@pytest.mark.parametrize(("failure", "error_class", "message"), STATUS_CASES)
async def test_complete_maps_an_error_status_to_its_chat_model_error(
    server: OpenAIStubServer,
    model: OpenAIChatModel,
    failure: Fail,
    error_class: type[ChatModelError],
    message: str,
) -> None:
    server.enqueue(failure)

    with pytest.raises(error_class) as raised:
        await model.complete(MESSAGES)

    assert str(raised.value) == message
    assert raised.value.data == {"code": error_class.error_code}
    assert isinstance(raised.value.__cause__, openai.APIStatusError)
    assert raised.value.__cause__.status_code == failure.status
    assert len(server.requests) == 1


@pytest.mark.parametrize(("failure", "error_class", "message"), STATUS_CASES)
async def test_stream_maps_an_error_status_to_its_chat_model_error(
    server: OpenAIStubServer,
    model: OpenAIChatModel,
    failure: Fail,
    error_class: type[ChatModelError],
    message: str,
) -> None:
    server.enqueue(failure)
    pieces: list[str] = []

    with pytest.raises(error_class) as raised:
        await collect(model, pieces)

    assert str(raised.value) == message
    assert pieces == []


async def test_a_model_the_server_does_not_know_is_named_in_the_error() -> None:
    with OpenAIStubServer(known_models=["gpt-4o"]) as server:
        model = make_model(server.url)
        try:
            with pytest.raises(ModelNotFound) as raised:
                await model.complete(MESSAGES)
        finally:
            await model.aclose()

    assert str(raised.value) == NOT_FOUND_MESSAGE
    assert raised.value.model == MODEL


async def test_a_404_that_is_not_about_the_model_names_the_url(
    server: OpenAIStubServer,
) -> None:
    base_url = server.url + "/nowhere"
    model = make_model(base_url)
    try:
        with pytest.raises(ModelNotFound) as raised:
            await model.complete(MESSAGES)
    finally:
        await model.aclose()

    assert str(raised.value) == (
        f"the LLM server at {base_url} answered 404 for model {MODEL!r}:"
        " check OPENAI_BASE_URL and set MODEL_NAME to a model it serves"
    )


async def test_a_wrong_api_key_is_reported_as_an_authentication_error() -> None:
    with OpenAIStubServer(api_key="sk-right") as server:
        model = make_model(server.url)
        try:
            with pytest.raises(ModelAuthenticationError) as raised:
                await model.complete(MESSAGES)
        finally:
            await model.aclose()

    assert str(raised.value) == AUTH_MESSAGE
    assert "sk-test" not in str(raised.value)


async def test_a_slow_server_raises_model_timeout_naming_the_timeout(
    server: OpenAIStubServer,
) -> None:
    server.enqueue(Delay(2.0))
    model = make_model(server.url, timeout=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(ModelTimeout) as raised:
            await model.complete(MESSAGES)
    finally:
        await model.aclose()

    assert time.monotonic() - started < 1.5
    assert str(raised.value) == (
        "the LLM server did not answer within 0.2 s:"
        " raise OPENAI_TIMEOUT (or pass timeout=) if the model is slow"
    )
    assert raised.value.data == {"code": "llm_timeout"}


async def test_a_stream_that_stalls_raises_model_timeout(server: OpenAIStubServer) -> None:
    server.enqueue(Delay(2.0))
    model = make_model(server.url, timeout=0.2)
    try:
        with pytest.raises(ModelTimeout):
            await collect(model, [])
    finally:
        await model.aclose()


async def test_a_closed_port_raises_model_unreachable_naming_the_url() -> None:
    base_url = closed_port_url()
    model = make_model(base_url)
    try:
        with pytest.raises(ModelUnreachable) as raised:
            await model.complete(MESSAGES)
        with pytest.raises(ModelUnreachable):
            await collect(model, [])
    finally:
        await model.aclose()

    assert str(raised.value) == (
        f"cannot connect to the LLM server at {base_url}:"
        " check that it is running and that OPENAI_BASE_URL is right"
    )
    assert isinstance(raised.value.__cause__, openai.APIConnectionError)


async def test_a_missing_api_key_raises_model_not_configured_without_any_request() -> None:
    sent: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(500)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(record)) as http_client:
        model = OpenAIChatModel(model=MODEL, api_key=None, http_client=http_client)

        assert not model.is_configured
        assert model.describe() == f"{MODEL} at https://api.openai.com/v1 (no API key)"
        with pytest.raises(ModelNotConfigured) as raised:
            await model.complete(MESSAGES)
        with pytest.raises(ModelNotConfigured):
            await collect(model, [])
        await model.aclose()

    assert sent == []
    assert str(raised.value) == (
        "no OpenAI API key: set OPENAI_API_KEY (or pass api_key=) for the chat agent"
    )
    assert raised.value.data == {"code": "llm_not_configured"}


async def test_an_empty_api_key_counts_as_missing() -> None:
    model = OpenAIChatModel(model=MODEL, api_key="", base_url="https://api.openai.com/v1/")

    with pytest.raises(ModelNotConfigured):
        await model.complete(MESSAGES)
    await model.aclose()


async def test_a_custom_base_url_without_a_key_sends_a_placeholder_key(
    server: OpenAIStubServer,
) -> None:
    model = OpenAIChatModel(model=MODEL, api_key=None, base_url=server.url, max_retries=0)
    try:
        assert model.is_configured
        assert await model.complete(MESSAGES) == "echo(4): tell me a story"
    finally:
        await model.aclose()

    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


async def test_an_abandoned_stream_closes_the_connection_within_100_ms(
    slow_server: OpenAIStubServer, slow_model: OpenAIChatModel
) -> None:
    slow_server.enqueue(Reply(LONG_REPLY))
    stream = slow_model.stream(MESSAGES)
    assert await anext(stream) == "word0 "

    closing = time.monotonic()
    await stream.aclose()

    record = await asyncio.to_thread(slow_server.wait_for_stream_closed, 0, 1.0)
    assert record.closed_early
    assert record.closed_at is not None
    assert record.closed_at - closing < 0.1
    assert record.tokens_sent < 200


async def test_a_cancelled_stream_closes_the_connection_within_100_ms(
    slow_server: OpenAIStubServer, slow_model: OpenAIChatModel
) -> None:
    slow_server.enqueue(Reply(LONG_REPLY))
    pieces: list[str] = []
    first_piece = asyncio.Event()

    async def consume() -> None:
        async for piece in slow_model.stream(MESSAGES):
            pieces.append(piece)
            first_piece.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_piece.wait(), timeout=1.0)
    cancelling = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    record = await asyncio.to_thread(slow_server.wait_for_stream_closed, 0, 1.0)
    assert record.closed_early
    assert record.closed_at is not None
    assert record.closed_at - cancelling < 0.1
    assert pieces[0] == "word0 "


async def test_a_connection_cut_mid_stream_raises_model_unreachable_after_the_pieces(
    server: OpenAIStubServer, model: OpenAIChatModel
) -> None:
    server.enqueue(StreamFailAfter(3))
    pieces: list[str] = []

    with pytest.raises(ModelUnreachable) as raised:
        await collect(model, pieces)

    assert pieces == ["echo(4): ", "tell ", "me "]
    assert str(raised.value) == (
        f"lost the connection to the LLM server at {server.url} during the reply: retry the turn"
    )


async def test_an_error_event_mid_stream_raises_model_failure_after_the_pieces(
    server: OpenAIStubServer, model: OpenAIChatModel
) -> None:
    server.enqueue(StreamFailAfter(2, error_event=True))
    pieces: list[str] = []

    with pytest.raises(ModelFailure) as raised:
        await collect(model, pieces)

    assert pieces == ["echo(4): ", "tell "]
    assert str(raised.value) == (
        "the LLM server reported an error"
        " (The server had an error while processing your request. Sorry about that!):"
        " retry the turn, or act on the server's message if it persists"
    )


def completion_body(choices: list[object]) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": choices,
    }


@pytest.mark.parametrize(
    "choices",
    [
        pytest.param([], id="no-choices"),
        pytest.param(
            [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant"}}],
            id="no-content",
        ),
        pytest.param(
            [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": None},
                }
            ],
            id="null-content",
        ),
    ],
)
async def test_complete_returns_empty_text_when_the_completion_has_none(
    choices: list[object],
) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=completion_body(choices))

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http_client:
        model = OpenAIChatModel(model=MODEL, api_key="sk-test", http_client=http_client)
        assert await model.complete(MESSAGES) == ""


@pytest.mark.parametrize(
    ("response", "detail"),
    [
        pytest.param(
            httpx2.Response(200, text="<html>hello</html>", headers={"content-type": "text/html"}),
            "expected JSON, got '<html>hello</html>'",
            id="html",
        ),
        pytest.param(
            httpx2.Response(
                200, content=b"{not json", headers={"content-type": "application/json"}
            ),
            "invalid JSON: Expecting property name enclosed in double quotes",
            id="broken-json",
        ),
    ],
)
async def test_an_answer_that_is_not_a_completion_raises_model_bad_response(
    response: httpx2.Response, detail: str
) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return response

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http_client:
        model = OpenAIChatModel(
            model=MODEL, api_key="sk-test", max_retries=0, http_client=http_client
        )
        with pytest.raises(ModelBadResponse) as raised:
            await model.complete(MESSAGES)

    assert str(raised.value) == (
        f"the LLM server sent something that is not a chat completion ({detail}):"
        " check that OPENAI_BASE_URL points at an OpenAI-compatible /v1 endpoint"
    )
    assert raised.value.data == {"code": "llm_error"}


async def test_a_stream_with_a_broken_event_raises_model_bad_response() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        body = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\ndata: {oops\n\n'
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    pieces: list[str] = []
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http_client:
        model = OpenAIChatModel(model=MODEL, api_key="sk-test", http_client=http_client)
        with pytest.raises(ModelBadResponse):
            await collect(model, pieces)

    assert pieces == ["hi"]


async def test_aclose_leaves_a_caller_provided_http_client_open() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=completion_body([]))

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http_client:
        model = OpenAIChatModel(model=MODEL, api_key="sk-test", http_client=http_client)
        await model.aclose()
        await model.aclose()

        assert not http_client.is_closed


async def test_describe_names_the_model_and_the_base_url(server: OpenAIStubServer) -> None:
    model = OpenAIChatModel(model="llama3", api_key="k", base_url=server.url + "/")

    assert model.describe() == f"llama3 at {server.url}"
    await model.aclose()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": " "}, "model=' ' must name a model, e.g. 'gpt-4.1-mini'"),
        ({"timeout": 0.0}, "timeout=0.0 must be a positive number of seconds"),
        ({"max_retries": -1}, "max_retries=-1 must be zero or more"),
    ],
)
def test_constructor_rejects_invalid_arguments(options: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"model": MODEL, "api_key": "k", **options}

    with pytest.raises(ValueError) as raised:
        OpenAIChatModel(**arguments)  # type: ignore[arg-type]

    assert str(raised.value) == message


async def test_each_failed_call_is_logged_once_at_warning_with_its_code_never_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="famefabric.chat.openai_model")
    with OpenAIStubServer(api_key="sk-right") as server:
        model = make_model(server.url)
        try:
            with pytest.raises(ModelAuthenticationError):
                await model.complete(MESSAGES)
        finally:
            await model.aclose()
    unreachable = make_model(closed_port_url())
    try:
        with pytest.raises(ModelUnreachable):
            await collect(unreachable, [])
    finally:
        await unreachable.aclose()

    records = [r for r in caplog.records if r.name == "famefabric.chat.openai_model"]
    assert [r.levelname for r in records] == ["WARNING", "WARNING"]
    auth, refused = (r.getMessage() for r in records)
    assert "failed: llm_auth, HTTP 401" in auth
    assert "failed: llm_unreachable (APIConnectionError)" in refused
    assert not any("sk-" in r.getMessage() for r in records)
