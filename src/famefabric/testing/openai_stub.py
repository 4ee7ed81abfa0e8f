"""A real HTTP server that speaks enough of the OpenAI Chat Completions API for tests.

The server runs in a background thread with its own event loop, so both
synchronous and asynchronous code can point an ``openai`` client at
:attr:`OpenAIStubServer.url`. Every connection is its own task: a slow or
hanging answer never holds up another request. By default each request is
answered with :class:`Echo`; queue other behaviours with
:meth:`OpenAIStubServer.enqueue`.

Every answer reports deterministic token ``usage`` (on streams when the
request sets ``stream_options.include_usage``): prompt tokens are 3 plus,
per message sent, 4 plus its words; completion tokens are the reply's words
(the streamed pieces); total is their sum.

``python -m famefabric.testing.openai_server --port 0`` runs one as a
process (see :mod:`famefabric.testing.openai_server`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from famefabric.testing import _payloads as payloads
from famefabric.testing._http import BackgroundHttpServer, Connection, HttpRequest
from famefabric.testing._types import (
    Behaviour,
    Delay,
    Echo,
    Fail,
    Hang,
    RecordedRequest,
    Reply,
    StreamFailAfter,
    StreamRecord,
)

__all__ = [
    "Behaviour",
    "Delay",
    "Echo",
    "Fail",
    "Hang",
    "OpenAIStubServer",
    "RecordedRequest",
    "Reply",
    "StreamFailAfter",
    "StreamRecord",
]


@dataclass(slots=True)
class _Exchange:
    """State of the request being answered on one connection."""

    request: HttpRequest
    body: dict[str, Any]
    index: int
    keep_alive: bool = True
    stream: StreamRecord | None = None

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[Any]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def streaming(self) -> bool:
        return self.body.get("stream") is True


def _base_headers(content_type: str = "application/json") -> list[tuple[str, str]]:
    return [
        ("content-type", content_type),
        ("x-request-id", payloads.new_request_id()),
        ("openai-version", "2020-10-01"),
        ("openai-processing-ms", "1"),
    ]


def _final(behaviour: Behaviour) -> Behaviour:
    while isinstance(behaviour, Delay):
        behaviour = behaviour.then
    return behaviour


class OpenAIStubServer(BackgroundHttpServer):
    """An HTTP/1.1 server answering ``/v1/chat/completions`` like the OpenAI API.

    Use it as a (sync or async) context manager, or call :meth:`start` and
    :meth:`stop`. Requests that pass the key and model checks take the next
    queued behaviour, or :class:`Echo` when the queue is empty. The ``wait_*``
    helpers block the calling thread: from async code, call them through
    ``asyncio.to_thread`` if the awaited request has not been sent yet.

    Args:
        host: the interface to listen on.
        port: the port to listen on; 0 picks a free one.
        token_delay: seconds to wait before each streamed content chunk.
        api_key: if set, requests with another bearer token get the 401 error.
        known_models: if set, requests for another model get the 404 ``model_not_found`` error.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token_delay: float = 0.0,
        api_key: str | None = None,
        known_models: Iterable[str] | None = None,
    ) -> None:
        super().__init__(host, port)
        self.token_delay = token_delay
        self.api_key = api_key
        self.known_models = tuple(known_models) if known_models is not None else None
        self.requests: list[RecordedRequest] = []
        self.streams: list[StreamRecord] = []
        self._queue: deque[Behaviour] = deque()
        self._cond = threading.Condition()

    @property
    def url(self) -> str:
        """The ``base_url`` to give an ``openai`` client, e.g. ``http://127.0.0.1:1234/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    # -- recording -----------------------------------------------------------------

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Answer the next chat completion requests with these behaviours, one each, in order."""
        with self._cond:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Forget recorded requests, queued behaviours and stream records."""
        with self._cond:
            self.requests.clear()
            self.streams.clear()
            self._queue.clear()

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        """Block until at least ``n`` requests were recorded.

        Raises:
            TimeoutError: fewer than ``n`` requests arrived within ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"{len(self.requests)} of {n} requests after {timeout} s")

    def wait_for_stream_closed(self, index: int, timeout: float = 5.0) -> StreamRecord:
        """Block until ``streams[index]`` exists and has closed (finished, failed or abandoned).

        Returns:
            The stream record.

        Raises:
            TimeoutError: the stream did not close within ``timeout`` seconds.
        """

        def closed() -> bool:
            return len(self.streams) > index and self.streams[index].closed_at is not None

        with self._cond:
            if not self._cond.wait_for(closed, timeout):
                raise TimeoutError(f"stream {index} still open after {timeout} s")
            return self.streams[index]

    def _record(self, request: HttpRequest, body: dict[str, Any]) -> int:
        record = RecordedRequest(request.target, dict(request.headers), body, time.monotonic())
        with self._cond:
            self.requests.append(record)
            self._cond.notify_all()
            return len(self.requests) - 1

    def _open_stream(self, exchange: _Exchange) -> StreamRecord:
        if exchange.stream is None:
            exchange.stream = StreamRecord(exchange.index)
            with self._cond:
                self.streams.append(exchange.stream)
                self._cond.notify_all()
        return exchange.stream

    def _close_stream(
        self, record: StreamRecord | None, *, at: float, finished: bool = False, early: bool = False
    ) -> None:
        if record is None:
            return
        with self._cond:
            if record.closed_at is None:
                record.finished, record.closed_early, record.closed_at = finished, early, at
                self._cond.notify_all()

    # -- answering ---------------------------------------------------------------

    async def respond(self, connection: Connection, request: HttpRequest) -> bool:
        """Answer one request; see :class:`BackgroundHttpServer`."""
        exchange = _Exchange(request, {}, -1, keep_alive=request.keep_alive)
        await self._answer(connection, exchange)
        return exchange.keep_alive

    async def _answer(self, connection: Connection, exchange: _Exchange) -> None:
        request = exchange.request
        route = request.path.removeprefix("/v1")
        if request.method == "POST" and route == "/chat/completions":
            await self._chat_completion(connection, exchange)
        elif request.method == "GET" and route == "/models":
            await self._send_json(connection, exchange, 200, payloads.model_list(self._models()))
        elif request.method == "GET" and route.startswith("/models/"):
            model = route.removeprefix("/models/")
            if model in self._models():
                await self._send_json(connection, exchange, 200, payloads.model_object(model))
            else:
                await self._send_json(connection, exchange, 404, payloads.error(404, model=model))
        else:
            message = f"Invalid URL ({request.method} {request.path})"
            await self._send_json(connection, exchange, 404, payloads.error_message(message))

    def _models(self) -> tuple[str, ...]:
        return self.known_models if self.known_models is not None else payloads.DEFAULT_MODELS

    async def _send_json(
        self,
        connection: Connection,
        exchange: _Exchange,
        status: int,
        body: dict[str, Any],
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        data = json.dumps(body).encode()
        headers = [*_base_headers(), *extra_headers]
        await connection.send_response(status, headers, data, keep_alive=exchange.keep_alive)

    # -- chat completions ----------------------------------------------------------

    async def _chat_completion(self, connection: Connection, exchange: _Exchange) -> None:
        request = exchange.request
        try:
            parsed = json.loads(request.body)
        except ValueError:
            parsed = None
        exchange.body = parsed if isinstance(parsed, dict) else {}
        exchange.index = self._record(request, exchange.body)
        if parsed is None:
            message = "We could not parse the JSON body of your request."
            await self._send_json(connection, exchange, 400, payloads.error_message(message))
            return
        sent_key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if self.api_key is not None and sent_key != self.api_key:
            await self._fail(connection, exchange, Fail(401))
        elif self.known_models is not None and exchange.model not in self.known_models:
            await self._fail(connection, exchange, Fail(404))
        else:
            for name in ("model", "messages"):
                if name not in exchange.body:
                    message = f"Missing required parameter: '{name}'."
                    body = payloads.error_message(
                        message, param=name, code="missing_required_parameter"
                    )
                    await self._send_json(connection, exchange, 400, body)
                    return
            with self._cond:
                behaviour = self._queue.popleft() if self._queue else Echo()
            try:
                await self._perform(connection, exchange, behaviour)
            except (asyncio.CancelledError, ConnectionError) as exc:
                gone_at = connection.closed_at
                early = gone_at is not None or isinstance(exc, ConnectionError)
                self._close_stream(exchange.stream, at=gone_at or time.monotonic(), early=early)
                raise

    async def _perform(
        self, connection: Connection, exchange: _Exchange, behaviour: Behaviour
    ) -> None:
        if exchange.streaming and not isinstance(_final(behaviour), Fail):
            # Recorded before any delay so a client giving up early is seen too.
            self._open_stream(exchange)
        match behaviour:
            case Delay(seconds=seconds, then=then):
                await asyncio.sleep(seconds)
                await self._perform(connection, exchange, then)
            case Hang():
                await asyncio.get_running_loop().create_future()
            case Fail():
                await self._fail(connection, exchange, behaviour)
            case StreamFailAfter() if not exchange.streaming:
                await self._fail(connection, exchange, Fail(500))
            case StreamFailAfter(tokens=tokens, error_event=error_event):
                pieces = payloads.split_tokens(payloads.echo_text(exchange.messages))
                pieces = (pieces + [" ..."] * tokens)[:tokens]
                await self._stream(connection, exchange, pieces, fail=True, error_event=error_event)
            case Reply(text=text, usage=usage):
                await self._reply(connection, exchange, text, usage)
            case Echo():
                await self._reply(connection, exchange, payloads.echo_text(exchange.messages))

    async def _fail(self, connection: Connection, exchange: _Exchange, failure: Fail) -> None:
        sent_key = exchange.request.headers.get("authorization", "").removeprefix("Bearer ")
        body = payloads.error(
            failure.status, model=exchange.model, api_key=sent_key.strip(), message=failure.message
        )
        retry_after = failure.retry_after
        if retry_after is None and failure.status == 429:
            retry_after = 1.0
        headers = payloads.retry_after_headers(retry_after) if retry_after is not None else []
        await self._send_json(connection, exchange, failure.status, body, headers)

    async def _reply(
        self,
        connection: Connection,
        exchange: _Exchange,
        text: str,
        usage: dict[str, Any] | None = None,
    ) -> None:
        if exchange.streaming:
            await self._stream(connection, exchange, payloads.split_tokens(text), usage=usage)
        else:
            body = payloads.completion(exchange.model, text, exchange.messages)
            if usage is not None:
                body["usage"] = usage
            await self._send_json(connection, exchange, 200, body)

    async def _stream(
        self,
        connection: Connection,
        exchange: _Exchange,
        pieces: list[str],
        *,
        fail: bool = False,
        error_event: bool = False,
        usage: dict[str, Any] | None = None,
    ) -> None:
        record = self._open_stream(exchange)
        options = exchange.body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        completion_id, created = payloads.new_completion_id(), int(time.time())

        async def send(body: dict[str, Any] | str) -> None:
            data = body if isinstance(body, str) else json.dumps(body)
            await connection.send_chunk(f"data: {data}\n\n".encode())

        def chunk(**kwargs: Any) -> dict[str, Any]:
            return payloads.chunk(
                completion_id, created, exchange.model, include_usage=include_usage, **kwargs
            )

        # HTTP/1.0 has no chunked bodies: the stream ends with the connection.
        exchange.keep_alive = exchange.keep_alive and exchange.request.version == "HTTP/1.1"
        headers = [
            *_base_headers("text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
        ]
        await connection.start_stream(200, headers)
        await send(chunk(delta={"role": "assistant", "content": "", "refusal": None}))
        for piece in pieces:
            await asyncio.sleep(self.token_delay)
            await send(chunk(delta={"content": piece}))
            with self._cond:
                record.tokens_sent += 1
        if fail and error_event:
            await send(payloads.error(500))
            await connection.end_stream()
        elif fail:
            exchange.keep_alive = False
            connection.abort()
        else:
            await send(chunk(delta={}, finish_reason="stop"))
            if include_usage:
                counted = payloads.usage(exchange.messages, len(pieces))
                await send(chunk(usage_object=counted if usage is None else usage))
            await send("[DONE]")
            await connection.end_stream()
        self._close_stream(record, at=time.monotonic(), finished=not fail)
