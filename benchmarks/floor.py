"""The floor: plain ``websockets`` echo, directly and through a 2-hop relay.

Three roles, one per process, so the floor runs in the same process layout as
the fabric (client → sentinel → agent and back):

* ``server``: answers each binary message with ``reply-size`` bytes that start
  with the request's 8-byte id (like an agent answering an echo call);
* ``relay``: for each client connection opens one upstream connection to the
  server and copies messages both ways, unparsed (like a sentinel that does no
  protocol work);
* ``client``: a driver (:mod:`benchmarks.driver`) making echo calls of
  ``request-size`` bytes, correlated by id, any number in flight.

The sizes are those of a real famefabric echo call, measured at run time.
The relay uses uvloop when asked (as ``fame sentinel`` does); the server and
the client run on the default asyncio loop, like the echo agent and client.

Usage: ``python -m benchmarks.floor server|relay|client ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from benchmarks import driver

ID_BYTES = 8


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def run_server(port: int, reply_size: int) -> None:
    """Serve echo replies of ``reply_size`` bytes on 127.0.0.1:``port`` until a signal."""
    padding = b"r" * max(0, reply_size - ID_BYTES)

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                head = (
                    message[:ID_BYTES]
                    if isinstance(message, bytes)
                    else message.encode()[:ID_BYTES]
                )
                await ws.send(head + padding)

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=64):
        print("READY {}", flush=True)
        await _until_signal()


async def run_relay(port: int, upstream: str) -> None:
    """Relay every connection on 127.0.0.1:``port`` to ``upstream``, both ways."""

    async def handler(ws: ServerConnection) -> None:
        async with connect(upstream, compression=None, max_queue=256) as up:

            async def downstream() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for message in up:
                        await ws.send(message)

            task = asyncio.create_task(downstream())
            try:
                with contextlib.suppress(ConnectionClosed):
                    async for message in ws:
                        await up.send(message)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=64):
        print("READY {}", flush=True)
        await _until_signal()


class FloorClient:
    """Echo calls over one WebSocket, correlated by an 8-byte id."""

    def __init__(self, ws: ClientConnection, request_size: int) -> None:
        self._ws = ws
        self._padding = b"q" * max(0, request_size - ID_BYTES)
        self._ids = itertools.count()
        self._pending: dict[bytes, asyncio.Future[bytes]] = {}

    async def read(self) -> None:
        """Resolve pending calls as their replies arrive (runs as a task)."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self._ws:
                data = message if isinstance(message, bytes) else message.encode()
                future = self._pending.pop(data[:ID_BYTES], None)
                if future is not None and not future.done():
                    future.set_result(data)

    async def call(self) -> bytes:
        """Send one request and wait for its reply."""
        key = next(self._ids).to_bytes(ID_BYTES, "big")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        await self._ws.send(key + self._padding)
        return await future


@contextlib.asynccontextmanager
async def _client_setup(
    url: str, request_size: int
) -> AsyncIterator[tuple[dict[str, driver.Handler], dict[str, Any]]]:
    async with connect(url, compression=None, max_queue=256) as ws:
        client = FloorClient(ws, request_size)
        reader = asyncio.create_task(client.read())
        try:
            yield driver.echo_handlers(client.call), {"url": url, "request_size": request_size}
        finally:
            reader.cancel()


def main(argv: list[str] | None = None) -> int:
    """Run one role."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor")
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--reply-size", type=int, required=True)
    relay = roles.add_parser("relay")
    relay.add_argument("--port", type=int, required=True)
    relay.add_argument("--upstream", required=True)
    relay.add_argument("--uvloop", action="store_true")
    client = roles.add_parser("client")
    client.add_argument("--url", required=True)
    client.add_argument("--request-size", type=int, required=True)
    args = parser.parse_args(argv)
    if args.role == "server":
        asyncio.run(run_server(args.port, args.reply_size))
        return 0
    if args.role == "relay":
        factory = None
        if args.uvloop:
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(run_relay(args.port, args.upstream))
        return 0
    return asyncio.run(driver.serve(lambda: _client_setup(args.url, args.request_size)))


if __name__ == "__main__":
    sys.exit(main())
