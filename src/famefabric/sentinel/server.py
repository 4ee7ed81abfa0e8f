"""The sentinel: the router every node attaches to (PROTOCOL.md §5, §7, §13, §16.2).

:class:`Sentinel` owns the listener (WebSocket attach paths and the HTTP
endpoints of :mod:`famefabric.sentinel.listener`), the lifecycle of every
child connection and the background work; what happens to each envelope is
the business of the connection's :class:`~famefabric.sentinel.session.ChildSession`
and the shared :class:`~famefabric.sentinel.router.Router`.

Ownership: the reader, writer and ticker of each connection
(:mod:`famefabric.sentinel.pump`) run in a task group of :meth:`Sentinel.handle_transport`
(which websockets' server runs per connection, or the sentinel's own task
group for :meth:`Sentinel.connect_in_memory`); the sentinel's housekeeping
runs in the task group of its ``async with``. ``close`` closes every child
with 1000 and waits for the readers.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from contextlib import AsyncExitStack
from http import HTTPStatus
from types import TracebackType
from typing import Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from famefabric.envelope_log import EnvelopePrinter
from famefabric.errors import ConfigurationError
from famefabric.observability import metrics, tracing
from famefabric.observability.endpoint import metrics_response
from famefabric.routing import RoutingTable
from famefabric.routing.permissions import Identity
from famefabric.security import TokenVerifier
from famefabric.sentinel import pump, spans
from famefabric.sentinel.admission import Admission
from famefabric.sentinel.admission_limits import (
    AdmissionLimits,
    ConnectionGate,
    fit_open_files,
    service_unavailable,
)
from famefabric.sentinel.cluster import ClusterMember, ClusterSettings
from famefabric.sentinel.inflight import DEFAULT_TTL, InflightRequests
from famefabric.sentinel.limits import SentinelLimits
from famefabric.sentinel.listener import (
    ATTACH_HEALTH_PATH,
    INGRESS_HEALTH_PATH,
    NOT_FOUND,
    attach_target,
    forbidden,
    health_response,
    is_closed,
    is_websocket_upgrade,
    json_response,
    select_subprotocol,
)
from famefabric.sentinel.router import Router
from famefabric.sentinel.session import ChildSession
from famefabric.sentinel.system_ids import default_sentinel_id, is_valid_system_id
from famefabric.transport.base import Transport
from famefabric.transport.memory import MemoryTransport, memory_pair
from famefabric.transport.websocket import MAX_MESSAGE_BYTES, WebSocketTransport

log = logging.getLogger("famefabric.sentinel")

DEFAULT_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES
"""Largest WebSocket message read (1 MiB); bigger ones close the link (1009).

