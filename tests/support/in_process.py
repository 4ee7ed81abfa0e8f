"""An agent served on an in-process sentinel, for tests that call it through a fabric."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from support.sentinels import admission_url

from famefabric.agent import BaseAgent
from famefabric.fabric import FameFabric
from famefabric.settings import FabricSettings


def fabric_settings(port: int, *, call_timeout: float = 10.0) -> FabricSettings:
    """Settings of a node attaching to the sentinel on ``port`` of 127.0.0.1."""
    return replace(FabricSettings(), admission_url=admission_url(port), call_timeout=call_timeout)


@asynccontextmanager
async def serving(agent: BaseAgent, address: str, settings: FabricSettings) -> AsyncIterator[None]:
    """Serve ``agent`` at ``address``; inside, a second fabric is current for callers."""
    async with FameFabric.create(settings=settings) as fabric:
        await fabric.serve(agent, address)
        async with FameFabric.create(settings=settings):
            yield
