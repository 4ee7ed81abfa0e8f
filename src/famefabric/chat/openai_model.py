"""The OpenAI Chat Completions adapter: a :class:`~famefabric.chat.model.ChatModel`.

This is the only module that imports ``openai``. It builds one
``openai.AsyncOpenAI`` client per model and reuses it for every call, so
requests share pooled connections. Every exception ``openai`` raises is
translated by :func:`map_openai_error` into a
:class:`~famefabric.chat.model.ChatModelError` subclass, chained with
``raise ... from``.

A streamed reply is read from a server-sent-event response. Closing the
stream early (``aclose()`` or cancellation) closes that response at once,
which drops its connection: the server stops generating instead of finishing
a reply nobody reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Sequence
from urllib.parse import urlsplit

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from famefabric.chat.conversation import ChatMessage
from famefabric.chat.model import (
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
from famefabric.chat.telemetry import LlmCall

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""Where requests go when no base URL is given."""

PLACEHOLDER_API_KEY = "not-needed"
"""The key sent to a custom base URL when no key is given (local servers ignore it)."""

_KEY_REQUIRED_HOSTS = frozenset({"api.openai.com"})


log = logging.getLogger(__name__)


def _requires_key(base_url: str) -> bool:
    """Tell whether a server is known to refuse requests without a real key."""
    return (urlsplit(base_url).hostname or "").lower() in _KEY_REQUIRED_HOSTS


def _message_param(message: ChatMessage) -> ChatCompletionMessageParam:
    """Convert one message to the Chat Completions request shape."""
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "user":
        return {"role": "user", "content": message.content}
    return {"role": "assistant", "content": message.content}


def _server_message(exc: openai.APIError) -> str:
    """Return the server's own explanation carried by an API error."""
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message.strip():
            return message
    if isinstance(body, str) and body.strip():
        return body
    return exc.message


def map_openai_error(
    exc: Exception,
    *,
    model: str,
    base_url: str,
    timeout: float,
    reply_started: bool = False,
) -> ChatModelError:
    """Translate an exception raised by ``openai`` into a :class:`ChatModelError`.

    This is the single table from ``openai``'s exceptions to ours; callers
    raise the result ``from exc``.

    Args:
        exc: what ``openai`` raised: an ``openai.OpenAIError``, or a
            ``json.JSONDecodeError`` for a body that is not JSON.
        model: the model that was requested, named by ``ModelNotFound``.
        base_url: the server's base URL, named by connection errors.
        timeout: the request timeout in seconds, named by ``ModelTimeout``.
        reply_started: part of a streamed reply was already received.
    """
    if isinstance(exc, openai.APITimeoutError):
        return ModelTimeout(timeout)
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnreachable(base_url, reply_started=reply_started)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ModelAuthenticationError()
    if isinstance(exc, openai.NotFoundError):
        if exc.code == "model_not_found":
            return ModelNotFound(model)
        return ModelNotFound(model, server_url=base_url)
    if isinstance(exc, openai.RateLimitError):
        return ModelRateLimited(_server_message(exc))
    if isinstance(exc, openai.APIStatusError):
        return ModelFailure(_server_message(exc), status=exc.status_code)
    if isinstance(exc, openai.APIResponseValidationError):
        return ModelBadResponse(exc.message)
    if isinstance(exc, openai.APIError):
        return ModelFailure(_server_message(exc))
    if isinstance(exc, json.JSONDecodeError):
        return ModelBadResponse(f"invalid JSON: {exc.msg}")
    return ModelFailure(str(exc) or type(exc).__name__)


def _completion_text(completion: ChatCompletion) -> str:
    """Return the first choice's text, or ``""`` when there is none."""
    if not completion.choices:
        return ""
    content = completion.choices[0].message.content
    return content if isinstance(content, str) else ""


def _chunk_text(chunk: ChatCompletionChunk) -> str:
    """Return the text a streamed chunk adds, or ``""`` when it adds none."""
    if not chunk.choices:
        return ""
    content = chunk.choices[0].delta.content
    return content if isinstance(content, str) else ""


