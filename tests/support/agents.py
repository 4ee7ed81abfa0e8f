"""Agent processes: ours and the Naylence reference's, and starting them together.

An :class:`AgentSpec` says how to start one agent and how to know it
serves; :func:`start_agents` starts several at once against a sentinel and
waits until each is ready.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from support.pool import ProcessPool
from support.procs import (
    FAME,
    INTEROP_PYTHON,
    OUR_AGENTS_DIR,
    OUR_PYTHON,
    PEERS_DIR,
    READY_TIMEOUT,
    ManagedProcess,
    ProcessFailure,
)
from support.sentinels import Sentinel


@dataclass(frozen=True)
class AgentSpec:
    """How to start one agent process and know it is ready.

    Attributes:
        name: label for logs.
        argv: the command.
        env: extra environment (the sentinel's admission URL is added).
        ready: a regular expression its output matches once it serves.
        stream: where ``ready`` is looked for: ``stdout``, ``stderr`` or ``any``.
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ready: str = r"^READY "
    stream: str = "stdout"


def naylence_echo_agent(address: str, *, tasks_address: str | None = None) -> AgentSpec:
    """The Naylence echo agent at ``address`` (and a tasks agent at ``tasks_address``)."""
    argv = [os.fspath(INTEROP_PYTHON), os.fspath(PEERS_DIR / "naylence_echo_agent.py"), address]
    argv += ["--tasks-address", tasks_address] if tasks_address else ["--no-tasks"]
    return AgentSpec(name=f"naylence-{address.split('@')[0]}", argv=tuple(argv))


def our_echo_agent(address: str, *, tasks_address: str | None = None) -> AgentSpec:
    """Our echo agent at ``address`` (and our tasks agent at ``tasks_address``)."""
    argv = [os.fspath(OUR_PYTHON), os.fspath(OUR_AGENTS_DIR / "our_echo_agent.py"), address]
    argv += ["--tasks-address", tasks_address] if tasks_address else ["--no-tasks"]
    return AgentSpec(name=f"our-{address.split('@')[0]}", argv=tuple(argv))


def naylence_chat_agent(address: str, llm_url: str) -> AgentSpec:
    """The Naylence chat agent at ``address``, using the stub LLM at ``llm_url``."""
    return AgentSpec(
        name=f"naylence-{address.split('@')[0]}",
        argv=(os.fspath(INTEROP_PYTHON), os.fspath(PEERS_DIR / "naylence_chat_agent.py"), address),
        env={"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "test", "MODEL_NAME": "test"},
    )


def our_chat_agent(address: str, llm_url: str) -> AgentSpec:
    """Our ``fame agent chat`` at ``address`` with an in-memory store and the stub LLM.

    Ready when it logs that it serves the address (after the bind is acknowledged).
    """
    return AgentSpec(
        name=f"our-{address.split('@')[0]}",
        argv=(os.fspath(FAME), "agent", "chat", "--address", address),
        env={
            "OPENAI_BASE_URL": llm_url,
            "OPENAI_API_KEY": "test",
            "MODEL_NAME": "test",
            "CHAT_STORE": "memory://",
            "FAME_LOG_LEVEL": "info",
        },
        ready=rf"serving {re.escape(address)}\s*$",
        stream="stderr",
    )


async def wait_agent_ready(
    process: ManagedProcess, spec: AgentSpec, *, within: float = READY_TIMEOUT
) -> None:
    """Wait until a (re)started agent prints its ready line."""
    await process.wait_for_line(spec.ready, stream=spec.stream, within=within, what="ready")


async def start_agents(
    pool: ProcessPool,
    sentinel: Sentinel,
    specs: Iterable[AgentSpec],
    *,
    within: float = READY_TIMEOUT,
) -> list[ManagedProcess]:
    """Start agents attached to ``sentinel`` all at once, then wait until each is ready.

    Raises:
        ProcessFailure: an agent did not become ready (its logs and the
            sentinel's are in the message).
    """
    started = [
        (spec, pool.spawn(spec.name, spec.argv, env=sentinel.node_env(dict(spec.env))))
        for spec in specs
    ]
    try:
        await asyncio.gather(
            *(wait_agent_ready(process, spec, within=within) for spec, process in started)
        )
    except ProcessFailure as exc:
        raise ProcessFailure(f"{exc}\n{sentinel.process.describe()}") from None
    return [process for _, process in started]
