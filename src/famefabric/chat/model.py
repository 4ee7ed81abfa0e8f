"""The seam between the chat agent and a language model.

The agent talks to a :class:`ChatModel`: ``complete`` returns a whole reply,
``stream`` yields it in pieces. Two implementations exist: the OpenAI adapter
(:mod:`famefabric.chat.openai_model`, the only module that imports ``openai``)
and :class:`ScriptedModel`, a real in-process model for tests and development.

Failures reach the agent as :class:`ChatModelError` subclasses. Each is an
:class:`~famefabric.errors.OperationError`, so an operation that lets one
escape answers the caller with JSON-RPC code ``-32000``, the message, and
``data={"code": <error_code>}``, a stable code clients can branch on.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import ClassVar, Protocol

from famefabric.chat.conversation import ChatMessage
from famefabric.errors import OperationError

API_KEY_SETTING = "OPENAI_API_KEY"
"""The environment variable holding the API key."""

BASE_URL_SETTING = "OPENAI_BASE_URL"
"""The environment variable holding the base URL of the LLM server."""

MODEL_SETTING = "MODEL_NAME"
"""The environment variable naming the model."""

TIMEOUT_SETTING = "OPENAI_TIMEOUT"
"""The environment variable holding the request timeout in seconds."""

_DETAIL_LIMIT = 300


class ChatModel(Protocol):
    """A language model that answers a conversation.

    Implementations hold their connections for their whole life; call
    :meth:`aclose` once when done.
    """

    async def complete(self, messages: Sequence[ChatMessage]) -> str:
        """Return the model's reply to ``messages``.

        Raises:
            ChatModelError: the model could not answer; the subclass says why.
        """
        ...

    def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        """Yield the model's reply to ``messages`` in non-empty pieces.

        Closing the generator before it is exhausted (``aclose()``, or
        cancelling the task awaiting it) stops the upstream request at once.
        Wrap it in :func:`contextlib.aclosing` so that an abandoned stream is
        closed promptly rather than when it is garbage collected.

        Raises:
            ChatModelError: the model could not answer, possibly after some
                pieces were already yielded.
        """
        ...

    async def aclose(self) -> None:
        """Release the model's connections; calling it again does nothing."""
        ...

    def describe(self) -> str:
        """Return a short description for logs, e.g. ``gpt-4.1-mini at <url>``."""
        ...


def _one_line(text: str) -> str:
    """Collapse whitespace in a server's text and bound its length."""
    line = " ".join(text.split())
    if len(line) > _DETAIL_LIMIT:
        line = line[: _DETAIL_LIMIT - 1] + "…"
    return line


class ChatModelError(OperationError):
    """The language model could not answer.

    Sent to the caller as JSON-RPC error ``-32000`` with
    ``data={"code": error_code}``.

    Attributes:
        error_code: a stable string that identifies the failure.

    Args:
        message: what happened and what the user can do about it.
    """

    error_code: ClassVar[str] = "llm_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code=-32000, data={"code": self.error_code})


class ModelNotConfigured(ChatModelError):
    """No API key was configured, so no request was made."""

    error_code = "llm_not_configured"

    def __init__(self) -> None:
        super().__init__(
            f"no OpenAI API key: set {API_KEY_SETTING} (or pass api_key=) for the chat agent"
        )


class ModelAuthenticationError(ChatModelError):
    """The server rejected the API key or denied it the request."""

    error_code = "llm_auth"

    def __init__(self) -> None:
        super().__init__(
            f"the LLM server rejected the API key: check {API_KEY_SETTING}"
            " and your organization/project permissions"
        )


class ModelNotFound(ChatModelError):
    """The server does not know the model, or the key cannot use it.

    Args:
        model: the model name that was requested.
        server_url: set when the server's 404 did not say the model is
            unknown (a wrong base URL answers 404 too); the message then
            names the URL.
    """

    error_code = "llm_model_not_found"

    def __init__(self, model: str, *, server_url: str | None = None) -> None:
        if server_url is None:
            message = (
                f"model {model!r} does not exist or your key cannot use it:"
                f" set {MODEL_SETTING} to a model your key can use"
            )
        else:
            message = (
                f"the LLM server at {server_url} answered 404 for model {model!r}:"
                f" check {BASE_URL_SETTING} and set {MODEL_SETTING} to a model it serves"
            )
        super().__init__(message)
        self.model = model


class ModelRateLimited(ChatModelError):
    """The server refused the request for rate or quota limits.

    Args:
        server_message: the server's explanation, if it gave one.
    """

    error_code = "llm_rate_limited"

    def __init__(self, server_message: str = "") -> None:
        detail = f" ({_one_line(server_message)})" if server_message.strip() else ""
        super().__init__(
            f"the LLM server refused the request for rate or quota limits{detail}:"
            f" retry later or check the plan and quota of the {API_KEY_SETTING} account"
        )


