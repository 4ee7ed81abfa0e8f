"""Authorization over real WebSockets: identities handed to ``Sentinel.handle_transport``.

Admission (tokens) is not tested here: a small ``websockets`` server looks the
connecting node's identity up in a dict by system id and passes it to the
sentinel, as an admission layer would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from test_server import WAIT, RawNode
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from famefabric.protocol.frames import AddressBind
from famefabric.routing.permissions import Identity, Permissions
from famefabric.sentinel import Sentinel
from famefabric.transport.websocket import WebSocketTransport

S = "authSentinel1"
AGENT = Identity("agent-svc", serve=Permissions(("echo@fame.fabric",)))
ALICE = Identity("alice", call=Permissions(("echo@fame.fabric",)))
MALLORY = Identity("mallory", serve=Permissions(("mine@fame.fabric",)))


class Fabric:
    """A sentinel behind a stand-in admission server; identities by system id."""

    def __init__(self, sentinel: Sentinel, port: int, identities: dict[str, Identity]) -> None:
        self.sentinel = sentinel
        self.port = port
        self.identities = identities

    async def node(
        self, system_id: str, identity: Identity | None, *, attach: bool = True
    ) -> RawNode:
        if identity is not None:
            self.identities[system_id] = identity
        url = f"ws://127.0.0.1:{self.port}/fame/v1/attach/ws/downstream/{system_id}"
        node = RawNode(await connect(url, compression=None), system_id, S)
        if attach:
            ack = await node.attach()
            assert ack["frame"]["ok"] is True, ack
        return node


@asynccontextmanager
async def fabric(**options: Any) -> AsyncIterator[Fabric]:
    identities: dict[str, Identity] = {}
    async with Sentinel(system_id=S, listen=False, **options) as sentinel:

        async def handler(connection: ServerConnection) -> None:
            assert connection.request is not None
            system_id = connection.request.path.rsplit("/", 1)[-1]
            transport = WebSocketTransport(connection, description=system_id)
            await sentinel.handle_transport(
                transport, system_id, identity=identities.get(system_id)
            )

        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield Fabric(sentinel, port, identities)


async def test_a_rogue_cannot_bind_the_agents_address_and_the_agent_is_untouched() -> None:
    async with fabric() as f:
        agent = await f.node("agent", AGENT)
        await agent.bind("echo@fame.fabric")
        rogue = await f.node("rogue", MALLORY)
        _, ack = await rogue.control(AddressBind(address="echo@fame.fabric"))
        assert ack["frame"]["ok"] is False
        assert "'mallory' lacks permission to serve 'echo@fame.fabric'" in ack["frame"]["reason"]
        client = await f.node("client", ALICE)
        for n in range(5):
            sent = await client.request("echo@fame.fabric", params={"n": n})
            delivered = await agent.receive()
            assert delivered["meta"] == {"subject": "alice"}
            await agent.reply(delivered, n)
            reply = await client.receive()
            assert reply["corrId"] == sent.corr_id and reply["frame"]["payload"]["result"] == n
        for node in (agent, rogue, client):
            await node.close()


async def test_a_request_outside_fame_call_is_nacked_forbidden() -> None:
    async with fabric() as f:
        agent = await f.node("agent", AGENT)
        await agent.bind("echo@fame.fabric")
        stranger = await f.node("stranger", Identity("stranger"))
        sent = await stranger.request("echo@fame.fabric")
        nack = await stranger.receive()
        assert (nack["frame"]["code"], nack["frame"]["refId"]) == ("FORBIDDEN", sent.id)
        assert "'stranger'" in nack["frame"]["reason"]
        assert "'echo@fame.fabric'" in nack["frame"]["reason"]
        await agent.close()
        await stranger.close()


async def test_an_impostor_with_another_subject_cannot_take_over_a_system_id() -> None:
    async with fabric() as f:
        victim = await f.node("shared", ALICE)
        f.identities["shared"] = MALLORY
        impostor = await f.node("shared", None, attach=False)
        ack = await impostor.attach()
        assert ack["frame"]["ok"] is False and "another identity" in ack["frame"]["reason"]
        assert await impostor.closed() == (1008, "system id in use by another identity")
        await victim.heartbeat()  # the victim's connection is untouched
        await victim.close()


async def test_a_connection_is_closed_when_its_token_expires() -> None:
    async with fabric() as f:
        expiring = Identity("short", expires_at=time.time() + 0.3)
        node = await f.node("brief", expiring)
        started = time.monotonic()
        assert await node.closed() == (1008, "token expired")
        assert time.monotonic() - started < WAIT


@pytest.mark.parametrize("identity", [None, ALICE])
async def test_sender_provided_subject_and_admin_never_reach_the_agent(
    identity: Identity | None,
) -> None:
    async with fabric() as f:
        agent = await f.node("agent", AGENT if identity else None)
        await agent.bind("echo@fame.fabric")
        client = await f.node("client", identity)
        await client.request("echo@fame.fabric", meta={"subject": "root", "admin": True})
        async with asyncio.timeout(WAIT):
            delivered = await agent.receive()
        assert delivered["meta"] == ({"subject": "alice"} if identity else {})
        await agent.close()
        await client.close()
