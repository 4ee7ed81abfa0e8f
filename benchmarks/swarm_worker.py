"""Many bare nodes attached to a sentinel, from one process (raw websockets).

``python -m benchmarks.swarm_worker --url ws://HOST:PORT/fame/v1/attach/ws/downstream --nodes N``

A driver (:mod:`benchmarks.driver`). Its ``attach`` op opens ``nodes``
WebSockets (at most ``concurrency`` handshakes at a time), sends each a
``NodeAttach`` (PROTOCOL.md §4.1) and waits for the matching
``NodeAttachAck``; it reports when the first attach began and the last one
ended (``time.monotonic``, comparable across processes on Linux) and each
attach's latency. The nodes then stay attached, drain what the sentinel
sends and send a ``NodeHeartbeat`` every 15 s, until ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import string
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks import driver

HEARTBEAT_EVERY = 15.0
ATTACH_TIMEOUT = 30.0
_ALPHABET = string.ascii_letters + string.digits


def new_id() -> str:
    """A 16-character id as the wire spells them (§3.2)."""
    return "".join(random.choices(_ALPHABET, k=16))


def now_ts() -> str:
    """An RFC 3339 UTC timestamp with milliseconds."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def envelope(frame: dict[str, Any], **fields: Any) -> bytes:
    """Serialize an envelope around ``frame``."""
    body = {
        "version": "1.0",
        "id": new_id(),
        "traceId": new_id(),
        **fields,
        "frame": frame,
        "ts": now_ts(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


class BareNode:
    """One attached connection that does nothing but stay alive."""

    def __init__(self, base_url: str, system_id: str) -> None:
        self.url = f"{base_url.rstrip('/')}/{system_id}"
        self.system_id = system_id
        self.ws: ClientConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.flow_id = new_id()
        self.seq = 0

    async def attach(self) -> None:
        """Connect, send ``NodeAttach``, wait for the ``NodeAttachAck``.

        Raises:
            RuntimeError: the sentinel refused or answered something else.
        """
        self.ws = await connect(
            self.url, compression=None, max_queue=16, open_timeout=ATTACH_TIMEOUT
        )
        corr_id = new_id()
        frame = {
            "type": "NodeAttach",
            "originType": "downstream",
            "systemId": self.system_id,
            "instanceId": new_id(),
            "acceptedLogicals": ["fame.fabric"],
            "callbackGrants": [],
        }
        await self.ws.send(
            envelope(frame, corrId=corr_id, flowId=self.flow_id, seqId=0, flowFlags=1)
        )
        while True:
            raw = await self.ws.recv()
            reply = json.loads(raw)
            kind = reply.get("frame", {}).get("type")
            if kind == "NodeAttachAck" and reply.get("corrId") == corr_id:
                if not reply["frame"].get("ok", True):
                    raise RuntimeError(f"attach refused: {reply['frame'].get('reason')}")
                return
            if kind not in ("CreditUpdate",):
                raise RuntimeError(f"expected NodeAttachAck, got {kind}")

    async def live(self) -> None:
        """Drain incoming messages and heartbeat, until the connection closes."""
        assert self.ws is not None
        ws = self.ws

        async def drain() -> None:
            async for _ in ws:
                pass

        reader = asyncio.create_task(drain())
        try:
            with contextlib.suppress(ConnectionClosed):
                while not reader.done():
                    await asyncio.sleep(HEARTBEAT_EVERY * (0.5 + random.random()))
                    self.seq += 1
                    await ws.send(
                        envelope(
                            {"type": "NodeHeartbeat"},
                            corrId=new_id(),
                            flowId=self.flow_id,
                            seqId=self.seq,
                            flowFlags=0,
                        )
                    )
        finally:
            reader.cancel()


@asynccontextmanager
async def _setup(
    url: str, nodes: int, prefix: str
) -> AsyncIterator[tuple[dict[str, driver.Handler], dict[str, Any]]]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    swarm = [BareNode(url, f"{prefix}{i:05d}{new_id()[:6]}") for i in range(nodes)]

    async def attach(command: dict[str, Any]) -> dict[str, Any]:
        semaphore = asyncio.Semaphore(int(command.get("concurrency", 50)))
        latencies: list[float] = []
        errors: list[str] = []
        first_start = time.monotonic()

        async def one(node: BareNode) -> None:
            async with semaphore:
                started = time.monotonic()
                try:
                    await asyncio.wait_for(node.attach(), ATTACH_TIMEOUT)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
                latencies.append(time.monotonic() - started)
                node.task = asyncio.create_task(node.live())

        await asyncio.gather(*(one(node) for node in swarm))
        last_end = time.monotonic()
        result: dict[str, Any] = {
            "nodes": nodes,
            "attached": len(latencies),
            "first_start": first_start,
            "last_end": last_end,
            "secs": last_end - first_start,
            "attach": driver.summarize(latencies),
        }
        if errors:
            result["errors"] = len(errors)
            result["first_error"] = errors[0]
        return result

    async def status(command: dict[str, Any]) -> dict[str, Any]:
        alive = sum(1 for node in swarm if node.task is not None and not node.task.done())
        return {"alive": alive, "nodes": nodes}

    try:
        yield {"attach": attach, "status": status}, {"nodes": nodes, "fd_limit": hard}
    finally:
        for node in swarm:
            if node.task is not None:
                node.task.cancel()
        await asyncio.gather(
            *(n.ws.close() for n in swarm if n.ws is not None), return_exceptions=True
        )


def main(argv: list[str] | None = None) -> int:
    """Serve driver commands."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.swarm_worker")
    parser.add_argument("--url", required=True, help="the admission URL, without the system id")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--prefix", default="swarm")
    args = parser.parse_args(argv)
    return asyncio.run(driver.serve(lambda: _setup(args.url, args.nodes, args.prefix)))


if __name__ == "__main__":
    sys.exit(main())
