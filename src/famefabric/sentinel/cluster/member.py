"""A sentinel's membership in a cluster: its NATS connection, heartbeats, ingress and egress.

:class:`ClusterMember` is what :class:`~famefabric.sentinel.router.Router`
sees as its ``cluster`` (:class:`~famefabric.sentinel.actions.ClusterRoutes`):
it decides whether an envelope goes to a peer (:mod:`.routes`) and sends it
there; it also reads what peers send to this sentinel and routes it to the
children here.

Ownership: :meth:`ClusterMember.run` runs the heartbeat and the publisher
in the sentinel's task group until :meth:`ClusterMember.stop`; nats-py runs
the subscription callbacks. Sends never block the router: they go to a
bounded queue that the publisher drains in order (one queue, so the order
of one sender's envelopes is kept end to end: NATS keeps the order of one
connection's messages on one subject).

Liveness: a heartbeat every ``peer_timeout / 4`` seconds, and one at once
(within 25 ms) whenever the routing table changes; a peer silent for
``peer_timeout`` seconds (2 by default) is dropped with its routes, and the
requests this sentinel had sent it are NACKed ``CHILD_UNREACHABLE`` at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from famefabric.errors import ConfigurationError, ProtocolError
from famefabric.protocol.codec import parse_object
from famefabric.protocol.envelopes import CANCELLED, is_request_rtype
from famefabric.protocol.ids import new_id
from famefabric.routing import CHILD_UNREACHABLE, Deliver, Drop, route
from famefabric.routing.decisions import Decision, is_nackable
from famefabric.sentinel import pump
from famefabric.sentinel.actions import PEER_PREFIX, Action, Origin, Remote, Send
from famefabric.sentinel.cluster import routes, wire
from famefabric.sentinel.cluster.connection import connect_options
from famefabric.sentinel.cluster.settings import ClusterSettings
from famefabric.sentinel.cluster.view import ClusterView, snapshot
from famefabric.sentinel.router import Router

log = logging.getLogger("famefabric.sentinel.cluster")

MAX_QUEUED_BYTES = 64 * 1024 * 1024
"""Bytes waiting for NATS at most; beyond, requests to peers are NACKed ``DESTINATION_BUSY``."""
JOIN_TIMEOUT_PER_SERVER = 5.0
"""Seconds per NATS server the first connection may take before the start-up fails."""
CHANGE_POLL = 0.025
"""Seconds between checks of the routing table for changes to announce."""


class PeerOrigin:
    """Stands for a peer sentinel (or one of its nodes) as the sender of an envelope."""

    __slots__ = ("node_id",)

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def warn(self, message: str, *args: object) -> None:
        log.warning("from %s: " + message, self.node_id, *args)


class ClusterMember:
    """This sentinel's part in a cluster.

    Args:
        settings: the NATS servers, credentials and timing.
        router: the sentinel's router (the member sets ``router.cluster``).
    """

    def __init__(self, settings: ClusterSettings, router: Router) -> None:
        self.settings = settings
        self.router = router
        self.self_id = router.system_id
        self.instance = new_id()
        self.subjects = wire.Subjects(settings.prefix)
        self.view = ClusterView(self.self_id, peer_timeout=settings.peer_timeout)
        self._nc: Client | None = None
        self._queue: deque[tuple[str, bytes, dict[str, Any] | None]] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Connect to NATS, subscribe, and announce this sentinel.

        Raises:
            ConfigurationError: no NATS server could be reached or authenticated to.
        """
        self._loop = asyncio.get_running_loop()
        try:
            # nats-py can retry a failed TLS handshake forever: bound the join.
            limit = JOIN_TIMEOUT_PER_SERVER * len(self.settings.servers)
            nc = await asyncio.wait_for(
                nats.connect(**connect_options(self.settings, self.self_id, self._on_reconnected)),
                limit,
            )
        except (NatsError, OSError, TimeoutError) as exc:
            servers = ", ".join(self.settings.servers)
            if isinstance(exc, TimeoutError) and not str(exc):
                exc = TimeoutError(f"no connection within {limit:g} s (TLS or network)")
            raise ConfigurationError(
                f"cannot join the cluster: no NATS server answered at {servers} "
                f"({type(exc).__name__}: {exc}); check FAME_CLUSTER_URL and the credentials"
            ) from None
        # Reconnect forever once joined; the first connection fails after a few rounds
        # (a wrong password or no server must stop the start-up, not hang it).
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        await nc.subscribe(self.subjects.inbox(self.self_id), cb=self._on_envelope)
        await nc.subscribe(self.subjects.view, cb=self._on_heartbeat)
        await nc.subscribe(self.subjects.snapshot(self.self_id), cb=self._on_snapshot_request)
        await nc.flush(timeout=5)
        self.router.cluster = self
        await self._heartbeat()
        log.info(
            "sentinel %s joined the cluster on %s (subjects %s.*)",
            self.self_id,
            self._server(),
            self.settings.prefix,
        )

    async def run(self) -> None:
        """Publish, beat and expire peers until :meth:`stop`."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._publisher())
            await self._beat()
            self._wake.set()  # let the publisher see the stop

    async def stop(self) -> None:
        """Say goodbye and leave: peers drop this sentinel's routes at once."""
        self._stopped.set()
        self._wake.set()
        nc, self._nc = self._nc, None
        self.router.cluster = None
        if nc is None:
            return
        try:
            if nc.is_connected:
                bye = wire.heartbeat(self.self_id, self.instance, -1, bye=True)
                await nc.publish(self.subjects.view, bye)
                await nc.flush(timeout=1)
        except (NatsError, OSError, TimeoutError) as exc:
            log.debug("goodbye not sent: %s", exc)
        try:
            await asyncio.wait_for(nc.close(), timeout=2)
        except (NatsError, OSError, TimeoutError) as exc:
            log.debug("NATS close: %s", exc)

    def health(self) -> dict[str, Any]:
        """Cluster membership for the health endpoint."""
        nc = self._nc
        now = self._now()
        return {
            "nats": "connected" if nc is not None and nc.is_connected else "disconnected",
            "server": self._server(),
            "peers": self.view.describe(now),
        }

    # -- the router's side (ClusterRoutes) -----------------------------------

    def reroute(
        self, envelope: dict[str, Any], decision: Decision, source: str | None
    ) -> Deliver | Remote | None:
        return routes.reroute(
            self_id=self.self_id,
            table=self.router.table,
            view=self.view,
            inflight=self.router.inflight,
            envelope=envelope,
            decision=decision,
            source=source,
        )

    def send(
        self,
        origin: Origin | None,
        envelope: dict[str, Any],
        remote: Remote,
        out: list[Action],
        now: float,
    ) -> None:
        router = self.router
        try:
            data = orjson.dumps(envelope)
        except orjson.JSONEncodeError as exc:
            if origin is not None:
                origin.warn("dropped envelope %r: %s", envelope.get("id"), exc)
            router.nack(
                envelope, "INVALID_ENVELOPE", f"envelope cannot be forwarded: {exc}", out, now
            )
            return
        size = len(data)
        if size > router.limits.max_envelope_bytes and origin is not None:
            router.too_large(origin, envelope, size, out, now)
            return
        source = None
        if origin is not None and not origin.node_id.startswith(PEER_PREFIX):
            source = origin.node_id
        request = is_request_rtype(envelope.get("rtype"))
        if self._queued_bytes + size > MAX_QUEUED_BYTES or self._nc is None:
            router.nack(
                envelope,
                "DESTINATION_BUSY",
                f"the cluster link to sentinel {remote.sentinel_id} is backed up; try again later",
                out,
                now,
            )
            return
        framed = wire.encode_hop(self.self_id, source, remote.node, data)
        keep = envelope if is_nackable(envelope) else None
        self._queue.append((self.subjects.inbox(remote.sentinel_id), framed, keep))
        self._queued_bytes += len(framed)
        if len(self._queue) == 1:
            self._wake.set()
        if request and source is not None:
            router.inflight.add(
                envelope, source=source, destination=PEER_PREFIX + remote.sentinel_id
            )

    # -- ingress -------------------------------------------------------------

    async def _on_envelope(self, msg: Msg) -> None:
        now = self._now()
        try:
            hop = wire.decode_hop(msg.data)
            envelope = parse_object(hop.envelope)
        except ProtocolError as exc:
            log.warning("dropped a cluster message: %s", exc)
            return
        if hop.sentinel == self.self_id:
            return
        frame = envelope["frame"]
        if frame["type"] not in ("Data", "DeliveryAck"):
            log.warning("dropped a %.40s frame from sentinel %s", frame["type"], hop.sentinel)
            return
        peer = PEER_PREFIX + hop.sentinel
        requester = f"{peer}/{hop.node}" if hop.node else peer
        request = is_request_rtype(envelope.get("rtype"))
        decision = self._decide(hop, envelope, frame, requester)
        origin = PeerOrigin(requester if request else peer)
        try:
            actions = self.router.forward(origin, envelope, len(hop.envelope), now, decision)
        except Exception:  # a bug, not bad input: keep reading the cluster
            log.exception("error while routing an envelope from sentinel %s", hop.sentinel)
            return
        if actions:
            pump.apply(actions, now)

    def _decide(
        self, hop: wire.Hop, envelope: dict[str, Any], frame: dict[str, Any], requester: str
    ) -> Decision:
        router = self.router
        table = router.table
        if frame["type"] == "DeliveryAck" and frame.get("code") == CANCELLED:
            went = router.inflight.destination_of(requester, frame.get("refId"))
            if went is None or went.startswith(PEER_PREFIX):
                return Drop("cancel notice for a request not delivered here")
            return Deliver(went)
        target = hop.target
        if target and table.has_node(target) and routes.serves(table, target, envelope):
            return Deliver(target)
        return route(table, envelope, sentinel_id=self.self_id, source=None)

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            sentinel, instance, version, bye = wire.read_heartbeat(msg.data)
        except ProtocolError as exc:
            log.warning("dropped a cluster heartbeat: %s", exc)
            return
        if sentinel == self.self_id:
            if instance != self.instance:
                log.error(
                    "another sentinel uses this sentinel's id %s in the cluster: "
                    "give each sentinel its own FAME_NODE_ID",
                    sentinel,
                )
            return
        now = self._now()
        if bye:
            if self.view.is_live(sentinel):
                self._drop_peer(sentinel, "it left the cluster", now)
            return
        known = self.view.is_live(sentinel)
        peer = self.view.heard(sentinel, instance, version, now)
        if not known:
            log.info("sentinel %s joined the cluster", sentinel)
        if peer is not None:
            peer.fetching = True
            task = asyncio.get_running_loop().create_task(self._fetch(sentinel, instance))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fetch(self, sentinel: str, instance: str) -> None:
        nc = self._nc
        try:
            if nc is None:
                return
            reply = await nc.request(
                self.subjects.snapshot(sentinel), b"", timeout=self.settings.peer_timeout
            )
            self.view.load(sentinel, instance, orjson.loads(reply.data), self._now())
        except (NatsError, TimeoutError, orjson.JSONDecodeError, ProtocolError) as exc:
            log.warning("could not read the routes of sentinel %s: %s", sentinel, exc)
        finally:
            peer = self.view.peers.get(sentinel)
            if peer is not None and peer.instance == instance:
                peer.fetching = False

    async def _on_snapshot_request(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(orjson.dumps(snapshot(self.router.table)))

    # -- heartbeats, expiry, publishing ---------------------------------------------

    async def _beat(self) -> None:
        interval = self.settings.heartbeat_interval
        announced = self.router.table.version
        last = self._now()
        next_beat = last + interval
        while not self._stopped.is_set():
            try:
                async with asyncio.timeout(CHANGE_POLL):
                    await self._stopped.wait()
            except TimeoutError:
                pass
            now = self._now()
            stalled = now - last > interval
            last = now
            version = self.router.table.version
            if version != announced or now >= next_beat:
                announced = version
                next_beat = now + interval
                await self._heartbeat()
            if stalled:
                # This loop was held up longer than a heartbeat interval: the peers'
                # heartbeats may be waiting unread, so judge their silence next time.
                continue
            for sentinel in self.view.expired(now):
                timeout = self.settings.peer_timeout
                self._drop_peer(sentinel, f"sentinel {sentinel} silent for {timeout:g} s", now)

    async def _heartbeat(self) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        beat = wire.heartbeat(self.self_id, self.instance, self.router.table.version)
        try:
            await nc.publish(self.subjects.view, beat)
        except (NatsError, OSError) as exc:
            log.debug("heartbeat not sent: %s", exc)

    def _drop_peer(self, sentinel: str, why: str, now: float) -> None:
        peer = self.view.forget(sentinel)
        actions = self._fail_peer(sentinel, why, now)
        addresses = peer.table.counts()["addresses"] if peer is not None else 0
        log.warning(
            "dropped sentinel %s from the cluster (%s): %d addresses gone, %d calls failed",
            sentinel,
            why,
            addresses,
            sum(1 for a in actions if type(a) is Send),
        )
        if actions:
            pump.apply(actions, now)

    def _fail_peer(self, sentinel: str, why: str, now: float) -> list[Action]:
        """NACK what the peer had not answered; forget what it sent."""
        router = self.router
        out: list[Action] = []
        peer = PEER_PREFIX + sentinel
        for entry in router.inflight.pop_destination(peer):
            router.nack_request(
                entry, CHILD_UNREACHABLE, f"Unroutable to {entry.to}: {why}", out, now
            )
        router.inflight.drop_source(peer)
        router.inflight.drop_sources(peer + "/")
        return out

    async def _publisher(self) -> None:
        queue = self._queue
        while not self._stopped.is_set():
            await self._wake.wait()
            self._wake.clear()
            nc = self._nc
            while queue and nc is not None:
                subject, data, envelope = queue.popleft()
                self._queued_bytes -= len(data)
                try:
                    await nc.publish(subject, data)
                except (NatsError, OSError) as exc:
                    self._undeliverable(envelope, subject, exc)

    def _undeliverable(self, envelope: dict[str, Any] | None, subject: str, exc: Exception) -> None:
        log.warning("could not publish to %s: %s", subject, exc or type(exc).__name__)
        if envelope is None:
            return
        now = self._now()
        out: list[Action] = []
        reason = f"Unroutable to {envelope.get('to')}: the cluster link is down"
        self.router.nack(envelope, CHILD_UNREACHABLE, reason, out, now)
        pump.apply(out, now)

    # -- helpers -------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _server(self) -> str | None:
        nc = self._nc
        url = nc.connected_url if nc is not None else None
        if url is None or url.hostname is None:
            return None
        return f"{url.hostname}:{url.port or 4222}"

    async def _on_reconnected(self) -> None:
        log.info("cluster: reconnected to NATS at %s", self._server())
        await self._heartbeat()
