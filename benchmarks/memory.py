"""Agent memory with many stored conversations, in the in-memory and the SQLite store.

Each repeat is its own process (:mod:`benchmarks.memory_agent`); the repeats
of one store run side by side, since each measures only its own RSS.
In-memory conversations are filled turn by turn through the agent; SQLite
ones in bulk through the store, then read back through the agent (see
:mod:`benchmarks.memory_agent` for why).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import PYTHON, Bench
from benchmarks.procs import ProcessFailed


async def _one(bench: Bench, name: str, argv: list[str], limit: float) -> dict[str, Any]:
    proc = await bench.supervisor.spawn(name, argv, one_shot=True)
    try:
        return await proc.wait_result(limit)
    finally:
        await bench.supervisor.stop(proc)


async def run(bench: Bench) -> None:
    """Section 5a: RSS growth of an agent holding N conversations of 20 messages."""
    cfg = bench.config
    results: dict[str, Any] = bench.results.setdefault("memory", {})
    base = [
        PYTHON,
        "-m",
        "benchmarks.memory_agent",
        "--conversations",
        str(cfg.memory_conversations),
        "--turns",
        str(cfg.memory_messages // 2),
        "--chars",
        str(cfg.memory_chars),
    ]
    with tempfile.TemporaryDirectory(prefix="fame-bench-mem-") as tmp:
        for store in ("memory", "sqlite"):
            bench.say(
                f"memory: {cfg.repeats} agents with {cfg.memory_conversations:,} conversations, {store} store"
            )
            jobs = []
            for rep in range(cfg.repeats):
                if store == "memory":
                    argv = [*base, "--store", "memory://", "--fill", "turns"]
                else:
                    argv = [
                        *base,
                        "--store",
                        f"sqlite:///{Path(tmp) / f'rep{rep}' / 'conversations.db'}",
                        "--fill",
                        "bulk",
                    ]
                jobs.append(
                    _one(
                        bench,
                        f"memory-{store}-{rep}",
                        argv,
                        limit=max(30.0, bench.remaining - 30),
                    )
                )
            outcomes = await asyncio.gather(*jobs, return_exceptions=True)
            runs = [o for o in outcomes if isinstance(o, dict)]
            for failure in (o for o in outcomes if isinstance(o, BaseException)):
                message = (
                    str(failure).splitlines()[0]
                    if isinstance(failure, ProcessFailed)
                    else repr(failure)
                )
                bench.note(f"memory {store}: a run failed: {message}")
            results[store] = runs
