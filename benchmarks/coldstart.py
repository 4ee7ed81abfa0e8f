"""Cold start: from starting the sentinel and chat agent processes to the first answered turn.

The LLM (stub) server and the client are already running, as they would be;
the clock starts when the orchestrator spawns ``fame sentinel``. The chat agent
is spawned as soon as the sentinel listens (as ``make start`` does, and since
a node's first attach fails at once when no sentinel is there), with the
default kind of store: SQLite, in a fresh directory. The client polls the
port, attaches, starts conversations until the agent answers, and sends one
turn.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.chat import CHAT_ADDRESS, chat_agent_argv, chat_agent_env, start_stub
from benchmarks.common import FAME, PYTHON, Bench
from benchmarks.procs import ROOT, free_port, wait_port

IMPORTS = {
    "fame sentinel": ("famefabric.cli", "famefabric.sentinel.runner"),
    "fame agent chat": ("famefabric.cli", "famefabric.chat.service"),
}


def parse_importtime(text: str) -> tuple[float, list[dict[str, Any]]]:
    """Return the total import time (ms) and the packages that take most of it.

    A package's cost is the sum of its modules' *self* times, so nothing is
    counted twice; famefabric is split by subpackage.
    """
    total = 0.0
    by_package: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if (
            not line.startswith("import time:")
            or len(fields) != 3
            or not fields[0].strip().isdigit()
        ):
            continue
        self_us, cumulative_us, name = int(fields[0]), int(fields[1]), fields[2]
        module = name.strip()
        if len(name) - len(name.lstrip()) <= 1:
            total += cumulative_us / 1000
        parts = module.split(".")
        package = ".".join(parts[:2]) if parts[0] == "famefabric" else parts[0]
        by_package[package] = by_package.get(package, 0.0) + self_us / 1000
    top = sorted(by_package.items(), key=lambda item: -item[1])[:8]
    return total, [{"module": module, "cumulative_ms": ms} for module, ms in top]


async def import_times(runs: int = 3) -> dict[str, Any]:
    """Measure, with ``python -X importtime``, what each entry point imports."""
    out: dict[str, Any] = {}
    for name, modules in IMPORTS.items():
        totals: list[float] = []
        top: list[dict[str, Any]] = []
        for _ in range(runs):
            process = await asyncio.create_subprocess_exec(
                PYTHON,
                "-X",
                "importtime",
                "-c",
                "; ".join(f"import {m}" for m in modules),
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(process.communicate(), 60.0)
            total, top = parse_importtime(err.decode(errors="replace"))
            totals.append(total)
        out[name] = {
            "what": ", ".join(modules),
            "total_ms": statistics.median(totals),
            "runs_ms": totals,
            "top": top,
        }
    return out


async def run(bench: Bench) -> None:
    """Section 6: time to the first answered turn, repeated."""
    results: dict[str, Any] = bench.results.setdefault("coldstart", {"repeats": []})
    sup = bench.supervisor
    _, stub_url = await start_stub(bench)
    client, _ = await bench.start_driver(
        "coldstart-client", [PYTHON, "-m", "benchmarks.coldstart_client"]
    )
    for rep in range(bench.config.coldstart_repeats):
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="fame-bench-cold-") as tmp:
            store = f"sqlite:///{Path(tmp) / 'conversations.db'}"
            pending = asyncio.ensure_future(
                client.request("go", 60.0, port=port, address=CHAT_ADDRESS)
            )
            await asyncio.sleep(0.05)  # the client is polling the port now
            started = time.monotonic()
            sentinel = await sup.spawn(
                "cold-sentinel",
                [
                    FAME,
                    "sentinel",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--node-id",
                    "benchCold",
                    "--log-level",
                    "warning",
                ],
                pipe_stdout=False,
            )
            listening = await wait_port(port, 30.0, sentinel, poll=0.002)
            agent = await sup.spawn(
                "cold-agent",
                chat_agent_argv(CHAT_ADDRESS, store),
                env=chat_agent_env(port, stub_url),
                pipe_stdout=False,
            )
            try:
                times = await pending
            finally:
                await sup.stop(agent)
                await sup.stop(sentinel)
        entry = {
            "total_secs": times["turn_answered"] - started,
            "sentinel_listening_secs": listening - started,
            "agent_answered_secs": times["agent_answered"] - started,
            "first_turn_secs": times["turn_answered"] - times["agent_answered"],
        }
        results["repeats"].append(entry)
        bench.say(
            f"cold start {rep + 1}: {entry['total_secs']:.2f} s (sentinel listening after {entry['sentinel_listening_secs']:.2f} s)"
        )
    await sup.stop_all()
    results["imports"] = await import_times(bench.config.import_runs)
