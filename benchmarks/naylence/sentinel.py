"""A Naylence reference sentinel for the benchmarks (interop venv only).

Listens on ``$FAME_LISTENER_PORT`` with the SDK's sentinel configuration and
runs until SIGINT/SIGTERM; the orchestrator polls its health endpoint.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from naylence.agent import configs
from naylence.fame.core import FameFabric


async def main() -> int:
    """Run the sentinel until a stop signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with FameFabric.create(root_config=configs.SENTINEL_CONFIG):
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