class OpenAIChatModel:
    """A :class:`~famefabric.chat.model.ChatModel` served by a Chat Completions API.

    Works with OpenAI and with OpenAI-compatible servers (Ollama, vLLM, …)
    through ``base_url``. The adapter reads no environment variables: the
    caller passes the key, URL and timeout from its settings.

    Without an API key the model still constructs, so an agent can start and
    report the problem: :attr:`is_configured` is false and every call raises
    :class:`~famefabric.chat.model.ModelNotConfigured` before any request.
    The exception is a custom ``base_url`` on another host than
    ``api.openai.com``: local servers usually need no key, so
    :data:`PLACEHOLDER_API_KEY` is sent; if the server does want one, its 401
    surfaces as :class:`~famefabric.chat.model.ModelAuthenticationError`.

    Args:
        model: the model name, e.g. ``gpt-4.1-mini``.
        api_key: the API key; ``None`` or empty means none was configured.
        base_url: the API root ending in ``/v1``; defaults to OpenAI's.
        timeout: seconds to wait for the connection and for each read.
        max_retries: how often ``openai`` retries failed requests.
        http_client: an ``httpx2.AsyncClient`` to send requests with; the
            caller keeps ownership and closes it.

    Raises:
        ValueError: ``model`` is empty, ``timeout`` is not positive or
            ``max_retries`` is negative.
    """

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        if not model.strip():
            raise ValueError(f"model={model!r} must name a model, e.g. 'gpt-4.1-mini'")
        if not timeout > 0:
            raise ValueError(f"timeout={timeout!r} must be a positive number of seconds")
        if max_retries < 0:
            raise ValueError(f"max_retries={max_retries!r} must be zero or more")
        self.model = model
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        key = api_key or None
        if key is None and not _requires_key(self.base_url):
            key = PLACEHOLDER_API_KEY
        self._owns_http_client = http_client is None
        self._closed = False
        self._client: openai.AsyncOpenAI | None = None
        if key is not None:
            self._client = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.base_url,
                timeout=timeout,
                max_retries=max_retries,
                http_client=http_client,
            )

    @property
    def is_configured(self) -> bool:
        """Whether calls can be made; false when an API key is required but missing."""
        return self._client is not None

    def _require_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            raise ModelNotConfigured()
        return self._client

    def _map(self, exc: Exception, *, reply_started: bool = False) -> ChatModelError:
        error = map_openai_error(
            exc,
            model=self.model,
            base_url=self.base_url,
            timeout=self.timeout,
            reply_started=reply_started,
        )
        # One line per failed call, for whoever runs the agent; the key is never in it.
        status = getattr(exc, "status_code", None)
        log.warning(
            "LLM call to %s failed: %s%s (%s)",
            self.describe(),
            error.error_code,
            f", HTTP {status}" if isinstance(status, int) else "",
            type(exc).__name__,
        )
        return error

    async def complete(self, messages: Sequence[ChatMessage]) -> str:
        """Return the model's reply to ``messages``; ``""`` if it has no text.

        Raises:
            ModelNotConfigured: no API key was given.
            ChatModelError: the request failed; see :func:`map_openai_error`.
        """
        client = self._require_client()
        call = LlmCall(self.model, streaming=False)
        try:
            try:
                completion = await client.chat.completions.create(
                    model=self.model,
                    messages=[_message_param(message) for message in messages],
                )
            except (openai.OpenAIError, json.JSONDecodeError) as exc:
                raise self._map(exc) from exc
            # A body served without a JSON content type comes back as text.
            if not isinstance(completion, ChatCompletion):
                raise ModelBadResponse(f"expected JSON, got {str(completion)[:80]!r}")
            call.usage(completion.usage)
        except BaseException as exc:
            call.end(exc)
            raise
        call.end()
        return _completion_text(completion)

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        """Yield the model's reply to ``messages`` in the pieces the server sends.

        Closing the generator early closes the HTTP response at once.

        Raises:
            ModelNotConfigured: no API key was given.
            ChatModelError: the request failed, possibly after some pieces.
        """
        client = self._require_client()
        reply_started = False
        call = LlmCall(self.model, streaming=True)
        try:
            try:
                response = await client.chat.completions.create(
                    model=self.model,
                    messages=[_message_param(message) for message in messages],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                async with response:
                    async for chunk in response:
                        if chunk.usage is not None:
                            call.usage(chunk.usage)
                        piece = _chunk_text(chunk)
                        if piece:
                            reply_started = True
                            call.piece()
                            yield piece
            except (openai.OpenAIError, json.JSONDecodeError) as exc:
                raise self._map(exc, reply_started=reply_started) from exc
        except BaseException as exc:
            call.end(exc)
            raise
        call.end()

    async def aclose(self) -> None:
        """Close the pooled connections; calling it again does nothing.

        A caller-provided ``http_client`` is left open for its owner.
        """
        if self._closed:
            return
        self._closed = True
        if self._client is not None and self._owns_http_client:
            await self._client.close()

    def describe(self) -> str:
        """Return e.g. ``gpt-4.1-mini at https://api.openai.com/v1`` for logs."""
        suffix = "" if self.is_configured else " (no API key)"
        return f"{self.model} at {self.base_url}{suffix}"
