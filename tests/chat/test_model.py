"""Tests for the model seam: the error classes and ScriptedModel."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import aclosing

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    ScriptedModel,
    echo,
    split_pieces,
)
from famefabric.errors import OperationError

SYSTEM = ChatMessage("system", "be brief")
HELLO = [SYSTEM, ChatMessage("user", "hello there")]


@pytest.mark.parametrize(
    ("error", "error_code", "message"),
    [
        (
            ModelNotConfigured(),
            "llm_not_configured",
            "no OpenAI API key: set OPENAI_API_KEY (or pass api_key=) for the chat agent",
        ),
        (
            ModelAuthenticationError(),
            "llm_auth",
            "the LLM server rejected the API key: check OPENAI_API_KEY"
            " and your organization/project permissions",
        ),
        (
            ModelNotFound("xyz"),
            "llm_model_not_found",
            "model 'xyz' does not exist or your key cannot use it:"
            " set MODEL_NAME to a model your key can use",
        ),
        (
            ModelNotFound("xyz", server_url="http://llm.local/v1"),
            "llm_model_not_found",
            "the LLM server at http://llm.local/v1 answered 404 for model 'xyz':"
            " check OPENAI_BASE_URL and set MODEL_NAME to a model it serves",
        ),
        (
            ModelRateLimited("Rate limit reached"),
            "llm_rate_limited",
            "the LLM server refused the request for rate or quota limits (Rate limit reached):"
            " retry later or check the plan and quota of the OPENAI_API_KEY account",
        ),
        (
            ModelRateLimited(),
            "llm_rate_limited",
            "the LLM server refused the request for rate or quota limits:"
            " retry later or check the plan and quota of the OPENAI_API_KEY account",
        ),
        (
            ModelUnreachable("http://127.0.0.1:9/v1"),
            "llm_unreachable",
            "cannot connect to the LLM server at http://127.0.0.1:9/v1:"
            " check that it is running and that OPENAI_BASE_URL is right",
        ),
        (
            ModelUnreachable("http://127.0.0.1:9/v1", reply_started=True),
            "llm_unreachable",
            "lost the connection to the LLM server at http://127.0.0.1:9/v1 during the reply:"
            " retry the turn",
        ),
        (
            ModelTimeout(2.5),
            "llm_timeout",
            "the LLM server did not answer within 2.5 s:"
            " raise OPENAI_TIMEOUT (or pass timeout=) if the model is slow",
        ),
        (
            ModelFailure("overloaded", status=503),
            "llm_error",
            "the LLM server answered HTTP 503 (overloaded):"
            " retry the turn, or act on the server's message if it persists",
        ),
        (
            ModelFailure("stream broke"),
            "llm_error",
            "the LLM server reported an error (stream broke):"
            " retry the turn, or act on the server's message if it persists",
        ),
        (
            ModelBadResponse("invalid JSON: Expecting value"),
            "llm_error",
            "the LLM server sent something that is not a chat completion"
            " (invalid JSON: Expecting value): check that OPENAI_BASE_URL points at an"
            " OpenAI-compatible /v1 endpoint",
        ),
    ],
)
def test_each_error_carries_its_stable_code_and_exact_message(
    error: ChatModelError, error_code: str, message: str
) -> None:
    assert isinstance(error, OperationError)
    assert error.error_code == error_code
    assert str(error) == message
    assert error.message == message
    assert error.code == -32000
    assert error.data == {"code": error_code}


def test_error_messages_put_a_multiline_server_message_on_one_line() -> None:
    error = ModelFailure("first line\n  second line\n", status=500)

    assert str(error) == (
        "the LLM server answered HTTP 500 (first line second line):"
        " retry the turn, or act on the server's message if it persists"
    )


def test_error_messages_shorten_a_very_long_server_message() -> None:
    error = ModelFailure("x" * 1000)

    assert "x" * 299 + "…)" in str(error)
    assert "x" * 300 not in str(error)


def test_error_messages_say_when_the_server_gave_no_explanation() -> None:
    assert str(ModelFailure("", status=502)).startswith(
        "the LLM server answered HTTP 502 (no explanation given):"
    )


def test_echo_counts_messages_and_repeats_the_last_user_message() -> None:
    messages = [SYSTEM, ChatMessage("user", "one"), ChatMessage("assistant", "1")]

    assert echo([*messages, ChatMessage("user", "two")]) == "echo(4): two"
    assert echo(messages) == "echo(3): one"
    assert echo([SYSTEM]) == "echo(1): "


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("hi there", ["hi", " there"]),
        ("  lead and trail ", ["  lead", " and", " trail", " "]),
        ("one\nline", ["one", "\nline"]),
        ("", []),
    ],
)
def test_split_pieces_keeps_whitespace_before_each_word(text: str, pieces: list[str]) -> None:
    assert split_pieces(text) == pieces


@given(st.text())
def test_split_pieces_concatenate_back_to_the_text(text: str) -> None:
    pieces = split_pieces(text)

    assert "".join(pieces) == text
    assert all(pieces)


def test_scripted_model_is_a_chat_model() -> None:
    model: ChatModel = ScriptedModel()

    assert model.describe() == "scripted model scripted"
    assert ScriptedModel(name="tiny").describe() == "scripted model tiny"


async def test_scripted_model_echoes_by_default_and_records_the_call() -> None:
    model = ScriptedModel()

    reply = await model.complete(HELLO)

    assert reply == "echo(2): hello there"
    assert model.calls == [tuple(HELLO)]


async def test_scripted_model_answers_with_a_sync_function() -> None:
    model = ScriptedModel(lambda messages: messages[-1].content.upper())

    assert await model.complete(HELLO) == "HELLO THERE"


async def test_scripted_model_answers_with_an_async_function() -> None:
    async def reply(messages: Sequence[ChatMessage]) -> str:
        return f"{len(messages)} messages"

    model = ScriptedModel(reply)

    assert await model.complete(HELLO) == "2 messages"
    assert [piece async for piece in model.stream(HELLO)] == ["2", " messages"]


async def test_scripted_model_streams_word_pieces_of_the_reply() -> None:
    model = ScriptedModel(lambda messages: "the quick brown fox")

    pieces = [piece async for piece in model.stream(HELLO)]

    assert pieces == ["the", " quick", " brown", " fox"]
    assert model.calls == [tuple(HELLO)]
    assert model.streams_closed_early == 0


async def test_scripted_model_streams_nothing_for_an_empty_reply() -> None:
    model = ScriptedModel(lambda messages: "")

    assert [piece async for piece in model.stream(HELLO)] == []


async def test_scripted_model_raises_the_given_error_from_complete() -> None:
    model = ScriptedModel(error=ModelRateLimited("slow down"))

    with pytest.raises(ModelRateLimited) as raised:
        await model.complete(HELLO)

    assert raised.value.data == {"code": "llm_rate_limited"}
    assert model.calls == [tuple(HELLO)]


async def test_scripted_model_raises_the_given_error_before_any_piece_by_default() -> None:
    model = ScriptedModel(error=ModelTimeout(1.0))
    pieces: list[str] = []

    with pytest.raises(ModelTimeout):
        async for piece in model.stream(HELLO):
            pieces.append(piece)

    assert pieces == []


async def test_scripted_model_streams_some_pieces_then_raises_the_given_error() -> None:
    model = ScriptedModel(
        lambda messages: "one two three four",
        error=ModelUnreachable("http://llm.local/v1", reply_started=True),
        fail_after=2,
    )
    pieces: list[str] = []

    with pytest.raises(ModelUnreachable):
        async for piece in model.stream(HELLO):
            pieces.append(piece)

    assert pieces == ["one", " two"]


async def test_scripted_model_lets_an_error_raised_by_the_function_through() -> None:
    def reply(messages: Sequence[ChatMessage]) -> str:
        raise ModelNotFound("gpt-x")

    model = ScriptedModel(reply)

    with pytest.raises(ModelNotFound):
        await model.complete(HELLO)
    with pytest.raises(ModelNotFound):
        await anext(model.stream(HELLO))


async def test_scripted_model_counts_streams_closed_before_their_end() -> None:
    model = ScriptedModel(lambda messages: "one two three")

    async with aclosing(model.stream(HELLO)) as stream:
        assert await anext(stream) == "one"

    assert model.streams_closed_early == 1


def test_scripted_model_rejects_a_negative_fail_after() -> None:
    with pytest.raises(ValueError, match=r"^fail_after=-1 must be zero or more$"):
        ScriptedModel(fail_after=-1)


async def test_scripted_model_aclose_marks_it_closed() -> None:
    model = ScriptedModel()

    await model.aclose()
    await model.aclose()

    assert model.closed
