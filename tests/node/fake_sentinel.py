"""A scripted fake sentinel for node tests, over in-memory transports.

:class:`FakeSentinel` is the node's ``connect``: each call opens a memory
pair and serves the sentinel end in a task that the fixture awaits at teardown. It
answers what a sentinel must (attach, heartbeats, bind/advertise acks) as
configured, and records every other envelope the node sends so that a test
can look at it and answer it by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson

from famefabric.clock import timestamp
from famefabric.errors import ConnectionClosed
from famefabric.protocol.ids import new_id
from famefabric.transport.memory import MemoryTransport, memory_pair

Wire = dict[str, Any]
WAIT = 2.0

CONTROL_ACKS = {
    "AddressBind": "AddressBindAck",
    "AddressUnbind": "AddressUnbindAck",
    "CapabilityAdvertise": "CapabilityAdvertiseAck",
    "CapabilityWithdraw": "CapabilityWithdrawAck",
}


class FakeConnection:
    """The sentinel's end of one node connection."""

    def __init__(self, sentinel: FakeSentinel, transport: MemoryTransport, url: str) -> None:
        self.sentinel = sentinel
        self.transport = transport
        self.url = url
        self.system_id = url.rsplit("/", 1)[-1]
        self.path = f"/{sentinel.sentinel_id}/{self.system_id}"
        self.attach: Wire | None = None
        self.all: list[Wire] = []
        self.inbox: asyncio.Queue[Wire] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._seq = 0

    async def send(self, wire: Wire) -> None:
        """Send a wire object to the node (filling the routine fields)."""
        wire.setdefault("version", "1.0")
        wire.setdefault("id", new_id())
        wire.setdefault("flowId", "sentinelflow0000")
        wire.setdefault("seqId", self._seq)
        wire.setdefault("ts", timestamp())
        self._seq += 1
        await self.transport.send(orjson.dumps(wire))

    async def send_raw(self, data: bytes | str) -> None:
        """Send a message exactly as given."""
        # A text message on purpose, when ``data`` is a str: the memory pair carries it.
        await self.transport.send(cast(bytes, data))

    async def next(self, frame_type: str | None = None, *, within: float = WAIT) -> Wire:
        """Wait for the next recorded envelope (of ``frame_type``, skipping others)."""
        async with asyncio.timeout(within):
            while True:
                wire = await self.inbox.get()
                if frame_type is None or wire["frame"]["type"] == frame_type:
                    return wire

    async def request(self, within: float = WAIT) -> Wire:
        """Wait for the next Data envelope."""
        return await self.next("Data", within=within)

    async def answer(self, request: Wire, payload: Any, **fields: Any) -> None:
        """Reply to a request the way an agent does (corrId = JSON-RPC id)."""
        await self.send(
            {
                "traceId": request.get("traceId"),
                "to": request["replyTo"],
                "corrId": request["frame"]["payload"]["id"],
                "frame": {"type": "Data", "payload": payload},
                **fields,
            }
        )

    async def result(self, request: Wire, value: Any) -> None:
        """Reply with a JSON-RPC result."""
        rpc_id = request["frame"]["payload"]["id"]
        payload = {"jsonrpc": "2.0", "id": rpc_id}
        if value is not None:
            payload["result"] = value
        await self.answer(request, payload)

    async def nack(self, request: Wire, code: str = "NO_ROUTE") -> None:
        """NACK a request as a sentinel does when it cannot route it (§7.6)."""
        await self.send(
            {
                "traceId": request.get("traceId"),
                "to": request["replyTo"],
                "corrId": request["corrId"],
                "flowFlags": 4,
                "frame": {
                    "type": "DeliveryAck",
                    "ok": False,
                    "code": code,
                    "reason": f"Unroutable to {request['to']}",
                    "refId": request["id"],
                },
            }
        )

    async def close(self, code: int = 1000, reason: str = "normal closure") -> None:
        """Close the connection from the sentinel's side."""
        await self.transport.close(code, reason)

    async def serve(self) -> None:
        try:
            while True:
                raw = await self.transport.receive()
                wire = orjson.loads(raw)
                if self.sentinel.record:
                    self.all.append(wire)
                await self._on(wire)
        except ConnectionClosed as exc:
            self.close_code = exc.code
        finally:
            self.closed.set()

    async def _on(self, wire: Wire) -> None:
        kind = wire["frame"]["type"]
        sentinel = self.sentinel
        if kind == "NodeAttach":
            self.attach = wire
            frame: Wire = {
                "type": "NodeAttachAck",
                "ok": sentinel.attach_ok,
                "refId": wire["id"],
            }
            if sentinel.attach_ok:
                frame.update(
                    targetSystemId=sentinel.sentinel_id,
                    targetPhysicalPath=f"/{sentinel.sentinel_id}",
                    assignedPath=self.path,
                    routingEpoch=sentinel.epoch,
                )
            else:
                frame["reason"] = "not welcome here"
            await self.send(
                {"traceId": wire.get("traceId"), "corrId": wire["corrId"], "frame": frame}
            )
            sentinel.attached.append(self)
            sentinel._attach_seen.set()
            return
        if kind == "NodeHeartbeat" and sentinel.ack_heartbeats:
            await self.send(
                {
                    "corrId": wire["corrId"],
                    "frame": {
                        "type": "NodeHeartbeatAck",
                        "ok": True,
                        "refId": wire["id"],
                        "routingEpoch": sentinel.epoch,
                    },
                }
            )
        elif kind in CONTROL_ACKS and sentinel.ack_control:
            frame = {"type": CONTROL_ACKS[kind], "ok": sentinel.control_ok, "refId": wire["id"]}
            for key in ("address", "capabilities"):
                if key in wire["frame"]:
                    frame[key] = wire["frame"][key]
            if not sentinel.control_ok:
                frame.update(code="DENIED", reason="bindings are closed")
            await self.send({"corrId": wire["corrId"], "frame": frame})
        if sentinel.on_envelope is not None and kind == "Data":
            await sentinel.on_envelope(self, wire)
            return
        if sentinel.record:
            self.inbox.put_nowait(wire)