Well above the 256 KiB envelope limit so that an oversize envelope is read
and answered with ``MESSAGE_TOO_LARGE`` instead of killing the link (§2.4),
yet small enough that a connection's receive buffer stays bounded.
"""


class Sentinel:
    """A root sentinel: accepts child nodes over WebSocket and routes their envelopes.

    Use it as an async context manager (``async with Sentinel(...) as s``),
    which starts listening and, on exit, closes every child with code 1000;
    or call :meth:`serve_forever`. In-process fabrics attach children with
    :meth:`connect_in_memory`, or serve a child over any transport with
    :meth:`handle_transport`; pass ``listen=False`` to run without a socket.

    Args:
        system_id: the sentinel's system id; it MUST stay the same across
            restarts (§5.9). Default: :func:`default_sentinel_id` of ``port``.
        host: interface to listen on.
        port: TCP port; 0 picks a free one (see :attr:`port`).
        show_envelopes: print every envelope received, forwarded or sent.
        idle_timeout: close a child that sent nothing for this many seconds
            (None: never).
        listen: open the WebSocket listener (False: only :meth:`handle_transport`).
        compression: negotiate permessage-deflate with clients that offer it.
        max_message_bytes: largest WebSocket message read.
        ping_interval: seconds between WebSocket keepalive pings (None: off).
        inflight_ttl: seconds an unanswered forwarded request is remembered
            for a ``CHILD_UNREACHABLE`` NACK.
        max_inflight: most forwarded requests remembered at once.
        envelope_printer: where ``show_envelopes`` prints (default: stderr).
        limits: queue sizes, deadlines and bounds (default: :class:`SentinelLimits`).
        connection_limits: connection limit and listen backlog (default:
            :class:`AdmissionLimits`).
        verifier: checks the bearer token of every attach (§17); None is open
            mode, where every connection is anonymous.
        tls: listen with TLS (``wss://``) using this context (§17.6).
        cluster: join this cluster of sentinels over NATS (docs/CLUSTER.md);
            None: a sentinel of its own.

    Raises:
        ConfigurationError: ``system_id`` is not a valid path segment.
    """

    def __init__(
        self,
        *,
        system_id: str | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        show_envelopes: bool = False,
        idle_timeout: float | None = 90.0,
        listen: bool = True,
        compression: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        ping_interval: float | None = 20.0,
        inflight_ttl: float = DEFAULT_TTL,
        max_inflight: int = 100_000,
        envelope_printer: EnvelopePrinter | None = None,
        limits: SentinelLimits | None = None,
        connection_limits: AdmissionLimits | None = None,
        verifier: TokenVerifier | None = None,
        cluster: ClusterSettings | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if system_id is None:
            system_id = default_sentinel_id(port=port)
        if not is_valid_system_id(system_id):
            raise ConfigurationError(
                f"sentinel system id {system_id!r} is not valid: expected letters, digits, "
                "'.', '_' or '-'"
            )
        self._system_id = system_id
        self._path = f"/{system_id}"
        self._host = host
        self._port = port
        self._idle_timeout = idle_timeout
        self._listen = listen
        self._compression = compression
        self._max_message_bytes = max_message_bytes
        self._ping_interval = ping_interval
        self._admission = Admission(verifier)
        self._tls = tls
        printer = envelope_printer or (EnvelopePrinter(label=system_id) if show_envelopes else None)
        self._limits = limits if limits is not None else SentinelLimits()
        self._connection_limits = connection_limits or AdmissionLimits()
        self._gate: ConnectionGate[ServerConnection] = ConnectionGate(
            self._connection_limits.max_connections, is_closed=is_closed
        )
        self._inflight = InflightRequests(
            ttl=inflight_ttl,
            max_entries=max_inflight,
            max_per_source=self._limits.max_inflight_per_node,
        )
        self._router = Router(
            system_id=system_id, inflight=self._inflight, limits=self._limits, printer=printer
        )
        self._connections = self._router.sessions
        self._cluster = ClusterMember(cluster, self._router) if cluster is not None else None
        self._no_connections = asyncio.Event()
        self._no_connections.set()
        self._server: Server | None = None
        self._stack: AsyncExitStack | None = None
        self._task_group: asyncio.TaskGroup | None = None
        self._started = False
        self._closing = False
        self._stopped = asyncio.Event()
        self._closed = asyncio.Event()
        self._metrics_token = metrics.metrics_token()
        metrics.watch_sentinel(self)

    @property
    def system_id(self) -> str:
        """The sentinel's system id."""
        return self._system_id

    @property
    def physical_path(self) -> str:
        """The sentinel's physical path, ``/<systemId>``."""
        return self._path

    @property
    def table(self) -> RoutingTable:
        """The routing table (read it; only the sentinel changes it)."""
        return self._router.table

    @property
    def port(self) -> int:
        """The bound TCP port (the configured one before listening)."""
        if self._server is not None:
            for sock in self._server.sockets:
                return int(sock.getsockname()[1])
        return self._port

    def stats(self) -> dict[str, int]:
        """Return counters: nodes, addresses, pools, capabilities, connections, inflight."""
        counts = self.table.counts()
        counts["connections"] = len(self._connections)
        counts["inflight"] = len(self._inflight)
        return counts

    def queue_depths(self) -> list[tuple[int, int]]:
        """Return (envelopes, bytes) waiting in each connection's outbound queue."""
        return [(len(session.outbound), session.outbound.bytes) for session in self._connections]

    async def __aenter__(self) -> Self:
        if self._closing:
            raise RuntimeError("this Sentinel is closed; create a new one to serve again")
        if self._started:
            raise RuntimeError("a Sentinel can be started only once")
        self._started = True
        stack = AsyncExitStack()
        task_group = await stack.enter_async_context(asyncio.TaskGroup())
        try:
            if self._cluster is not None:
                await self._cluster.start()
                stack.push_async_callback(self._cluster.stop)
                task_group.create_task(self._cluster.run())
            if self._listen:
                self._server = await self._open_listener()
        except BaseException:
            self._stopped.set()
            await stack.aclose()
            raise
        self._stack = stack
        self._task_group = task_group
        task_group.create_task(self._housekeeping())
        if self._listen:
            log.info("admission: %s", self._admission.describe())
            log.info("transport: %s", "TLS (wss://)" if self._tls else "plain (ws://), no TLS")
            log.info("sentinel %s listening on %s:%d", self._system_id, self._host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.close()
        finally:
            if self._stack is not None:
                stack, self._stack = self._stack, None
                await stack.aclose()

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` is called (or the task is cancelled).

        Starts the sentinel first if it is not started yet, and then also
        stops it on return.
        """
        if self._started or self._closing:
            await self._stopped.wait()
            return
        async with self:
            await self._stopped.wait()

    async def close(self) -> None:
        """Stop listening, close every child with 1000 and wait for them; idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._stopped.set()
        try:
            if self._server is not None:
                self._server.close(close_connections=False)
            for session in list(self._connections):
                pump.request_close(session, 1000, "sentinel shutting down")
            if self._server is not None:
                await self._server.wait_closed()
            await self._no_connections.wait()
            if self._cluster is not None:
                await self._cluster.stop()
        finally:
            self._closed.set()
        if self._server is not None:
            log.info("sentinel %s stopped", self._system_id)

    def connect_in_memory(self, system_id: str) -> MemoryTransport:
        """Attach a child living in this process, over an in-memory link.

        Returns the child's end of a :func:`~famefabric.transport.memory_pair`;
        the sentinel serves the other end (:meth:`handle_transport`) in its
        own task group until the link closes. The child then attaches with
        ``NodeAttach`` as over a WebSocket.

        Args:
            system_id: the child's system id (what its attach URL would end with).

        Raises:
            RuntimeError: the sentinel is not running (use ``async with``).
        """
        if self._task_group is None or self._closing:
            raise RuntimeError(
                "cannot connect in memory: the sentinel is not running "
                "(use 'async with Sentinel(...)')"
            )
        child_end, sentinel_end = memory_pair(system_id, self._system_id)
        self._task_group.create_task(self._serve_memory(sentinel_end, system_id))
        return child_end

    async def _serve_memory(self, transport: MemoryTransport, system_id: str) -> None:
        try:
            await self.handle_transport(transport, system_id)
        except Exception:  # task root: one child's failure must not stop the sentinel
            log.exception("node %s: the in-memory connection failed", system_id)

    async def handle_transport(
        self, transport: Transport, system_id: str, *, identity: Identity | None = None
    ) -> None:
        """Serve one child over ``transport`` until the link closes.

        The child must attach with ``NodeAttach`` carrying ``system_id``
        (the id its URL would carry). Returns once the link is closed and the
        child's routes are gone.

        Args:
            transport: the link to the child.
            system_id: the child's system id.
            identity: who its admission token proved it to be; None in open
                mode (anonymous, every address permission granted).
        """
        if not is_valid_system_id(system_id) or system_id == self._system_id:
            await transport.close(1008, f"invalid system id {system_id!r}")
            return
        loop = asyncio.get_running_loop()
        session = ChildSession(
            self._router,
            system_id,
            now=loop.time(),
            identity=identity,
            wall_now=time.time(),
            description=transport.description,
        )
        self._no_connections.clear()
        if self._closing:
            session.closing(1000, "sentinel shutting down")
        try:
            await pump.run(session, transport, idle_timeout=self._idle_timeout)
        finally:
            if not self._connections:
                self._no_connections.set()

    async def _open_listener(self) -> Server:
        self._gate.limit = fit_open_files(self._connection_limits.max_connections)
        try:
            return await serve(
                self._on_websocket,
                self._host,
                self._port,
                process_request=self._process_request,
                select_subprotocol=select_subprotocol,
                compression="deflate" if self._compression else None,
                max_size=self._max_message_bytes,
                max_queue=32,
                ping_interval=self._ping_interval,
                ping_timeout=20,
                server_header=None,
                ssl=self._tls,
                backlog=self._connection_limits.backlog,
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from exc

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = request.path.partition("?")[0]
        if path == ATTACH_HEALTH_PATH:
            cluster = self._cluster.health() if self._cluster is not None else None
            return health_response(connection, self.table.counts(), self._system_id, cluster)
        if path == INGRESS_HEALTH_PATH:
            return json_response(connection, HTTPStatus.OK, {"status": "healthy"})
        if path == metrics.METRICS_PATH:
            return metrics_response(connection, request, self._metrics_token)
        if path.startswith("/fame/v1/attach/ws/") and is_websocket_upgrade(request.headers):
            child = attach_target(path, self._system_id)
            if child is None:
                log.info("refused a WebSocket handshake on %s", path)
                metrics.CONNECTIONS_REFUSED.labels("invalid_path").inc()
                return forbidden(connection)
            if not self._gate.admit(connection):
                log.warning(
                    "refused an attach with 503: at the limit of %d connections", self._gate.limit
                )
                return service_unavailable(connection, self._gate.limit)
            refusal = await self._admission.admit(connection, request, child)
            if refusal is not None:
                self._gate.release(connection)
            return refusal
        return json_response(connection, HTTPStatus.NOT_FOUND, NOT_FOUND)

    async def _on_websocket(self, connection: ServerConnection) -> None:
        request = connection.request
        child = attach_target(request.path, self._system_id) if request is not None else None
        if child is None:  # process_request admitted only valid paths
            await connection.close(1008, "invalid attach path")
            return
        identity = self._admission.identity_of(connection)
        if identity is None and not self._admission.is_open:  # never anonymous when auth is on
            await connection.close(1008, "not authenticated")
            return
        remote = connection.remote_address
        where = f"{remote[0]}:{remote[1]}" if isinstance(remote, tuple) else str(remote)
        metrics.CONNECTIONS_ACCEPTED.inc()
        try:
            await self.handle_transport(
                WebSocketTransport(connection, description=f"{child} at {where}"),
                child,
                identity=identity,
            )
        finally:
            self._gate.release(connection)

    async def _housekeeping(self) -> None:
        """Expire forgotten in-flight requests until the sentinel stops."""
        interval = 5.0
        while not self._stopped.is_set():
            try:
                async with asyncio.timeout(interval):
                    await self._stopped.wait()
            except TimeoutError:
                pass
            try:
                expired = self._inflight.expire()
            except Exception:  # task root: keep housekeeping alive
                log.exception("in-flight expiry failed")
                continue
            if tracing.ACTIVE:
                spans.expired(expired)
            if expired:
                log.debug("forgot %d unanswered requests past their deadline", len(expired))
