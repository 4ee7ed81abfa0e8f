"""Keeping a node attached: connect, serve each connection, reconnect (PROTOCOL.md §5).

The :class:`Supervisor` owns the node's current :class:`~famefabric.node.link.Link`.
For each connection it runs three tasks:

* the reader: decodes each message once, grants credits at once (§9), hands
  replies to the RPC inbox straight to the pending calls and everything else
  to :class:`~famefabric.node.inbound.Inbound`; it watches heartbeat acks for
  a new routing epoch (§5.6), which triggers a re-bind;
* the heartbeat: a ``NodeHeartbeat`` every interval, and the liveness check
  (§2.5, §5.5) that gives the connection up when the sentinel went quiet;
* after a re-attach, the restore: re-bind every address, then flush what was
  queued while disconnected, and only then let new envelopes go out directly.

When a connection is lost, the calls whose requests went out on it fail at
once, and :meth:`Supervisor.run` reconnects with backoff (§5.7) until the
node closes or the delays run out. Every change of the connection's state
goes through the node's :class:`~famefabric.node.state.LinkStateMachine`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from famefabric.envelope_log import EnvelopePrinter
from famefabric.errors import AttachRefused, ConnectionClosed, RemoteProtocolError
from famefabric.node.backoff import is_retryable
from famefabric.node.binder import Binder
from famefabric.node.inbound import Inbound
from famefabric.node.link import Connector, Link, close_quietly, open_link
from famefabric.node.outbox import Outbox
from famefabric.node.rpc import RpcClient
from famefabric.node.state import LinkEvent, LinkState, LinkStateMachine
from famefabric.node.tasks import TaskStatus
from famefabric.protocol.address import RPC_PARTICIPANT_PREFIX
from famefabric.protocol.codec import envelope_from_dict, parse_object
from famefabric.protocol.frames import Envelope, NodeAttachAck, NodeHeartbeatAck

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """A change in the node's connection, for listeners (e.g. a REPL's status line).

    Attributes:
        kind: ``attached``, ``disconnected`` or ``reconnecting``.
        detail: the assigned path, the reason of the disconnect, or the URL retried.
        delay: for ``reconnecting``, the seconds before the next attempt.
    """

    kind: Literal["attached", "disconnected", "reconnecting"]
    detail: str
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Timing:
    """The node's timing and retry settings (see :class:`~famefabric.node.Node`)."""

    heartbeat_interval: float
    heartbeat_timeout: float
    attach_timeout: float
    max_initial_attempts: int
    reconnect: bool
    backoff: Callable[[], Iterator[float]]


