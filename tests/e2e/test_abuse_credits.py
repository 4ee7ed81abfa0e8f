"""A credit violator against a real sentinel process, over real WebSockets (PROTOCOL.md §9).

The sentinel runs with ``FAME_SENTINEL_MAX_INFLIGHT_PER_NODE=4``. A sink node
binds an address, reads everything and never answers, so the violator's
requests stay in flight and its credit grants are held back. The violator
sends without ever waiting for credits: it is NACKed ``TOO_MANY_REQUESTS``
beyond 4 in flight, then ``CREDITS_EXCEEDED``, and disconnected with 1008 and a
reason that names the credit window. A victim on the same sentinel keeps
calling the echo agent the whole time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from support.agents import our_echo_agent, start_agents
from support.pool import ProcessPool
from support.procs import wait_for
from support.sentinels import OurSentinel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from famefabric import FameFabric
from famefabric.agent import RemoteAgent
from famefabric.protocol.ids import new_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ECHO = "echo@fame.fabric"
SINK = "sink@fame.fabric"
LIMIT = 4
WAIT = 20.0


class LimitedSentinel(OurSentinel):
    """Our sentinel with a small in-flight limit per node."""

    def _env(self) -> dict[str, str]:
        return {"FAME_SENTINEL_MAX_INFLIGHT_PER_NODE": str(LIMIT)}


async def raw_node(sentinel: OurSentinel, system_id: str) -> tuple[ClientConnection, str]:
    """Open a WebSocket, attach; return it and the node's assigned path."""
    ws = await connect(f"{sentinel.admission_url}/{system_id}", compression=None)
    await ws.send(
        orjson.dumps(
            {
                "id": new_id(),
                "corrId": new_id(),
                "frame": {"type": "NodeAttach", "systemId": system_id, "instanceId": new_id()},
            }
        )
    )
    async with asyncio.timeout(WAIT):
        while True:
            ack = orjson.loads(await ws.recv())
            if ack["frame"]["type"] == "NodeAttachAck":
                assert ack["frame"]["ok"] is True, ack
                return ws, ack["frame"]["assignedPath"]


async def drain(ws: ClientConnection, seen: list[dict[str, Any]]) -> None:
    """Read everything until the connection closes."""
    try:
        async for message in ws:
            seen.append(orjson.loads(message))
    except ConnectionClosed:
        return


async def test_a_node_sending_past_its_credit_window_is_told_and_disconnected(
    processes: ProcessPool,
) -> None:
    sentinel = LimitedSentinel(
        node_id="creditSentinel01", name="limited-sentinel", log_dir=processes.log_dir
    )
    processes.processes.append(sentinel.process)
    await sentinel.start()
    await start_agents(processes, sentinel, [our_echo_agent(ECHO)])

    sink, sink_path = await raw_node(sentinel, "sink01")
    await sink.send(
        orjson.dumps(
            {
                "id": new_id(),
                "corrId": new_id(),
                "replyTo": f"__sys__@{sink_path}",
                "rtype": 1,
                "frame": {"type": "AddressBind", "address": SINK},
            }
        )
    )
    sink_seen: list[dict[str, Any]] = []
    sink_reader = asyncio.create_task(drain(sink, sink_seen))
    await sentinel.wait_bound(SINK, count=1, after=sentinel.process)

    violator, path = await raw_node(sentinel, "violator01")
    told: list[dict[str, Any]] = []
    reader = asyncio.create_task(drain(violator, told))
    flow = new_id()
    # It reads what it is told but never waits for credits: the sentinel cuts it off.
    with pytest.raises(ConnectionClosed):
        for _ in range(1000):
            rpc_id = new_id()
            await violator.send(
                orjson.dumps(
                    {
                        "id": new_id(),
                        "to": SINK,
                        "replyTo": f"__rpc__v@{path}",
                        "corrId": rpc_id,
                        "rtype": 2,
                        "flowId": flow,
                        "frame": {
                            "type": "Data",
                            "payload": {"jsonrpc": "2.0", "id": rpc_id, "method": "echo"},
                        },
                    }
                )
            )
            await asyncio.sleep(0)  # let the reader keep up
    async with asyncio.timeout(WAIT):
        await reader
    assert violator.close_code == 1008
    assert violator.close_reason == "sent past its credit window of 32 on a flow"
    codes = [e["frame"].get("code") for e in told if e["frame"]["type"] == "DeliveryAck"]
    assert codes.count("CREDITS_EXCEEDED") == 1 and codes[-1] == "CREDITS_EXCEEDED"
    assert set(codes[:-1]) == {"TOO_MANY_REQUESTS"}
    # Its grants were held back from the moment it reached the limit.
    assert [e for e in told if e["frame"]["type"] == "CreditUpdate"] == []

    async with FameFabric.create(admission_url=sentinel.admission_url, call_timeout=10) as fabric:
        echo = RemoteAgent(ECHO, fabric=fabric)
        started = time.monotonic()
        assert await echo.echo("still served") == "still served"
        assert time.monotonic() - started < 2.0

    stderr = sentinel.process.stderr()
    assert "node violator01: closing the connection" in stderr
    assert "since its last CreditUpdate; a sender must wait for credits" in stderr

    # Only LIMIT requests reached the sink; the rest were refused at the sentinel.
    def requests_at_sink() -> int:
        return len([e for e in sink_seen if e["frame"]["type"] == "Data"])

    assert await wait_for(lambda: requests_at_sink() >= LIMIT, within=WAIT)
    assert requests_at_sink() == LIMIT
    sink_reader.cancel()
    await sink.close()
