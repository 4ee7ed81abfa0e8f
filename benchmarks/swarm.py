"""A sentinel with 1,000 attached nodes: attach time, sentinel RSS, echo latency.

Each repeat starts a fresh ``fame sentinel`` with the echo agent and client
(:mod:`benchmarks.echo`), measures the sentinel's RSS and the echo latency,
then attaches the nodes from a few worker processes at once
(:mod:`benchmarks.swarm_worker`), and measures again while they stay attached,
and the relay floor right after, so the two are compared in the same minute.
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks.common import ATTACH_PATH, PYTHON, Bench
from benchmarks.echo import fabric_echo, floor
from benchmarks.procs import Proc

HANDSHAKES_PER_WORKER = 50


async def run(bench: Bench) -> None:
    """Section 5b: attach ``swarm_nodes`` bare nodes and measure the sentinel."""
    cfg = bench.config
    results: dict[str, Any] = bench.results.setdefault(
        "swarm", {"nodes": cfg.swarm_nodes, "repeats": []}
    )
    per_worker = [
        cfg.swarm_nodes // cfg.swarm_procs + (1 if i < cfg.swarm_nodes % cfg.swarm_procs else 0)
        for i in range(cfg.swarm_procs)
    ]
    timeout = cfg.echo_duration * 4 + 60.0
    floor_procs: list[Proc] = []
    relay: Proc | None = None
    try:
        for rep in range(cfg.swarm_repeats):
            relay = await _repeat(bench, rep, per_worker, timeout, results, relay, floor_procs)
    finally:
        for proc in reversed(floor_procs):
            await bench.supervisor.stop(proc)


async def _repeat(
    bench: Bench,
    rep: int,
    per_worker: list[int],
    limit: float,
    results: dict[str, Any],
    relay: Proc | None,
    floor_procs: list[Proc],
) -> Proc:
    """One repeat on a fresh sentinel; the relay floor (started once) is measured alongside."""
    cfg = bench.config
    bench.say(
        f"swarm: repeat {rep + 1}/{cfg.swarm_repeats} ({cfg.swarm_nodes} nodes from {cfg.swarm_procs} processes)"
    )
    async with fabric_echo(bench) as fabric:
        if relay is None:
            relay = (await floor(bench, fabric.sizes, floor_procs))["ws_relay"]["client"]
        url = f"ws://127.0.0.1:{fabric.port}{ATTACH_PATH}"
        workers: list[Proc] = []
        try:
            for index, count in enumerate(per_worker):
                worker, _ = await bench.start_driver(
                    f"swarm-worker-{index}",
                    [
                        PYTHON,
                        "-m",
                        "benchmarks.swarm_worker",
                        "--url",
                        url,
                        "--nodes",
                        str(count),
                        "--prefix",
                        f"w{index}n",
                    ],
                )
                workers.append(worker)
            rss_before = fabric.sentinel.rss()
            latency_before = await fabric.client.request(
                "latency", limit, duration=cfg.echo_duration
            )
            attaches = await asyncio.gather(
                *(w.request("attach", 120.0, concurrency=HANDSHAKES_PER_WORKER) for w in workers)
            )
            await asyncio.sleep(0.5)  # let the sentinel settle (logs, buffers)
            rss_after = fabric.sentinel.rss()
            latency_after = await fabric.client.request(
                "latency", limit, duration=cfg.echo_duration
            )
            relay_latency = await relay.request("latency", limit, duration=cfg.echo_duration)
            throughput_after = await fabric.client.request(
                "throughput", limit, inflight=64, duration=cfg.echo_duration
            )
            alive = 0
            for worker in workers:
                alive += (await worker.request("status", 10.0))["alive"]
            rss_end = fabric.sentinel.rss()
        finally:
            for worker in workers:
                await bench.supervisor.stop(worker)
    attached = sum(a["attached"] for a in attaches)
    results["repeats"].append(
        {
            "attached": attached,
            "alive_after": alive,
            "attach_secs": max(a["last_end"] for a in attaches)
            - min(a["first_start"] for a in attaches),
            "attach_latency_p50_ms": sorted(a["attach"].get("p50_ms", 0.0) for a in attaches)[
                len(attaches) // 2
            ],
            "attach_latency_max_ms": max(a["attach"].get("max_ms", 0.0) for a in attaches),
            "errors": sum(a.get("errors", 0) for a in attaches),
            "first_error": next((a["first_error"] for a in attaches if "first_error" in a), None),
            "sentinel_rss_before_bytes": rss_before,
            "sentinel_rss_after_bytes": rss_after,
            "sentinel_rss_end_bytes": rss_end,
            "echo_before": latency_before,
            "echo_after": latency_after,
            "relay_floor": relay_latency,
            "echo_throughput64_after": throughput_after,
            "workers": attaches,
        }
    )
    if attached < cfg.swarm_nodes:
        bench.note(f"swarm repeat {rep + 1}: only {attached} of {cfg.swarm_nodes} nodes attached")
    return relay
