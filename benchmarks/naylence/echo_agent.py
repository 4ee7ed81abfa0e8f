"""A Naylence reference echo agent for the benchmarks (interop venv only).

``echo(text) -> text`` at ADDRESS (default ``echo@fame.fabric``); reads
``FAME_DIRECT_ADMISSION_URL`` and ``FAME_NODE_ID``; prints ``READY {...}``
once the address is bound, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from naylence.agent import BaseAgent, configs
from naylence.fame.core import FameFabric
from naylence.fame.service import operation


class EchoAgent(BaseAgent):
    """Answers ``echo`` with its argument."""

    @operation
    async def echo(self, text: str) -> str:
        """Return ``text``."""
        return text


async def main() -> int:
    """Attach, bind, announce, serve until a stop signal."""
    address = sys.argv[1] if len(sys.argv) > 1 else "echo@fame.fabric"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with FameFabric.create(root_config=configs.NODE_CONFIG) as fabric:
        bound = await fabric.serve(EchoAgent(), address)
        print("READY " + json.dumps({"address": str(bound)}), flush=True)
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
