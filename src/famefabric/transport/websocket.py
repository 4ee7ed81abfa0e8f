"""The WebSocket transport, over the ``websockets`` asyncio API.

The only module that imports ``websockets`` for moving messages. It sends
every message as a binary frame (PROTOCOL.md §2.3: text frames break the
reference), accepts text frames too, and maps the library's exceptions onto
ours: a handshake the server answered with an HTTP error status becomes
:class:`famefabric.errors.AttachRefused` carrying that status and the first
line of the response body; everything else :class:`famefabric.errors.ConnectionClosed`.
"""

from __future__ import annotations

import ssl as ssl_module
from http import HTTPStatus

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed as WSConnectionClosed
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.version import version as websockets_version

from famefabric.errors import AttachRefused, ConnectionClosed
from famefabric.protocol.frames import MAX_ENVELOPE_BYTES

# Incoming limit: a little above the envelope limit, so that an oversize
# envelope reaches the application (which answers it) instead of killing the link.
MAX_MESSAGE_BYTES = 4 * MAX_ENVELOPE_BYTES
MAX_REASON_CHARS = 200
"""How much of a refusal's body is kept as its reason (a body is untrusted input)."""


def refusal_reason(status: int, body: bytes | bytearray | None) -> str:
    """Return the one-line reason of a refused handshake.

    The first non-blank line of the body, without control characters and at
    most :data:`MAX_REASON_CHARS` long; the HTTP reason phrase when the body
    has none.
    """
    text = (body or b"")[: 4 * MAX_REASON_CHARS].decode("utf-8", "replace")
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = "".join(char if char.isprintable() else " " for char in line).strip()
    if len(line) > MAX_REASON_CHARS:
        line = line[: MAX_REASON_CHARS - 1] + "…"
    if line:
        return line
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "no reason given"


def _closed(description: str, exc: WSConnectionClosed) -> ConnectionClosed:
    # The one place where the library's exception becomes ours. (A plain
    # try/except at the call sites: a context manager per message costs more
    # than the rest of send() on the forwarding path.)
    rcvd = exc.rcvd
    code = rcvd.code if rcvd is not None else None
    reason = rcvd.reason if rcvd is not None else ""
    text = f"connection to {description} closed"
    if code is not None:
        text += f" (code {code}{': ' + reason if reason else ''})"
    return ConnectionClosed(text, code=code, reason=reason)


