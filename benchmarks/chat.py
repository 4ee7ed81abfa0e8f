"""Chat turns against the stub LLM server: through the fabric, and direct.

Processes: the OpenAI stub server (answers at once), ``fame sentinel``,
``fame agent chat`` (in-memory store; in a full run also a second agent on a
SQLite store, for an informational row) and the chat driver
(:mod:`benchmarks.chat_client`), which makes both the fabric turns and the
direct ``AsyncOpenAI`` requests, alternating per repeat.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import FAME, PYTHON, Bench, admission_env
from benchmarks.procs import Proc, ProcessFailed, free_port, wait_port

CHAT_ADDRESS = "chat@fame.fabric"
SQLITE_ADDRESS = "chatsql@fame.fabric"
MODEL = "stub-model"


async def start_stub(bench: Bench) -> tuple[Proc, str]:
    """Start the OpenAI-compatible stub server; return it and its base URL."""
    port = free_port()
    stub = await bench.supervisor.spawn(
        "openai-stub",
        [PYTHON, "-m", "famefabric.testing.openai_server", "--port", str(port)],
        pipe_stdout=False,
    )
    await wait_port(port, 20.0, stub)
    return stub, f"http://127.0.0.1:{port}/v1"


def chat_agent_argv(address: str, store: str) -> list[str]:
    """The command line of a chat agent."""
    return [
        FAME,
        "agent",
        "chat",
        "--address",
        address,
        "--store",
        store,
        "--model",
        MODEL,
        "--log-level",
        "warning",
    ]


def chat_agent_env(sentinel_port: int, stub_url: str) -> dict[str, str]:
    """The environment of a chat agent talking to the stub server."""
    return admission_env(
        sentinel_port,
        OPENAI_BASE_URL=stub_url,
        OPENAI_API_KEY="bench",
        OPENAI_MAX_RETRIES="2",
        MODEL_NAME=MODEL,
        FAME_SESSION_MAX_INITIAL_ATTEMPTS="1",
    )


async def start_client(
    bench: Bench, name: str, address: str, sentinel_port: int, stub_url: str
) -> Proc:
    """Start the chat driver for ``address``; it is ready once the agent answers."""
    client, _ = await bench.start_driver(
        name,
        [
            PYTHON,
            "-m",
            "benchmarks.chat_client",
            "--address",
            address,
            "--stub-url",
            stub_url,
            "--model",
            MODEL,
        ],
        admission_env(sentinel_port),
        limit=90.0,
    )
    return client


async def run(bench: Bench) -> None:
    """Section 4: turn latency, throughput with 16 conversations, time to first token."""
    cfg = bench.config
    results: dict[str, Any] = bench.results.setdefault("chat", {})
    sup = bench.supervisor
    _, stub_url = await start_stub(bench)
    _, port = await bench.start_sentinel()
    await sup.spawn(
        "chat-agent",
        chat_agent_argv(CHAT_ADDRESS, "memory://"),
        env=chat_agent_env(port, stub_url),
        pipe_stdout=False,
    )
    client = await start_client(bench, "chat-client", CHAT_ADDRESS, port, stub_url)
    sql_client: Proc | None = None
    with tempfile.TemporaryDirectory(prefix="fame-bench-") as tmp:
        if not cfg.quick:
            store = f"sqlite:///{Path(tmp) / 'conversations.db'}"
            await sup.spawn(
                "chat-agent-sqlite",
                chat_agent_argv(SQLITE_ADDRESS, store),
                env=chat_agent_env(port, stub_url),
                pipe_stdout=False,
            )
            try:
                sql_client = await start_client(
                    bench, "chat-client-sqlite", SQLITE_ADDRESS, port, stub_url
                )
            except ProcessFailed as exc:
                bench.note(f"chat on SQLite skipped: {str(exc).splitlines()[0]}")
        timeout = cfg.chat_duration * 4 + 60.0
        for rep in range(cfg.latency_repeats):
            bench.say(f"chat: repeat {rep + 1}/{cfg.latency_repeats}")
            results.setdefault("turn_latency", []).append(
                await client.request("turn_latency", timeout, duration=cfg.chat_duration)
            )
            results.setdefault("turn_throughput", []).append(
                await client.request(
                    "turn_throughput",
                    timeout,
                    concurrency=cfg.chat_concurrency,
                    duration=cfg.chat_duration * 2,
                )
            )
            results.setdefault("ttft", []).append(
                await client.request("ttft", timeout, duration=cfg.chat_duration)
            )
            if sql_client is not None:
                results.setdefault("fabric_sqlite_turn_latency", []).append(
                    await sql_client.request("turn_latency", timeout, duration=cfg.chat_duration)
                )
        await sup.stop_all()
