"""HTTP/1.1 for the stub OpenAI server, on ``h11`` and asyncio streams.

``h11`` (the sans-I/O HTTP/1.1 library under the ``openai`` client's HTTP
stack) parses requests (``Content-Length`` or chunked bodies, keep-alive,
pipelining) and frames responses; this module moves its bytes. It stays
close to the socket because tests need byte-level faults: a response that
never comes, a body cut off mid-stream (:meth:`Connection.abort`), and
knowing when a client went away in the middle of a response.

While a response is produced the connection keeps reading: bytes of a next
request go to ``h11``'s buffer, and the end of the stream
(:attr:`Connection.closed_at`) cancels the response, so a stream abandoned
by its client is recorded as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

import h11

MAX_HEAD_BYTES = 64 * 1024
"""A request head still incomplete beyond this many bytes is refused (400)."""
MAX_BODY_BYTES = 64 * 1024 * 1024
_READ_SIZE = 64 * 1024
LINGER_SECONDS = 1.0


class HttpError(Exception):
    """The client sent something that is not acceptable HTTP/1.1."""


@dataclass(slots=True)
class HttpRequest:
    """One parsed HTTP request.

    Attributes:
        method: the request method, e.g. ``POST``.
        target: the request target as sent, query string included.
        version: ``HTTP/1.1`` or ``HTTP/1.0``.
        headers: header fields with lower-cased names; repeated fields are joined by ``", "``.
        body: the decoded request body.
    """

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        """Whether the client allows the connection to be reused after this request."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


