"""The behaviours the stub OpenAI server can be told to show, and what it records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer with ``text`` (streamed or not, as the request asks).

    ``usage``, when given, is sent as the ``usage`` object instead of the
    counted one (see :class:`~famefabric.testing.OpenAIStubServer`), e.g. to
    test what a client does with a malformed or missing count.
    """

    text: str
    usage: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Echo:
    """Answer ``echo(<message count>): <last user message>``; the default behaviour."""


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer with the error body the OpenAI API sends for ``status``.

    Attributes:
        status: the HTTP status (400, 401, 404, 429, 500, ...).
        message: replaces the default error message.
        retry_after: seconds sent in ``retry-after``/``retry-after-ms``; a 429 sends 1 s if unset.
    """

    status: int
    message: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait ``seconds``, then behave as ``then``."""

    seconds: float
    then: Behaviour = Echo()


@dataclass(frozen=True, slots=True)
class StreamFailAfter:
    """Stream ``tokens`` content chunks, then fail; a non-streaming request gets ``Fail(500)``.

    Attributes:
        tokens: the number of content chunks sent before the failure.
        error_event: send an ``{"error": ...}`` event and end the body, instead of
            closing the connection in the middle of the body.
    """

    tokens: int
    error_event: bool = False


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer; the request ends only when the client goes away."""


Behaviour: TypeAlias = Reply | Echo | Fail | Delay | StreamFailAfter | Hang


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A chat completion request as the server received it.

    Attributes:
        path: the request target, e.g. ``/v1/chat/completions``.
        headers: header fields with lower-cased names.
        body: the parsed JSON body (empty if it was not a JSON object).
        received_at: ``time.monotonic()`` when the request was read.
    """

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The ``messages`` of the request."""
        messages: list[dict[str, Any]] = self.body.get("messages", [])
        return messages


@dataclass(slots=True)
class StreamRecord:
    """What happened to one streaming response.

    Attributes:
        request_index: the index in :attr:`OpenAIStubServer.requests` of the request.
        tokens_sent: content chunks written so far.
        finished: the stream ended normally with ``data: [DONE]``.
        closed_early: the client went away before the end of the stream.
        closed_at: ``time.monotonic()`` when the stream finished, failed, or the
            server noticed the client had gone; None while it is open.
    """

    request_index: int
    tokens_sent: int = 0
    finished: bool = False
    closed_early: bool = False
    closed_at: float | None = None
