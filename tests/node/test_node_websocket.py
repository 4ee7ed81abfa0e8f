"""Nodes and a sentinel over real WebSockets on 127.0.0.1: calls, streams, restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from famefabric.errors import AttachRefused, ConnectionClosed, NoRoute, RemoteError
from famefabric.node import Node, NodeEvent
from famefabric.protocol.frames import Data, Envelope
from famefabric.sentinel import Sentinel

SENTINEL_ID = "testsentinel"
WAIT = 5.0


def admission_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/fame/v1/attach/ws/downstream"


def fast_backoff() -> Any:
    return iter([0.05] * 400)


class EchoAgent:
    """Serves ``echo`` (returns params), ``count`` (a stream of n items), ``fail``, ``sleep``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.started = asyncio.Event()

    async def __call__(self, envelope: Envelope) -> None:
        frame = envelope.frame
        if not isinstance(frame, Data) or not isinstance(frame.payload, dict):
            return
        payload: dict[str, Any] = frame.payload
        rpc_id, method, params = payload.get("id"), payload.get("method"), payload["params"]
        reply = self.node.reply
        if method == "echo":
            await reply(envelope, {"jsonrpc": "2.0", "id": rpc_id, "result": params})
        elif method == "count":
            for i in range(params):
                await reply(envelope, {"jsonrpc": "2.0", "id": rpc_id, "result": i})
            await reply(envelope, {"jsonrpc": "2.0", "id": rpc_id})
        elif method == "count_then_fail":
            for i in range(params):
                await reply(envelope, {"jsonrpc": "2.0", "id": rpc_id, "result": i})
            error = {"code": -32603, "message": f"failed after {params}"}
            await reply(envelope, {"jsonrpc": "2.0", "id": rpc_id, "error": error})
        elif method == "sleep":
            self.started.set()
            await asyncio.sleep(params)
            await reply(envelope, {"jsonrpc": "2.0", "id": rpc_id, "result": "slept"})
        else:
            error = {"code": -32601, "message": "Method not found"}
            await reply(envelope, {"jsonrpc": "2.0", "id": rpc_id, "error": error})


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    async with Sentinel(system_id=SENTINEL_ID, host="127.0.0.1", port=0) as running:
        yield running


async def test_two_nodes_call_and_stream_through_the_sentinel(sentinel: Sentinel) -> None:
    url = admission_url(sentinel.port)
    async with Node(admission_url=url) as agent, Node(admission_url=url) as client:
        await agent.bind("echo@fame.fabric", EchoAgent(agent))
        assert agent.assigned_path == f"/{SENTINEL_ID}/{agent.system_id}"
        assert await client.call("echo@fame.fabric", "echo", {"text": "hello"}) == {"text": "hello"}
        assert await client.call("echo@fame.fabric", "echo", None) is None
        assert [i async for i in client.stream("echo@fame.fabric", "count", 3)] == [0, 1, 2]
        assert [i async for i in client.stream("echo@fame.fabric", "count", 0)] == []
        received: list[int] = []
        with pytest.raises(RemoteError, match="failed after 2"):
            async for item in client.stream("echo@fame.fabric", "count_then_fail", 2):
                received.append(item)
        assert received == [0, 1]
        with pytest.raises(RemoteError, match="Method not found"):
            await client.call("echo@fame.fabric", "nope", {})
        assert client.pending_calls == 0


async def test_unknown_address_fails_at_once_with_no_route(sentinel: Sentinel) -> None:
    async with Node(admission_url=admission_url(sentinel.port)) as client:
        started = time.monotonic()
        with pytest.raises(NoRoute) as caught:
            await client.call("nobody@fame.fabric", "echo", {}, timeout=20)
        assert time.monotonic() - started < 2
        assert caught.value.address == "nobody@fame.fabric"
        with pytest.raises(NoRoute):
            async for _ in client.stream("nobody@fame.fabric", "count", 1):
                pass


async def test_two_hundred_concurrent_calls_on_one_connection(sentinel: Sentinel) -> None:
    url = admission_url(sentinel.port)
    async with Node(admission_url=url) as agent, Node(admission_url=url) as client:
        await agent.bind("echo@fame.fabric", EchoAgent(agent))
        async with asyncio.timeout(WAIT):
            results = await asyncio.gather(
                *(client.call("echo@fame.fabric", "echo", i) for i in range(200))
            )
        assert results == list(range(200))
        assert client.pending_calls == 0


async def test_unbound_name_at_the_agent_path_does_not_deafen_it(sentinel: Sentinel) -> None:
    url = admission_url(sentinel.port)
    async with Node(admission_url=url) as agent, Node(admission_url=url) as client:
        await agent.bind("echo@fame.fabric", EchoAgent(agent))
        with pytest.raises(RemoteError, match="no handler for ghost@"):
            await client.call(f"ghost@{agent.assigned_path}", "echo", 1, timeout=WAIT)
        assert await client.call("echo@fame.fabric", "echo", 2, timeout=WAIT) == 2
        assert await client.call(f"echo@{agent.assigned_path}", "echo", 3, timeout=WAIT) == 3


