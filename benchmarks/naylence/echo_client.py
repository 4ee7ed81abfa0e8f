"""A benchmark driver making echo calls with the Naylence reference proxy.

Run under the interop venv with ``PYTHONPATH=<repo>``; reads
``FAME_DIRECT_ADMISSION_URL``. Answers the ``latency`` and ``throughput``
commands of :mod:`benchmarks.driver`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from naylence.agent import Agent, configs
from naylence.fame.core import FameFabric

from benchmarks import driver


@asynccontextmanager
async def setup(
    address: str, text: str
) -> AsyncIterator[tuple[dict[str, driver.Handler], dict[str, Any]]]:
    """Attach a reference node and build the echo call."""
    async with FameFabric.create(root_config=configs.NODE_CONFIG) as fabric:
        proxy = Agent.remote_by_address(address, fabric=fabric)

        async def call() -> object:
            return await proxy.echo(text)

        if await call() != text:
            raise RuntimeError("the reference echo agent answered something else")
        yield driver.echo_handlers(call), {"address": address}


def main() -> int:
    """Serve driver commands."""
    parser = argparse.ArgumentParser()
    parser.add_argument("address", nargs="?", default="echo@fame.fabric")
    parser.add_argument("--text", default="Hello, fabric!")
    args = parser.parse_args()
    return asyncio.run(driver.serve(lambda: setup(args.address, args.text)))


if __name__ == "__main__":
    sys.exit(main())
