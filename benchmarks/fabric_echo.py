"""famefabric echo: the agent process and the client driver.

``python -m benchmarks.fabric_echo agent --address echo@fame.fabric`` serves
an ``echo(text) -> text`` operation and prints ``READY`` once bound.
``python -m benchmarks.fabric_echo client --address ... --text ...`` is a
driver (:mod:`benchmarks.driver`) calling it through the public SDK
(``FameFabric.create()``, ``Agent.remote_by_address``); its ``sizes`` op
reports the bytes of one real echo request and reply as they cross the
client's WebSocket. Both read ``FAME_DIRECT_ADMISSION_URL``; ``--uvloop``
runs either on uvloop instead of asyncio's default loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from benchmarks import driver
from famefabric import Agent, BaseAgent, FameFabric, operation
from famefabric.node import Node
from famefabric.node.connector import websocket_connector
from famefabric.protocol import jsonrpc
from famefabric.security import token_provider_from_env
from famefabric.security.tls import client_context_from_env
from famefabric.settings import FabricSettings
from famefabric.transport import Transport

DEFAULT_TEXT = "Hello, fabric!"


class EchoAgent(BaseAgent):
    """The echo agent of examples/echo, reduced to its unary operation."""

    @operation
    async def echo(self, text: str) -> str:
        """Return ``text``."""
        return text


async def run_agent(address: str) -> None:
    """Attach, serve ``address``, print ``READY`` and serve until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with FameFabric.create() as fabric:
        await fabric.serve(EchoAgent(), address)
        print(
            "READY " + json.dumps({"address": address, "path": fabric.node.assigned_path}),
            flush=True,
        )
        await stop.wait()


class RecordingTransport:
    """A transport that remembers the last messages sent and received."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    @property
    def description(self) -> str:
        """The wrapped transport's description."""
        return self._inner.description

    async def send(self, message: bytes) -> None:
        """Send and record."""
        self.sent.append(message)
        await self._inner.send(message)

    async def receive(self) -> bytes | str:
        """Receive and record."""
        message = await self._inner.receive()
        self.received.append(message if isinstance(message, bytes) else message.encode())
        return message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the wrapped transport."""
        await self._inner.close(code, reason)


def _data_envelopes(messages: list[bytes]) -> list[bytes]:
    return [m for m in messages if b'"type":"Data"' in m.replace(b" ", b"")]


async def measure_sizes(admission_url: str, address: str, text: str) -> dict[str, Any]:
    """Make one echo call on a recording connection; return the envelopes' sizes."""
    recorders: list[RecordingTransport] = []
    # The node's own connector: it presents FAME_TOKEN* and trusts FAME_TLS_CA.
    base = websocket_connector(token_provider_from_env(), client_context_from_env())

    async def connect(url: str) -> Transport:
        transport = RecordingTransport(await base(url))
        recorders.append(transport)
        return transport

    async with Node(admission_url=admission_url, connect=connect) as node:
        result = await node.call(address, "echo", jsonrpc.operation_params((text,), {}), timeout=10)
        if result != text:
            raise RuntimeError(f"echo answered {result!r}, expected {text!r}")
    recorder = recorders[-1]
    request = _data_envelopes(recorder.sent)[-1]
    reply = _data_envelopes(recorder.received)[-1]
    return {
        "text": text,
        "request_bytes": len(request),
        "reply_bytes": len(reply),
        "request_envelope": request.decode(),
        "reply_envelope": reply.decode(),
    }


@asynccontextmanager
async def _client_setup(
    address: str, text: str
) -> AsyncIterator[tuple[dict[str, driver.Handler], dict[str, Any]]]:
    settings = FabricSettings.from_env()
    sizes = await measure_sizes(settings.admission_url, address, text)
    async with FameFabric.create(settings=settings):
        proxy = Agent.remote_by_address(address)

        async def call() -> object:
            return await proxy.echo(text)

        if await call() != text:
            raise RuntimeError("the echo agent answered something else")
        handlers = driver.echo_handlers(call)

        async def report_sizes(command: dict[str, Any]) -> dict[str, Any]:
            return sizes

        handlers["sizes"] = report_sizes
        yield handlers, {"address": address, "request_bytes": sizes["request_bytes"]}


def main(argv: list[str] | None = None) -> int:
    """Run the agent or the client."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fabric_echo")
    parser.add_argument("role", choices=["agent", "client"])
    parser.add_argument("--address", default="echo@fame.fabric")
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument(
        "--uvloop", action="store_true", help="run on uvloop instead of asyncio's loop"
    )
    args = parser.parse_args(argv)
    factory = None
    if args.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        if args.role == "agent":
            runner.run(run_agent(args.address))
            return 0
        return runner.run(driver.serve(lambda: _client_setup(args.address, args.text)))


if __name__ == "__main__":
    sys.exit(main())