class WebSocketTransport:
    """A :class:`~famefabric.transport.base.Transport` over one WebSocket connection.

    Args:
        connection: the open ``websockets`` connection.
        description: the far end, for logs and errors.
        coalesce: write the messages sent during one turn of the event loop
            with one write to the socket (see :meth:`send`).
    """

    __slots__ = ("_coalesce", "_connection", "_description", "_pending")

    def __init__(self, connection: Connection, *, description: str, coalesce: bool = False) -> None:
        self._connection = connection
        self._description = description
        self._coalesce = coalesce
        self._pending: list[bytes] | None = None

    @property
    def description(self) -> str:
        """The far end, e.g. the URL dialled or the peer's address."""
        return self._description

    @property
    def connection(self) -> Connection:
        """The underlying ``websockets`` connection."""
        return self._connection

    async def send(self, message: bytes) -> None:
        """Send one binary message.

        When coalescing, the message joins the ones sent during this turn of
        the event loop, and all of them are framed and written with one write
        (one system call) at the end of the turn, in call order. A send waits
        first while the socket's buffer is above its high-water mark, so the
        memory held stays bounded; :meth:`close` and :meth:`abort` write what
        is pending first.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        connection = self._connection
        if self._coalesce and connection.protocol.state is State.OPEN:
            if connection.paused:
                try:
                    await connection.drain()
                except OSError:
                    pass  # the connection was lost: send() below says so
            if connection.protocol.state is State.OPEN:
                pending = self._pending
                if pending is None:
                    self._pending = [message]
                    connection.loop.call_soon(self._write_pending)
                else:
                    pending.append(message)
                return
        try:
            await connection.send(message)
        except WSConnectionClosed as exc:
            raise _closed(self._description, exc) from exc

    def _write_pending(self) -> None:
        """Frame and write what :meth:`send` gathered (nothing once the connection is not open)."""
        pending, self._pending = self._pending, None
        if not pending:
            return
        connection = self._connection
        protocol = connection.protocol
        if protocol.state is not State.OPEN:
            return  # lost with the connection, like bytes in a socket buffer; the reader sees why
        for message in pending:
            protocol.send_binary(message)
        connection.transport.write(b"".join(protocol.data_to_send()))

    async def send_many(self, messages: list[bytes]) -> None:
        """Send several binary messages with one write to the socket.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        self._write_pending()
        connection = self._connection
        try:
            async with connection.send_context():
                protocol = connection.protocol
                for message in messages:
                    protocol.send_binary(message)
                chunks = protocol.data_to_send()
                # One write (and so one system call) for the whole batch.
                connection.transport.write(b"".join(chunks))
        except WSConnectionClosed as exc:
            raise _closed(self._description, exc) from exc

    def send_now(self, messages: list[bytes]) -> bool:
        """Write binary messages at once, in one write, if the socket takes them without waiting.

        Returns False (nothing written) when the connection is not open or its
        write buffer is above the high-water mark; use :meth:`send_many` then.
        """
        self._write_pending()
        connection = self._connection
        if (
            connection.protocol.state is not State.OPEN
            or connection.transport.get_write_buffer_size() > connection.write_limit_high
        ):
            return False
        protocol = connection.protocol
        for message in messages:
            protocol.send_binary(message)
        connection.transport.write(b"".join(protocol.data_to_send()))
        return True

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        self._pending = None
        self._connection.transport.abort()

    async def receive(self) -> bytes | str:
        """Wait for the next message.

        Raises:
            ConnectionClosed: the connection closed.
        """
        try:
            return await self._connection.recv()
        except WSConnectionClosed as exc:
            raise _closed(self._description, exc) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason`` (after what is pending); idempotent."""
        self._write_pending()
        await self._connection.close(code, reason)


async def connect(
    url: str,
    *,
    open_timeout: float = 10.0,
    compression: bool = False,
    token: str | None = None,
    ssl: ssl_module.SSLContext | None = None,
) -> WebSocketTransport:
    """Open a WebSocket to ``url`` and wrap it.

    Compression is off by default: envelopes are small and the links are
    usually local, where deflate costs more CPU than it saves. Options are
    keyword-only, so more can be added without breaking callers.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        open_timeout: seconds for the TCP, TLS and WebSocket handshakes.
        compression: offer permessage-deflate.
        token: a bearer token, sent as the subprotocol pair ``bearer, <token>``
            (PROTOCOL.md §17); the server selects ``bearer``.
        ssl: the TLS context of a ``wss://`` URL (default: the system's trust store).

    Raises:
        AttachRefused: the server answered the handshake with an HTTP error
            status; ``status`` is that status and ``reason`` the first line of
            the response body.
        ConnectionClosed: the server cannot be reached or the handshake failed
            otherwise; the message names the URL and the cause.
    """
    try:
        connection: ClientConnection = await ws_connect(
            url,
            open_timeout=open_timeout,
            max_size=MAX_MESSAGE_BYTES,
            compression="deflate" if compression else None,
            ping_interval=20,
            ping_timeout=20,
            max_queue=256,
            user_agent_header=f"famefabric websockets/{websockets_version}",
            subprotocols=[Subprotocol("bearer"), Subprotocol(token)] if token else None,
            ssl=_tls_context(url, ssl),
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        reason = refusal_reason(status, exc.response.body)
        raise AttachRefused(
            f"cannot attach to {url}: the server refused the WebSocket handshake "
            f"with HTTP {status}: {reason}",
            status=status,
            reason=reason,
        ) from exc
    except ssl_module.SSLCertVerificationError as exc:
        raise ConnectionClosed(_certificate_problem(url, exc)) from None
    except InvalidURI as exc:
        raise ConnectionClosed(
            f"cannot attach to {url}: not a valid WebSocket URL ({exc})"
        ) from exc
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        cause = str(exc) or type(exc).__name__
        raise ConnectionClosed(f"cannot connect to {url}: {cause}") from exc
    return WebSocketTransport(connection, description=url, coalesce=True)


def _tls_context(url: str, context: ssl_module.SSLContext | None) -> ssl_module.SSLContext | None:
    """The context of a ``wss://`` URL (the system's defaults when none is given); None for ws://."""
    if not url.startswith("wss://"):
        return None
    return context if context is not None else ssl_module.create_default_context()


_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH


def _certificate_problem(url: str, exc: ssl_module.SSLCertVerificationError) -> str:
    """Say why the server's certificate was refused, and what to do."""
    detail = exc.verify_message or exc.reason or str(exc)
    if exc.verify_code == _HOSTNAME_MISMATCH:
        return (
            f"cannot connect to {url}: the server's TLS certificate is not valid for this "
            f"host name ({detail}); use a host name the certificate names"
        )
    return (
        f"cannot connect to {url}: the server's TLS certificate is not trusted ({detail}); "
        "if a private CA signed it, set FAME_TLS_CA to that CA's certificate file (PEM)"
    )
