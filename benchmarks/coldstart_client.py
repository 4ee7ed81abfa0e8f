"""The cold-start client: a warm process that waits for a fresh fabric to answer.

``python -m benchmarks.coldstart_client`` is a driver (:mod:`benchmarks.driver`)
with one op, ``go`` (``port``, ``address``): it polls until the sentinel on
``port`` accepts connections, attaches, starts conversations until the chat
agent answers, then sends one turn. It returns when each of these happened
(``time.monotonic``, comparable with the orchestrator's clock on Linux).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from benchmarks import driver
from benchmarks.chat_client import QUESTION, wait_for_agent
from benchmarks.common import ATTACH_PATH
from benchmarks.procs import wait_port
from famefabric import FameFabric
from famefabric.agent.a2a import make_task_params
from famefabric.agent.proxy import RemoteAgent
from famefabric.chat.client import RemoteChatSession
from famefabric.protocol.ids import new_id


async def go(command: dict[str, Any]) -> dict[str, Any]:
    """Wait for the sentinel and the agent, then time one turn."""
    port = int(command["port"])
    listening = await wait_port(port, float(command.get("timeout", 30.0)), poll=0.002)
    async with FameFabric.create(admission_url=f"ws://127.0.0.1:{port}{ATTACH_PATH}") as fabric:
        attached = time.monotonic()
        agent = RemoteAgent(str(command["address"]), fabric=fabric)
        agent_ready = await wait_for_agent(
            agent, limit=float(command.get("timeout", 30.0)), poll=0.002
        )
        conversation_id = new_id()
        await agent.start_task(
            params=make_task_params(id=conversation_id, payload={}), timeout=10.0
        )
        reply = await RemoteChatSession(agent, conversation_id, timeout=30.0).ask(QUESTION)
        answered = time.monotonic()
        await agent.end_conversation(conversation_id, _timeout=5.0)
    return {
        "sentinel_listening": listening,
        "client_attached": attached,
        "agent_answered": agent_ready,
        "turn_answered": answered,
        "reply": reply,
    }


@asynccontextmanager
async def _setup() -> AsyncIterator[tuple[dict[str, driver.Handler], dict[str, Any]]]:
    yield {"go": go}, {}


def main() -> int:
    """Serve driver commands."""
    return asyncio.run(driver.serve(_setup))


if __name__ == "__main__":
    sys.exit(main())
