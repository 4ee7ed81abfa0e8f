"""Minimal HTTP/1.1 plumbing for the stub OpenAI server.

Only what a real HTTP client needs: request heads and bodies (``Content-Length``
or chunked), keep-alive, fixed-length responses and chunked streaming
responses. Each connection keeps its own read buffer so a task can watch the
socket for end-of-file while another task writes a response, without losing
any bytes the client sends in the meantime.
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

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
_READ_SIZE = 64 * 1024


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


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {status} {phrase}", f"date: {formatdate(usegmt=True)}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Connection:
    """A buffered client connection that can read requests and write responses.

    Args:
        reader: the stream reader of the accepted socket.
        writer: the stream writer of the accepted socket.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = bytearray()
        self._chunked = False
        self.eof = False
        self.closed_at: float | None = None

    async def _fill(self) -> bool:
        """Read more bytes into the buffer; return False once the client has closed."""
        if self.eof:
            return False
        try:
            data = await self._reader.read(_READ_SIZE)
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
            self.closed_at = time.monotonic()
            return False
        self._buffer += data
        return True

    async def _read_until(self, separator: bytes, limit: int) -> bytes | None:
        while (index := self._buffer.find(separator)) < 0:
            if len(self._buffer) > limit:
                raise HttpError("request head too large")
            if not await self._fill():
                return None
        end = index + len(separator)
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data

    async def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not await self._fill():
                raise HttpError("connection closed in the middle of a request body")
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _read_chunked_body(self) -> bytes:
        body = bytearray()
        while True:
            line = await self._read_until(b"\r\n", 1024)
            if line is None:
                raise HttpError("connection closed in the middle of a chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise HttpError("invalid chunk size") from exc
            if size == 0:
                break
            if len(body) + size > MAX_BODY_BYTES:
                raise HttpError("request body too large")
            body += await self._read_exactly(size)
            if await self._read_exactly(2) != b"\r\n":
                raise HttpError("chunk not terminated by CRLF")
        while (trailer := await self._read_until(b"\r\n", MAX_HEAD_BYTES)) != b"\r\n":
            if trailer is None:
                raise HttpError("connection closed in the middle of chunked trailers")
        return bytes(body)

    async def read_request(self) -> HttpRequest | None:
        """Read the next request.

        Returns:
            The request, or None when the client closed the connection between requests.

        Raises:
            HttpError: the bytes received are not a valid request.
        """
        head = await self._read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
        if head is None:
            if self._buffer.strip():
                raise HttpError("connection closed in the middle of a request head")
            return None
        request_line, *field_lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            raise HttpError(f"invalid request line {request_line!r}")
        headers: dict[str, str] = {}
        for line in filter(None, field_lines):
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpError(f"invalid header line {line!r}")
            key = name.lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked_body()
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError as exc:
                raise HttpError("invalid content-length") from exc
            if not 0 <= length <= MAX_BODY_BYTES:
                raise HttpError("invalid content-length")
            body = await self._read_exactly(length)
        return HttpRequest(parts[0], parts[1], parts[2], headers, body)

    async def wait_for_eof(self) -> None:
        """Wait until the client closes the connection, keeping any bytes it sends."""
        while await self._fill():
            pass

    async def send_response(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes, *, keep_alive: bool
    ) -> None:
        """Write a complete response with a ``Content-Length`` body."""
        fields = [*headers, ("content-length", str(len(body)))]
        fields.append(("connection", "keep-alive" if keep_alive else "close"))
        self._writer.write(_head(status, fields) + body)
        await self._writer.drain()

    async def start_stream(
        self, status: int, headers: Iterable[tuple[str, str]], *, chunked: bool = True
    ) -> None:
        """Write the head of a streaming response; the body follows with :meth:`send_chunk`."""
        self._chunked = chunked
        framing = ("transfer-encoding", "chunked") if chunked else ("connection", "close")
        self._writer.write(_head(status, [*headers, framing]))
        await self._writer.drain()

    async def send_chunk(self, data: bytes) -> None:
        """Write one piece of a streaming response body and wait until it is handed to the OS."""
        if not data:
            return
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        self._writer.write(data)
        await self._writer.drain()

    async def end_stream(self) -> None:
        """Finish a streaming response."""
        if self._chunked:
            self._writer.write(b"0\r\n\r\n")
            await self._writer.drain()

    def close(self) -> None:
        """Close the connection after flushing what was written."""
        self._writer.close()

    async def wait_closed(self) -> None:
        """Wait until the socket is closed, ignoring errors of an already broken connection."""
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
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
            error = {"message": f"Malformed HTTP request: {exc}", "type": "invalid_request_error"}
            body = json.dumps({"error": error | {"param": None, "code": None}}).encode()
            headers = [("content-type", "application/json")]
            with contextlib.suppress(ConnectionError):
                await connection.send_response(400, headers, body, keep_alive=False)
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
        return answer.result() and not connection.eof