class ModelUnreachable(ChatModelError):
    """The server could not be reached, or the connection broke mid-reply.

    Args:
        base_url: the base URL the request was sent to.
        reply_started: the connection broke after the reply had begun.
    """

    error_code = "llm_unreachable"

    def __init__(self, base_url: str, *, reply_started: bool = False) -> None:
        if reply_started:
            message = (
                f"lost the connection to the LLM server at {base_url} during the reply:"
                " retry the turn"
            )
        else:
            message = (
                f"cannot connect to the LLM server at {base_url}:"
                f" check that it is running and that {BASE_URL_SETTING} is right"
            )
        super().__init__(message)
        self.base_url = base_url


class ModelTimeout(ChatModelError):
    """The server did not answer within the configured timeout.

    Args:
        timeout: the timeout in seconds.
    """

    error_code = "llm_timeout"

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"the LLM server did not answer within {timeout:g} s:"
            f" raise {TIMEOUT_SETTING} (or pass timeout=) if the model is slow"
        )
        self.timeout = timeout


class ModelFailure(ChatModelError):
    """The server answered with an error not covered by another class.

    Args:
        server_message: the server's explanation.
        status: the HTTP status, when the error came with one.
    """

    error_code = "llm_error"

    def __init__(self, server_message: str, *, status: int | None = None) -> None:
        detail = _one_line(server_message) or "no explanation given"
        what = f"answered HTTP {status}" if status is not None else "reported an error"
        super().__init__(
            f"the LLM server {what} ({detail}): retry the turn, or act on the server's"
            " message if it persists"
        )
        self.status = status


class ModelBadResponse(ChatModelError):
    """The server's answer is not a chat completion.

    Args:
        detail: what was wrong with the answer.
    """

    error_code = "llm_error"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the LLM server sent something that is not a chat completion"
            f" ({_one_line(detail)}): check that {BASE_URL_SETTING} points at an"
            " OpenAI-compatible /v1 endpoint"
        )


ReplyFunction = Callable[[Sequence[ChatMessage]], str | Awaitable[str]]
"""Computes a :class:`ScriptedModel` reply; may be sync or async, may raise."""

_PIECE = re.compile(r"\s*\S+|\s+")


def echo(messages: Sequence[ChatMessage]) -> str:
    """Answer with the message count and the last user message.

    An example: ``echo(2): hello`` for a system prompt plus ``hello``.
    """
    last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    return f"echo({len(messages)}): {last_user}"


def split_pieces(text: str) -> list[str]:
    """Split ``text`` into word pieces whose concatenation is ``text``.

    Each piece is a word with the whitespace before it, like the tokens an
    LLM streams: ``"hi there"`` gives ``["hi", " there"]``.
    """
    return _PIECE.findall(text)


class ScriptedModel:
    """An in-process :class:`ChatModel` whose replies come from a function.

    Every call records the messages it received in :attr:`calls`. ``stream``
    yields the reply split by :func:`split_pieces`.

    Args:
        reply: computes the reply from the messages; sync or async. It may
            raise a :class:`ChatModelError` to simulate a failure. Defaults to
            :func:`echo`.
        error: raised by every call instead of replying.
        fail_after: with ``error``, ``stream`` first yields this many pieces
            of the reply, then raises; ``complete`` raises at once.
        name: the model name shown by :meth:`describe`.

    Raises:
        ValueError: ``fail_after`` is negative.
    """

    def __init__(
        self,
        reply: ReplyFunction = echo,
        *,
        error: ChatModelError | None = None,
        fail_after: int = 0,
        name: str = "scripted",
    ) -> None:
        if fail_after < 0:
            raise ValueError(f"fail_after={fail_after!r} must be zero or more")
        self._reply = reply
        self._error = error
        self._fail_after = fail_after
        self._name = name
        self.calls: list[tuple[ChatMessage, ...]] = []
        self.streams_closed_early = 0
        self.closed = False

    async def _compute(self, messages: Sequence[ChatMessage]) -> str:
        self.calls.append(tuple(messages))
        result = self._reply(messages)
        if isinstance(result, str):
            return result
        return await result

    async def complete(self, messages: Sequence[ChatMessage]) -> str:
        """Return the scripted reply to ``messages``.

        Raises:
            ChatModelError: ``error`` was given, or the reply function raised it.
        """
        if self._error is not None:
            self.calls.append(tuple(messages))
            raise self._error
        return await self._compute(messages)

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        """Yield the scripted reply to ``messages`` in word pieces.

        :attr:`streams_closed_early` counts streams closed or cancelled before
        their last piece.

        Raises:
            ChatModelError: ``error`` was given (after ``fail_after`` pieces),
                or the reply function raised it.
        """
        pieces = split_pieces(await self._compute(messages))
        if self._error is not None:
            pieces = pieces[: self._fail_after]
        finished = False
        try:
            for piece in pieces:
                yield piece
            finished = True
        finally:
            if not finished:
                self.streams_closed_early += 1
        if self._error is not None:
            raise self._error

    async def aclose(self) -> None:
        """Mark the model closed; it keeps answering, as it holds no resources."""
        self.closed = True

    def describe(self) -> str:
        """Return ``scripted model <name>``."""
        return f"scripted model {self._name}"
