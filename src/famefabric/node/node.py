"""A node: one process attached to a sentinel (PROTOCOL.md §5).

:class:`Node` is the public face: it attaches on ``async with``, serves the
addresses bound to it and calls others. It composes the parts that do the
work, each in its own module:

* :class:`~famefabric.node.supervisor.Supervisor` connects, runs each
  connection's reader and heartbeat, and reconnects with backoff;
* :class:`~famefabric.node.inbound.Inbound` routes what arrives: replies to
  :class:`~famefabric.node.rpc.RpcClient`'s pending calls, control acks to the
  :class:`~famefabric.node.binder.Binder`, requests to bound handlers;
* :class:`~famefabric.node.outbox.Outbox` sends application envelopes now, or
  queues them while disconnected.

They are built and wired to each other in :mod:`famefabric.node.assembly`.

Every task the node starts lives in its :class:`~famefabric.node.tasks.TaskScope`, an
:class:`asyncio.TaskGroup` entered through an :class:`~contextlib.AsyncExitStack` by
``__aenter__`` and left by ``__aexit__``; :meth:`Node.close` cancels them. ``__aenter__``
starts the supervisor in the group and returns once it reports the first attach (as trio's
``nursery.start()``, :mod:`famefabric.node.tasks`). The connection's state is one
:class:`~famefabric.node.state.LinkState`, shared with the supervisor. Envelopes for the
node's own addresses never touch the wire: the sentinel would refuse to route them back to
their sender (§7.2).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from famefabric.envelope_log import EnvelopePrinter
from famefabric.errors import ConnectionClosed, FabricError, JSONValue
from famefabric.node import wire
from famefabric.node.assembly import Hooks, admission_bases, assemble
from famefabric.node.backoff import backoff_delays
from famefabric.node.connector import websocket_connector
from famefabric.node.dispatch import Handler
from famefabric.node.link import Connector, close_quietly
from famefabric.node.rpc import Stream
from famefabric.node.state import LinkEvent, LinkState, LinkStateMachine
from famefabric.node.supervisor import NodeEvent, Timing
from famefabric.node.tasks import TaskScope, TaskStatus, start
from famefabric.options import count, positive_seconds
from famefabric.protocol.address import RPC_PARTICIPANT_PREFIX
from famefabric.protocol.frames import Envelope
from famefabric.protocol.ids import new_id
from famefabric.security import TokenProvider

log = logging.getLogger(__name__)

T = TypeVar("T")

HANDLER_SHUTDOWN_TIMEOUT = 5.0
"""Seconds ``close`` waits for cancelled handlers to finish."""


class Node:
    """A process attached to a sentinel: serves bound addresses and calls others.

    Use it as an async context manager; entering connects and attaches,
    leaving closes (code 1000). All arguments are keyword-only and optional.

    Args:
        admission_url: the attach URL without the system id (the value of
            ``FAME_DIRECT_ADMISSION_URL``); ``/<system_id>`` is appended. Several
            comma-separated URLs (sentinels of one cluster) are tried in order
            at each attempt, and the node re-attaches to the next one that answers.
        connect: opens a transport to a URL (default: a WebSocket).
        system_id: this node's id; by default a fresh random id, so two
            copies of one program never collide (§3.2).
        accepted_logicals: logical domains announced in ``NodeAttach``.
        heartbeat_interval: seconds between heartbeats (§5.5).
        heartbeat_timeout: seconds without a heartbeat ack, or without any
            message, after which the connection is given up.
        max_initial_attempts: connection attempts before ``__aenter__``
            fails; 0 means forever.
        reconnect: reconnect after losing an established connection.
        default_timeout: seconds a call, or a stream per item, waits by default.
        show_envelopes: print every envelope sent and received.
        printer: the printer used when ``show_envelopes`` is set.
        backoff: returns a fresh iterator of delays before reconnect
            attempts; when it runs out the node stops retrying.
        max_queued: envelopes kept while disconnected, to flush after re-attach.
        attach_timeout: seconds to wait for ``NodeAttachAck`` (§5.1).
        token: where the bearer token presented at each attach comes from
            (default connector only; §17).
        tls: the TLS context for ``wss://`` URLs (default: the system's trust store).

    Raises:
        ConfigurationError: an argument has an invalid value.
    """

    def __init__(
        self,
        *,
        admission_url: str | None = None,
        connect: Connector | None = None,
        system_id: str | None = None,
        accepted_logicals: Sequence[str] = ("*",),
        heartbeat_interval: float = 15.0,
        heartbeat_timeout: float = 30.0,
        max_initial_attempts: int = 1,
        reconnect: bool = True,
        default_timeout: float = 30.0,
        show_envelopes: bool = False,
        printer: EnvelopePrinter | None = None,
        backoff: Callable[[], Iterator[float]] | None = None,
        max_queued: int = 512,
        attach_timeout: float = 10.0,
        token: TokenProvider | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        bases = admission_bases(admission_url, default_connect=connect is None, system_id=system_id)
        default_timeout = positive_seconds("default_timeout", default_timeout)
        max_queued = count("max_queued", max_queued)
        self.system_id: str = system_id or new_id()
        """This node's system id, the last segment of its physical path."""
        url, *fallback_urls = (f"{each.rstrip('/')}/{self.system_id}" for each in bases)
        self._reconnect = reconnect
        self._token = token
        self._machine = machine = LinkStateMachine()
        parts = assemble(
            system_id=self.system_id,
            machine=machine,
            url=url,
            fallback_urls=fallback_urls,
            connect=connect or websocket_connector(token, tls),
            accepted_logicals=accepted_logicals,
            timing=Timing(
                heartbeat_interval=positive_seconds("heartbeat_interval", heartbeat_interval),
                heartbeat_timeout=positive_seconds("heartbeat_timeout", heartbeat_timeout),
                attach_timeout=positive_seconds("attach_timeout", attach_timeout),
                max_initial_attempts=count("max_initial_attempts", max_initial_attempts),
                reconnect=reconnect,
                backoff=backoff or backoff_delays,
            ),
            printer=(printer or EnvelopePrinter(label=self.system_id)) if show_envelopes else None,
            max_queued=max_queued,
            default_timeout=default_timeout,
            hooks=Hooks(
                spawn=self._spawn_quietly,
                emit=self._emit,
                can_renew_token=self._can_renew_token,
                reply_address=lambda: self.reply_address,
                keeps_trying=lambda: self._reconnect and machine.is_running,
            ),
        )
        self._sender = parts.sender
        self._rpc = parts.rpc
        self._binder = parts.binder
        self._bindings = parts.binder.bindings
        self._outbox = parts.outbox
        self._inbound = parts.inbound
        self._supervisor = parts.supervisor
        self._registrar = parts.registrar
        self._listeners: list[Callable[[NodeEvent], None]] = []
        self._scope = TaskScope()
        self._runner: asyncio.Task[None] | None = None

    # -- public state ---------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL this node attaches to (admission URL + system id)."""
        return self._supervisor.url

    @property
    def assigned_path(self) -> str | None:
        """The physical path the sentinel assigned (the last one, while disconnected)."""
        return self._supervisor.path

    @property
    def sentinel_id(self) -> str | None:
        """The system id of the sentinel this node attached to last."""
        return self._supervisor.sentinel_id

    @property
    def routing_epoch(self) -> str | None:
        """The last routing epoch announced by the sentinel (§5.6)."""
        return self._supervisor.epoch

    @property
    def state(self) -> LinkState:
        """Where the connection stands (see :mod:`famefabric.node.state`)."""
        return self._machine.state

    @property
    def is_attached(self) -> bool:
        """Tell whether the node has a live, attached connection now."""
        return self._machine.is_attached

    @property
    def pending_calls(self) -> int:
        """How many calls and streams are waiting for replies."""
        return len(self._rpc.pending)

    @property
    def reply_address(self) -> str | None:
        """This node's RPC inbox ``__rpc__<id>@<assignedPath>`` (recomputed at each attach)."""
        path = self._supervisor.path
        if path is None:
            return None
        return f"{RPC_PARTICIPANT_PREFIX}{self._rpc.inbox_id}@{path}"

    def _can_renew_token(self) -> bool:
        """Tell whether the next connection attempt would present a new token.

        The hook for token providers: a handshake refused with 401 or 403 is
        retried only when this returns True (a fresh token may be accepted);
        otherwise such a refusal ends reconnecting for good. A node without a
        token provider has nothing new to present.
        """
        return self._token is not None and self._token.can_renew()

    def add_listener(self, callback: Callable[[NodeEvent], None]) -> None:
        """Call ``callback`` on every :class:`NodeEvent`; it must not block."""
        self._listeners.append(callback)

    # -- lifecycle ------------------------------------------------------------

    async def __aenter__(self) -> Node:
        """Connect and attach.

        Raises:
            AttachRefused: the sentinel refused this node (``status`` is the
                HTTP status of a refused handshake, e.g. 401 or 403).
            ConnectionClosed: the sentinel could not be reached or refused the
                attach after ``max_initial_attempts`` attempts, or the node was
                closed meanwhile; names the URL.
        """
        if self._machine.state is not LinkState.NEW:
            raise FabricError(f"node {self.system_id} was already started; create a new Node")
        self._machine.fire(LinkEvent.START)
        await self._scope.enter()
        try:
            await start(self._scope, self._run_supervisor)
        except BaseException as exc:
            task = asyncio.current_task()
            closed = (  # close() cancelled the attach, not our caller
                self._machine.is_closed
                and isinstance(exc, asyncio.CancelledError)
                and (task is None or not task.cancelling())
            )
            if self._machine.allows(LinkEvent.FAILED):
                self._machine.fire(LinkEvent.FAILED)
            if closed:
                await self._scope.leave(None, None, None)
                raise ConnectionClosed(
                    f"node {self.system_id} was closed while attaching", code=1000
                ) from None
            await self._scope.leave(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def _run_supervisor(self, task_status: TaskStatus[Any]) -> None:
        self._runner = asyncio.current_task()
        await self._supervisor.run(task_status)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        await self._scope.leave(exc_type, exc, tb)

    async def close(self) -> None:
        """Close the connection (code 1000) and stop every task; idempotent.

        Calls still waiting fail with :class:`ConnectionClosed`; handlers
        still running are cancelled.
        """
        machine = self._machine
        if not machine.allows(LinkEvent.CLOSE):
            return  # closing or closed already
        if machine.fire(LinkEvent.CLOSE) is LinkState.CLOSED:
            return  # never started
        closed = ConnectionClosed(f"node {self.system_id} closed", code=1000)
        if self._runner is not None:
            self._runner.cancel()
        link = self._supervisor.stop()
        self._rpc.fail_all(f"node {self.system_id} closed")
        self._binder.fail(None, closed)
        self._outbox.clear()
        if link is not None:
            link.give_up(closed)
            await close_quietly(link.transport, 1000, "normal closure")
        stuck = await self._scope.cancel_all(timeout=HANDLER_SHUTDOWN_TIMEOUT)
        if stuck:
            log.warning("node %s: %d tasks ignored cancellation", self.system_id, stuck)
        machine.fire(LinkEvent.CLOSED)
        log.info("node %s closed", self.system_id)
        self._emit(NodeEvent("disconnected", "node closed"))

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` in the node's task group; it is cancelled when the node closes.

        Raises:
            ConnectionClosed: the node is not running.
        """
        if not self._scope.is_open or not self._machine.is_running:
            coro.close()
            raise ConnectionClosed(f"cannot start a task: node {self.system_id} is not running")
        return self._scope.create_task(coro)

    def _spawn_quietly(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            self.spawn(coro)
        except (ConnectionClosed, RuntimeError):
            coro.close()

    def _emit(self, event: NodeEvent) -> None:
        for callback in list(self._listeners):
            try:
                callback(event)
            except Exception:
                log.exception("node event listener %r failed", callback)

    # -- outbound (the send path is in famefabric.node.sender) ---------------

    async def send(self, envelope: Envelope) -> None:
        """Send an envelope to the sentinel.

        Fills ``id``, ``ts``, ``traceId`` when absent, and ``sid``, ``flowId``
        (the connection's default flow), ``seqId`` and ``flowFlags``. While
        disconnected the envelope is queued (up to ``max_queued``) and sent
        after the re-attach.

        Raises:
            LocalProtocolError: the serialized envelope exceeds 262 144 bytes.
            ConnectionClosed: the node is closed, gave up reconnecting, or its
                queue is full.
        """
        await self._sender.submit(wire.outgoing(envelope))

    async def reply(self, request: Envelope, payload: dict[str, Any]) -> None:
        """Answer a request at its ``replyTo`` (PROTOCOL.md §8.2).

        The reply's ``corrId`` is the JSON-RPC id in ``payload`` and its
        ``traceId`` the request's. A request with the ACK bit in ``rtype``
        first gets a positive ``DeliveryAck`` (once, §8.4). A request
        without ``replyTo`` is not answered.

        Raises:
            LocalProtocolError: the reply is larger than 262 144 bytes.
            ConnectionClosed: as for :meth:`send`.
        """
        if request.reply_to is None:
            return
        if self._inbound.should_acknowledge(request):
            await self._sender.submit(wire.delivery_ack_of(request))
        await self._sender.submit(wire.reply(request, payload))

    async def call(
        self,
        to: str,
        method: str,
        params: JSONValue,
        *,
        timeout: float | None = None,
        meta: dict[str, JSONValue] | None = None,
    ) -> JSONValue:
        """Call a JSON-RPC method at an address and return its result.

        The request carries ``meta.deadline`` (unix ms) so the agent can skip
        work nobody waits for any more.

        Args:
            to: the agent's address, e.g. ``echo@fame.fabric``.
            method: the JSON-RPC method.
            params: the JSON-RPC params.
            timeout: seconds to wait (default: ``default_timeout``).
            meta: extra envelope metadata.

        Raises:
            RemoteError: the agent answered with an error.
            NoRoute: the sentinel could not deliver the request.
            OperationTimeout: no answer in time; the agent gets a cancel notice.
            ConnectionClosed: the link dropped while the call was in flight.
            LocalProtocolError: ``to`` is not an address, or the request is too large.
        """
        return await self._rpc.call(to, method, params, timeout=timeout, meta=meta)

    def stream(
        self,
        to: str,
        method: str,
        params: JSONValue,
        *,
        idle_timeout: float | None = None,
        timeout: float | None = None,
        meta: dict[str, JSONValue] | None = None,
    ) -> Stream:
        """Call a streaming method; iterate the result to receive its items.

        Args:
            to: the agent's address.
            method: the JSON-RPC method.
            params: the JSON-RPC params.
            idle_timeout: seconds to wait for each item (default: ``default_timeout``).
            timeout: seconds for the whole stream (default: no limit).
            meta: extra envelope metadata.

        Returns:
            a :class:`Stream`; see it for the errors iteration raises.
        """
        return self._rpc.stream(
            to, method, params, idle_timeout=idle_timeout, timeout=timeout, meta=meta
        )

    # -- bindings -------------------------------------------------------------

    async def bind(
        self,
        address: str,
        handler: Handler,
        *,
        capabilities: Sequence[str] = ("fame.capability.agent",),
    ) -> None:
        """Serve ``address``: envelopes addressed to it go to ``handler``.

        Sends ``AddressBind`` and then ``CapabilityAdvertise`` and waits for
        their acks. The binding is remembered and re-sent after every
        re-attach and routing-epoch change (§5.6). While disconnected it is
        only remembered.

        Raises:
            LocalProtocolError: ``address`` is not an address.
            FabricError: the sentinel refused (names the address).
            OperationTimeout: no ack within 20 s.
        """
        await self._registrar.bind(address, handler, capabilities)

    async def unbind(self, address: str) -> None:
        """Stop serving ``address`` (``AddressUnbind``, then ``CapabilityWithdraw``).

        Raises:
            FabricError: the sentinel refused.
            OperationTimeout: no ack within 20 s.
        """
        await self._registrar.unbind(address)