class Supervisor:
    """Connects a node, serves its connections and reconnects them.

    Args:
        url: the attach URL including the system id.
        system_id: the node's system id.
        connect: opens a transport to the URL.
        accepted_logicals: announced in every ``NodeAttach``.
        timing: heartbeat, attach and retry settings.
        printer: prints envelopes, when set.
        inbound: routes what the reader receives.
        binder: re-binds after a re-attach or an epoch change.
        outbox: flushed after a re-attach.
        rpc: its calls fail when their connection drops.
        emit: reports :class:`NodeEvent` to the node's listeners.
        spawn: runs a coroutine in the node's task group.
        machine: the node's connection state, changed only through its table.
        can_renew_token: tells whether the next attempt would present a new
            token; a 401/403 refusal is final otherwise. A node whose token
            comes from a provider that can fetch a fresh one returns True.
    """

    def __init__(
        self,
        *,
        url: str,
        system_id: str,
        connect: Connector,
        accepted_logicals: Sequence[str],
        timing: Timing,
        printer: EnvelopePrinter | None,
        inbound: Inbound,
        binder: Binder,
        outbox: Outbox,
        rpc: RpcClient,
        emit: Callable[[NodeEvent], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        machine: LinkStateMachine,
        can_renew_token: Callable[[], bool] = lambda: False,
        fallback_urls: Sequence[str] = (),
    ) -> None:
        self._urls = [url, *fallback_urls]
        self._current = 0
        self._system_id = system_id
        self._connect = connect
        self._accepted_logicals = tuple(accepted_logicals)
        self._timing = timing
        self._printer = printer
        self._inbound = inbound
        self._binder = binder
        self._outbox = outbox
        self._rpc = rpc
        self._emit = emit
        self._spawn = spawn
        self._machine = machine
        self._can_renew_token = can_renew_token
        self._generation = 0
        self.link: Link | None = None
        """The current connection; None while disconnected."""
        self.path: str | None = None
        self.sentinel_id: str | None = None
        self.epoch: str | None = None

    @property
    def url(self) -> str:
        """The attach URL in use (or tried next), including the system id."""
        return self._urls[self._current]

    @property
    def _url(self) -> str:
        if len(self._urls) == 1:
            return self._urls[0]
        return " or ".join(self._urls)

    @property
    def may_queue(self) -> bool:
        """Tell whether an envelope sent now can wait for a coming connection."""
        state = self._machine.state
        if state is LinkState.CONNECTING or state is LinkState.RESTORING:
            return True
        return state is LinkState.DISCONNECTED and self._timing.reconnect

    def _retryable(self, error: BaseException, *, has_attached: bool) -> bool:
        return is_retryable(
            error, has_attached=has_attached, can_renew_token=self._can_renew_token()
        )

    async def _open(self) -> Link:
        """Attach to the URL in use, else to each other one in order (one sentinel of several)."""
        count = len(self._urls)
        for step in range(count):
            index = (self._current + step) % count
            self._generation += 1
            try:
                link = await open_link(
                    connect=self._connect,
                    url=self._urls[index],
                    system_id=self._system_id,
                    accepted_logicals=self._accepted_logicals,
                    generation=self._generation,
                    attach_timeout=self._timing.attach_timeout,
                    printer=self._printer,
                )
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                if step == count - 1:
                    raise
                log.info("attach to %s failed: %s; trying the next URL", self._urls[index], exc)
                continue
            self._current = index
            return link
        raise AssertionError("unreachable: a node always has an attach URL")

    async def first_attach(self) -> Link:
        """Connect and attach, trying up to ``max_initial_attempts`` times (0: forever).

        Raises:
            ConnectionClosed: the last attempt failed, or a failure is not worth
                retrying (e.g. a 403 refusal); the message names the URL.
        """
        delays = self._timing.backoff()
        limit = self._timing.max_initial_attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._open()
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                error: BaseException = exc
            delay = next(delays, None)
            if not self._retryable(error, has_attached=False) or attempt == limit or delay is None:
                if attempt == 1:
                    raise error
                message = f"cannot attach to {self._url} after {attempt} attempts: {error}"
                if isinstance(error, AttachRefused):
                    raise AttachRefused(
                        message, status=error.status, reason=error.reason, code=error.code
                    ) from error
                raise ConnectionClosed(
                    message,
                    code=getattr(error, "code", None),
                    reason=getattr(error, "reason", ""),
                ) from error
            log.warning("attach to %s failed: %s; retrying in %.1f s", self._url, error, delay)
            self._emit(NodeEvent("reconnecting", self._url, delay))
            await asyncio.sleep(delay)

    def install(self, link: Link) -> None:
        """Make ``link`` the current connection; ready at once if nothing must be restored."""
        attachment = link.attachment
        self.link = link
        self.path = self._inbound.path = attachment.assigned_path
        self.sentinel_id = attachment.sentinel_id
        self.epoch = attachment.routing_epoch
        self._machine.fire(LinkEvent.ATTACHED)
        if not self._binder.bindings and not self._outbox:
            self._machine.fire(LinkEvent.RESTORED)
        log.info(
            "node %s attached as %s to sentinel %s",
            self._system_id,
            attachment.assigned_path,
            attachment.sentinel_id,
        )
        self._emit(NodeEvent("attached", attachment.assigned_path))

    async def run(self, task_status: TaskStatus[Link]) -> None:
        """Attach (see :meth:`first_attach`), report it, serve, and reconnect after each loss.

        ``task_status.started(link)`` is called once the first connection is
        attached and installed; an error before that is the caller's.
        """
        link = await self.first_attach()
        self.install(link)
        task_status.started(link)
        while True:
            await self._serve(link)
            if not self._machine.is_running:
                return
            next_link = await self._reattach() if self._timing.reconnect else None
            if next_link is None:
                if self._machine.allows(LinkEvent.GIVE_UP):
                    self._machine.fire(LinkEvent.GIVE_UP)
                for call in self._outbox.give_up():
                    call.fail(
                        ConnectionClosed(
                            f"connection to sentinel lost before {call.method} was sent"
                        )
                    )
                return
            link = next_link
            if not self._machine.allows(LinkEvent.ATTACHED):  # closed meanwhile
                await close_quietly(link.transport, 1000, "normal closure")
                return
            self.install(link)

    def stop(self) -> Link | None:
        """Forget the current connection (the node is closing); return it."""
        link, self.link = self.link, None
        return link

    def drop(self, link: Link, error: ConnectionClosed) -> None:
        """Give up a connection: fail what was in flight on it; once per connection."""
        if not link.give_up(error):
            return
        if self.link is link:
            self.link = None
            if self._machine.allows(LinkEvent.LOST):
                self._machine.fire(LinkEvent.LOST)
        failed = self._rpc.fail_sent_on(link.generation)
        self._binder.fail(link.generation, error)
        if not self._machine.is_running:
            return
        log.info("node %s disconnected: %s (%d calls failed)", self._system_id, error, failed)
        self._emit(NodeEvent("disconnected", str(error)))

    async def _serve(self, link: Link) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._read(link)), tg.create_task(self._heartbeat(link))]
            if self._machine.state is LinkState.RESTORING:
                tasks.append(tg.create_task(self._restore(link)))
            await link.lost
            for task in tasks:
                task.cancel()
        if self._machine.is_running:
            self._spawn(close_quietly(link.transport, 1000, "normal closure"))

    async def _reattach(self) -> Link | None:
        delays = self._timing.backoff()  # a fresh generator: the delay resets (§5.7)
        attempt = 0
        while self._machine.is_running:
            delay = next(delays, None)
            if delay is None:
                log.warning("node %s gave up reconnecting to %s", self._system_id, self._url)
                self._emit(NodeEvent("disconnected", f"gave up reconnecting to {self._url}"))
                return None
            log.info("node %s reconnecting in %.1f s", self._system_id, delay)
            self._emit(NodeEvent("reconnecting", self._url, delay))
            await asyncio.sleep(delay)
            attempt += 1
            try:
                return await self._open()
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                if not self._retryable(exc, has_attached=True):
                    log.error("node %s cannot reconnect: %s", self._system_id, exc)
                    self._emit(NodeEvent("disconnected", f"gave up reconnecting: {exc}"))
                    return None
                log.warning("reconnect attempt %d failed: %s", attempt, exc)
        return None

    async def _read(self, link: Link) -> None:
        transport = link.transport
        session = link.session
        printer = link.printer
        inbound = self._inbound
        clock = asyncio.get_running_loop().time
        try:
            while True:
                raw = await transport.receive()
                try:
                    obj = parse_object(raw)
                except RemoteProtocolError as exc:
                    session.touch(now=clock())
                    log.warning("dropping a malformed message from the sentinel: %s", exc)
                    continue
                if printer is not None:
                    printer.show("received", obj, peer=link.description)
                frame = obj["frame"]
                kind = frame["type"]
                if kind == "CreditUpdate":
                    session.touch(now=clock())  # hop-local; we never wait for credits (§9)
                    continue
                credit = session.on_receive(obj.get("flowId"), now=clock())
                if credit is not None:
                    await link.send_unstamped(credit)
                to = obj.get("to")
                if (
                    (kind == "Data" or kind == "DeliveryAck")
                    and type(to) is str
                    and to.startswith(RPC_PARTICIPANT_PREFIX)
                ):
                    inbound.on_reply(obj, frame)
                    continue
                try:
                    envelope = envelope_from_dict(obj)
                except RemoteProtocolError as exc:
                    log.warning("dropping an invalid envelope from the sentinel: %s", exc)
                    continue
                self._dispatch(link, envelope)
        except ConnectionClosed as exc:
            self.drop(link, exc)
        except Exception as exc:
            self._fail(link, "reader", exc)

    def _dispatch(self, link: Link, envelope: Envelope) -> None:
        frame = envelope.frame
        if isinstance(frame, NodeHeartbeatAck):
            if link.session.on_heartbeat_ack(frame, now=asyncio.get_running_loop().time()):
                self.epoch = frame.routing_epoch
                log.info(
                    "node %s: routing epoch is now %s; re-binding", self._system_id, self.epoch
                )
                self._spawn(self._rebind(link))
        elif isinstance(frame, NodeAttachAck):
            log.debug("ignoring a NodeAttachAck after the attach")
        else:
            self._inbound.on_envelope(envelope)

    async def _heartbeat(self, link: Link) -> None:
        session = link.session
        clock = asyncio.get_running_loop().time
        timing = self._timing
        try:
            while True:
                await asyncio.sleep(timing.heartbeat_interval)
                reason = session.liveness_failure(now=clock(), timeout=timing.heartbeat_timeout)
                if reason is not None:
                    log.warning("node %s gives up the connection: %s", self._system_id, reason)
                    self.drop(link, ConnectionClosed(f"connection to sentinel is dead: {reason}"))
                    return
                await link.send(session.heartbeat_envelope())
        except ConnectionClosed as exc:
            self.drop(link, exc)
        except Exception as exc:
            self._fail(link, "heartbeat", exc)

    async def _restore(self, link: Link) -> None:
        try:
            await self._binder.bind_all(link)
            await self._outbox.flush(link)
            # No await since flush found the backlog empty: order holds.
            if self.link is link and self._machine.state is LinkState.RESTORING:
                self._machine.fire(LinkEvent.RESTORED)
        except ConnectionClosed as exc:
            self.drop(link, exc)
        except Exception as exc:
            self._fail(link, "restore", exc)

    async def _rebind(self, link: Link) -> None:
        try:
            await self._binder.bind_all(link)
        except ConnectionClosed as exc:
            self.drop(link, exc)
        except Exception as exc:
            self._fail(link, "re-bind", exc)

    def _fail(self, link: Link, task: str, error: Exception) -> None:
        # A task root: nobody can receive this error, so log it and start over.
        log.error("node %s: %s failed", self._system_id, task, exc_info=error)
        self.drop(link, ConnectionClosed(f"{task} failed: {error!r}"))