class FakeSentinel:
    """Connector and scripted sentinel for :class:`famefabric.node.Node` tests."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self.sentinel_id = "S0"
        self.epoch = "epoch1"
        self.attach_ok = True
        self.ack_heartbeats = True
        self.ack_control = True
        self.control_ok = True
        self.record = True
        self.refuse: Exception | None = None
        self.on_envelope: Callable[[FakeConnection, Wire], Awaitable[None]] | None = None
        self.connections: list[FakeConnection] = []
        self.attached: list[FakeConnection] = []
        self._attach_seen = asyncio.Event()
        self.urls: list[str] = []

    async def connect(self, url: str) -> MemoryTransport:
        """The node's connector."""
        self.urls.append(url)
        if self.refuse is not None:
            raise self.refuse
        node_end, sentinel_end = memory_pair()
        connection = FakeConnection(self, sentinel_end, url)
        self.connections.append(connection)
        self._tasks.append(asyncio.create_task(connection.serve()))
        return node_end

    async def nth_attach(self, number: int, within: float = WAIT) -> FakeConnection:
        """Wait until ``number`` connections have attached; return the last of them."""
        async with asyncio.timeout(within):
            while len(self.attached) < number:
                self._attach_seen.clear()
                await self._attach_seen.wait()
        return self.attached[number - 1]

    @property
    def current(self) -> FakeConnection:
        """The most recent connection."""
        return self.connections[-1]

    async def echo(self, connection: FakeConnection, wire: Wire) -> None:
        """An ``on_envelope`` hook answering every request with its params."""
        if "replyTo" in wire and isinstance(wire["frame"]["payload"], dict):
            await connection.result(wire, wire["frame"]["payload"].get("params"))

    async def aclose(self) -> None:
        """Close every connection and wait for its serving task."""
        for connection in self.connections:
            await connection.transport.close()
        if self._tasks:
            async with asyncio.timeout(WAIT):
                await asyncio.gather(*self._tasks)