async def test_sentinel_restart_on_the_same_port_reconnects_and_rebinds() -> None:
    first = Sentinel(system_id=SENTINEL_ID, host="127.0.0.1", port=0)
    await first.__aenter__()
    port = first.port
    url = admission_url(port)
    agent = Node(admission_url=url, backoff=fast_backoff)
    client = Node(admission_url=url, backoff=fast_backoff)
    attached: dict[Node, asyncio.Queue[NodeEvent]] = {
        agent: asyncio.Queue(),
        client: asyncio.Queue(),
    }
    for node, queue in attached.items():
        node.add_listener(
            lambda event, q=queue: q.put_nowait(event) if event.kind == "attached" else None
        )
    second: Sentinel | None = None
    try:
        async with agent, client:
            await agent.bind("echo@fame.fabric", EchoAgent(agent))
            assert await client.call("echo@fame.fabric", "echo", "before") == "before"
            old_epoch = agent.routing_epoch
            for queue in attached.values():
                await queue.get()
            await first.__aexit__(None, None, None)
            second = Sentinel(system_id=SENTINEL_ID, host="127.0.0.1", port=port)
            await second.__aenter__()
            async with asyncio.timeout(WAIT):
                for queue in attached.values():
                    await queue.get()
                assert await call_once_routable(client) == "after"
            assert agent.routing_epoch != old_epoch
            assert client.reply_address is not None
    finally:
        await first.__aexit__(None, None, None)
        if second is not None:
            await second.__aexit__(None, None, None)


async def call_once_routable(client: Node) -> Any:
    # Both nodes are attached again, but the agent's re-bind may still be on
    # its way: until it lands, the sentinel NACKs at once (no timed wait here).
    while True:
        try:
            return await client.call("echo@fame.fabric", "echo", "after", timeout=WAIT)
        except NoRoute:
            continue


async def test_call_in_flight_fails_promptly_when_the_sentinel_dies() -> None:
    sentinel = Sentinel(system_id=SENTINEL_ID, host="127.0.0.1", port=0)
    await sentinel.__aenter__()
    url = admission_url(sentinel.port)
    try:
        async with (
            Node(admission_url=url, backoff=fast_backoff) as agent,
            Node(admission_url=url, backoff=fast_backoff) as client,
        ):
            echo = EchoAgent(agent)
            await agent.bind("echo@fame.fabric", echo)
            call = asyncio.create_task(client.call("echo@fame.fabric", "sleep", 30, timeout=60))
            async with asyncio.timeout(WAIT):
                await echo.started.wait()
            started = time.monotonic()
            await sentinel.__aexit__(None, None, None)
            with pytest.raises(
                ConnectionClosed, match=r"lost while calling sleep on echo@fame\.fabric"
            ):
                async with asyncio.timeout(WAIT):
                    await call
            assert time.monotonic() - started < 3
    finally:
        await sentinel.__aexit__(None, None, None)


async def test_node_over_an_in_process_sentinel(sentinel: Sentinel) -> None:
    from famefabric.transport.memory import memory_pair

    serving: list[asyncio.Task[None]] = []

    async def connect(url: str) -> Any:
        node_end, sentinel_end = memory_pair()
        serving.append(
            asyncio.create_task(sentinel.handle_transport(sentinel_end, url.rsplit("/", 1)[-1]))
        )
        return node_end

    async with (
        Node(admission_url="memory://fabric", connect=connect) as agent,
        Node(admission_url="memory://fabric", connect=connect) as client,
    ):
        await agent.bind("echo@fame.fabric", EchoAgent(agent))
        assert await client.call("echo@fame.fabric", "echo", [1, 2]) == [1, 2]
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*serving)


async def test_a_refused_handshake_raises_attach_refused_with_status_and_body_line() -> None:
    requests: list[str] = []

    def refuse(connection: ServerConnection, request: Request) -> Response:
        requests.append(request.path)
        body = b"token expired: ask for a new one\x07\nsecond line is not shown\n"
        return Response(401, HTTPStatus(401).phrase, Headers(), body)

    async with serve(lambda _: asyncio.sleep(0), "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        node = Node(
            admission_url=admission_url(port),
            max_initial_attempts=0,  # retry forever, unless the refusal is final
            backoff=fast_backoff,
        )
        with pytest.raises(AttachRefused) as caught:
            await asyncio.wait_for(node.__aenter__(), WAIT)
    refused = caught.value
    assert (refused.status, refused.reason) == (401, "token expired: ask for a new one")
    assert str(refused).endswith("with HTTP 401: token expired: ask for a new one")
    assert len(requests) == 1  # final: not retried
