"""An echo agent at echo@fame.fabric: a unary operation, a stream, and an A2A task.

Run a sentinel first (``fame sentinel``), then ``python examples/echo/agent.py``.
"""

import logging
from collections.abc import AsyncIterator

from famefabric import BaseAgent, operation, serve

AGENT_ADDR = "echo@fame.fabric"


class EchoAgent(BaseAgent):
    @operation
    async def echo(self, text: str) -> str:
        return text

    @operation
    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def run_task(self, payload: object, id: str | None) -> object:
        return {"echoed": payload}


if __name__ == "__main__":
    # INFO shows the line that says the agent is serving ("EchoAgent serving echo@fame.fabric").
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(EchoAgent(), AGENT_ADDR)