def _headers(fields: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [("date", formatdate(usegmt=True)), *fields]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class Connection:
    """One client connection: read requests, write responses, notice the client leaving.

    Args:
        reader: the stream reader of the accepted socket.
        writer: the stream writer of the accepted socket.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.eof = False
        self.closed_at: float | None = None

    async def _fill(self) -> bool:
        """Hand more bytes to h11; return False once the client has closed its side."""
        if self.eof:
            return False
        try:
            data = await self._reader.read(_READ_SIZE)
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
            self.closed_at = time.monotonic()
        with contextlib.suppress(RuntimeError):  # h11 already knows the stream ended
            self._h11.receive_data(data)
        return bool(data)

    async def _next_event(self) -> Any:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise HttpError(str(exc)) from exc
            if event is not h11.NEED_DATA:
                return event
            await self._fill()

    async def read_request(self) -> HttpRequest | None:
        """Read the next request, body included.

        Returns:
            The request, or None when the client closed the connection between requests.

        Raises:
            HttpError: the bytes received are not a valid request.
        """
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if not isinstance(event, h11.Request):
            raise HttpError(f"expected a request, got {type(event).__name__}")
        body = bytearray()
        while not isinstance(part := await self._next_event(), h11.EndOfMessage):
            if not isinstance(part, h11.Data):
                raise HttpError("connection closed in the middle of a request body")
            body += part.data
            if len(body) > MAX_BODY_BYTES:
                raise HttpError("request body too large")
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return HttpRequest(
            event.method.decode("ascii"),
            event.target.decode("latin-1"),
            "HTTP/" + event.http_version.decode("ascii"),
            headers,
            bytes(body),
        )

    @property
    def reusable(self) -> bool:
        """Whether the last exchange ended cleanly and the connection may serve another."""
        return (
            not self.eof and self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE
        )

    async def wait_for_eof(self) -> None:
        """Wait until the client closes the connection, keeping any bytes it sends."""
        while await self._fill():
            pass

    async def _write(self, event: Any) -> None:
        data = self._h11.send(event)
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def send_response(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes, *, keep_alive: bool
    ) -> None:
        """Write a complete response with a ``Content-Length`` body."""
        fields = [*_headers(headers), ("content-length", str(len(body)))]
        if not keep_alive:
            fields.append(("connection", "close"))
        response = h11.Response(status_code=status, headers=fields, reason=_reason(status))
        data = self._h11.send(response) or b""
        data += self._h11.send(h11.Data(data=body)) or b""
        data += self._h11.send(h11.EndOfMessage()) or b""
        self._writer.write(data)
        await self._writer.drain()

    async def start_stream(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """Write the head of a streaming response; the body follows with :meth:`send_chunk`.

        The body is chunked for HTTP/1.1 clients and ends with the connection
        for HTTP/1.0 ones (``h11`` chooses).
        """
        await self._write(
            h11.Response(status_code=status, headers=_headers(headers), reason=_reason(status))
        )

    async def send_chunk(self, data: bytes) -> None:
        """Write one piece of a streaming response body and wait until it is handed to the OS."""
        if data:
            await self._write(h11.Data(data=data))

    async def end_stream(self) -> None:
        """Finish a streaming response."""
        await self._write(h11.EndOfMessage())

    def abort(self) -> None:
        """Cut the connection in the middle of a response (a fault to inject)."""
        self.eof = True
        self._writer.close()

    def close(self) -> None:
        """Close the connection after flushing what was written."""
        self._writer.close()

    async def wait_closed(self) -> None:
        """Wait until the socket is closed, ignoring errors of an already broken connection."""
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def send_bad_request(self, problem: str) -> None:
        """Answer a request that could not be parsed with a JSON 400, then close."""
        error = {"message": f"Malformed HTTP request: {problem}", "type": "invalid_request_error"}
        body = json.dumps({"error": error | {"param": None, "code": None}}).encode()
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # a response is already under way: nothing sensible can follow
        with contextlib.suppress(ConnectionError, h11.LocalProtocolError):
            await self.send_response(
                400, [("content-type", "application/json")], body, keep_alive=False
            )
            await self._linger()

    async def _linger(self) -> None:
        """End our side, then drop what the client still sends for up to a second.

        Closing a socket with unread input resets the connection, and the
        client may then lose the answer before reading it.
        """
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER_SECONDS):
                while await self._reader.read(_READ_SIZE):
                    pass


class BackgroundHttpServer:
    """An HTTP/1.1 server running on its own event loop in a background thread.

    Subclasses implement :meth:`respond`. Each connection is its own task, and
    while a response is produced the connection is watched: when the client
    closes it, the response task is cancelled and :attr:`Connection.closed_at`
    tells when the close was noticed.

    Args:
        host: the interface to listen on.
        port: the port to listen on; 0 picks a free one.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connection_count = 0

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._port is None:
            raise RuntimeError("the server is not running")
        return self._port

    @property
    def connection_count(self) -> int:
        """How many TCP connections the server has accepted (shows keep-alive at work)."""
        return self._connection_count

    async def respond(self, connection: Connection, request: HttpRequest) -> bool:
        """Answer one request.

        Returns:
            Whether the connection may serve another request.
        """
        raise NotImplementedError

    def start(self) -> None:
        """Start listening in a background thread; return once the socket is bound."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._run, args=(ready, failure), name=type(self).__name__, daemon=True
        )
        self._thread = thread
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            self._thread = self._loop = None
            raise failure[0]

    def stop(self) -> None:
        """Close every connection and stop the server; calling it again does nothing."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = self._loop = self._stopping = self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # reported by start() in the calling thread
            failure.append(exc)
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._serve_connection, self.host, self._requested_port)
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connection_count += 1
        connection = Connection(reader, writer)
        try:
            while (request := await connection.read_request()) is not None:
                if not await self._respond_watching_client(connection, request):
                    break
        except HttpError as exc:
            await connection.send_bad_request(str(exc))
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            self._tasks.discard(task)
            connection.close()
            await connection.wait_closed()

    async def _respond_watching_client(self, connection: Connection, request: HttpRequest) -> bool:
        answer = asyncio.create_task(self.respond(connection, request))
        watcher = asyncio.create_task(connection.wait_for_eof())
        try:
            done, _ = await asyncio.wait((answer, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (answer, watcher):
                task.cancel()
            await asyncio.gather(answer, watcher, return_exceptions=True)
        if answer not in done or isinstance(answer.exception(), ConnectionError):
            return False
        return answer.result() and connection.reusable
