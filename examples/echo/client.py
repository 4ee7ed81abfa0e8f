"""Calls the echo agent: ``python examples/echo/client.py``."""

import asyncio
import sys

from famefabric import Agent, FabricError, FameFabric

AGENT_ADDR = "echo@fame.fabric"


async def main() -> None:
    async with FameFabric.create():
        agent = Agent.remote_by_address(AGENT_ADDR)
        print(await agent.echo("Hello, fabric!"))
        print([n async for n in agent.count(5)])
        print(await agent.run_task({"greeting": "hi"}))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except FabricError as exc:
        sys.exit(f"echo client: {exc}\n(is the sentinel running? 'fame sentinel'; and the agent?)")
