"""Run a Naylence reference sentinel as an interop test peer.

Usage::

    FAME_LISTENER_PORT=8123 FAME_NODE_ID=refSentinel01 \\
        .venv-interop/bin/python tests/interop/peers/naylence_sentinel.py

The sentinel listens on ``0.0.0.0:$FAME_LISTENER_PORT`` (default 8000). Its
system id is ``$FAME_NODE_ID`` when set, otherwise the reference fingerprint
(stable per host and script path). Once ``GET /fame/v1/attach/health``
answers 200 it prints::

    READY sentinel id=<systemId> port=<port> path=/<systemId>

and serves until SIGINT/SIGTERM. It exits 1 if the port never becomes
healthy within ``FAME_PEER_STARTUP_TIMEOUT`` seconds (default 20).
"""

from __future__ import annotations

import asyncio
import os
import sys

import _peer
from naylence.agent import configs
from naylence.fame.core import FameFabric

HEALTH_PATH = "/fame/v1/attach/health"


async def is_healthy(port: int) -> bool:
    """Return True when the health endpoint on 127.0.0.1:port answers 200."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout=1.0
        )
    except (OSError, TimeoutError):
        return False
    try:
        request = f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=1.0)
        return b" 200 " in status_line
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def wait_healthy(port: int) -> None:
    """Poll the health endpoint until it answers 200 (bound it with ``asyncio.timeout``)."""
    while True:
        if await is_healthy(port):
            return
        await asyncio.sleep(0.05)


async def main() -> int:
    """Start the sentinel, announce readiness and serve until a stop signal."""
    port = int(os.environ.get("FAME_LISTENER_PORT", str(configs.SENTINEL_PORT)))
    startup_timeout = float(os.environ.get("FAME_PEER_STARTUP_TIMEOUT", "20"))
    stop = _peer.stop_event()
    async with FameFabric.create(root_config=configs.SENTINEL_CONFIG) as fabric:
        node = fabric.node  # type: ignore[attr-defined]
        try:
            async with asyncio.timeout(startup_timeout):
                await wait_healthy(port)
        except TimeoutError:
            print(
                f"sentinel: {HEALTH_PATH} on port {port} not healthy after {startup_timeout} s",
                file=sys.stderr,
            )
            return 1
        _peer.announce("sentinel", id=node.id, port=port, path=node.physical_path)
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
