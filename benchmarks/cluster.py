"""A call across two sentinels of a cluster, against the same call within one sentinel.

Real processes on loopback: one ``nats-server``, sentinels A and B joined to
it, our echo agent on A, and two client drivers: one on A (the call stays on
one sentinel) and one on B (the call crosses NATS: B -> A -> agent -> A -> B).
Both clients run in the same repeats, interleaved, so the ratio is taken in
one run on one machine. CPU per call is recorded for every process,
including nats-server.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import urllib.request
from typing import Any

from benchmarks.common import FAME, PYTHON, Bench, admission_env
from benchmarks.echo import ECHO_ADDRESS, Roles, measure
from benchmarks.procs import ROOT, Proc, free_port, wait_port
from benchmarks.report import Figure, _series, _table, spread

SYSTEMS = ("cluster_local", "cluster_cross")


def nats_binary() -> str | None:
    """nats-server, installed by ``scripts/ensure-nats.sh`` when possible."""
    found = shutil.which("nats-server")
    if found:
        return found
    result = subprocess.run(
        [str(ROOT / "scripts" / "ensure-nats.sh")], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


async def _sentinel(bench: Bench, node_id: str, nats_url: str) -> tuple[Proc, int]:
    port = free_port()
    argv = [FAME, "sentinel", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--node-id", node_id, "--log-level", "warning"]
    proc = await bench.supervisor.spawn(
        f"sentinel-{node_id}", argv, env={"FAME_CLUSTER_URL": nats_url}, pipe_stdout=False
    )
    await wait_port(port, 20.0, proc)
    return proc, port


async def wait_view(port: int, peer: str, limit: float = 20.0) -> None:
    """Wait until the sentinel on ``port`` sees ``peer`` holding at least one address."""

    def holds() -> bool:
        url = f"http://127.0.0.1:{port}/fame/v1/attach/health"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                body = json.loads(response.read())
        except (OSError, ValueError):
            return False
        peers = body.get("cluster", {}).get("peers", [])
        return any(p["systemId"] == peer and p["addresses"] >= 1 for p in peers)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await asyncio.to_thread(holds):
        if loop.time() >= deadline:
            raise TimeoutError(f"sentinel on port {port} never saw {peer}'s echo agent")
        await asyncio.sleep(0.05)


async def _client(bench: Bench, name: str, port: int) -> Proc:
    argv = [PYTHON, "-m", "benchmarks.fabric_echo", "client", "--address", ECHO_ADDRESS]
    argv += ["--text", bench.config.echo_text]
    client, _ = await bench.start_driver(name, argv, admission_env(port))
    return client


async def run(bench: Bench) -> None:
    """Start the cluster, wait until B routes to A's agent, and measure both paths."""
    results: dict[str, Any] = bench.results.setdefault("cluster", {})
    binary = nats_binary()
    if binary is None:
        bench.note("cluster section skipped: nats-server unavailable (scripts/ensure-nats.sh)")
        return
    procs: list[Proc] = []
    try:
        nats_port = free_port()
        nats = await bench.supervisor.spawn(
            "nats-server", [binary, "-a", "127.0.0.1", "-p", str(nats_port)], pipe_stdout=False
        )
        procs.append(nats)
        await wait_port(nats_port, 20.0, nats)
        url = f"nats://127.0.0.1:{nats_port}"
        a, a_port = await _sentinel(bench, "benchClusterA", url)
        b, b_port = await _sentinel(bench, "benchClusterB", url)
        procs += [a, b]
        agent, _ = await bench.start_ready(
            "cluster-echo-agent",
            [PYTHON, "-m", "benchmarks.fabric_echo", "agent", "--address", ECHO_ADDRESS],
            admission_env(a_port),
        )
        procs.append(agent)
        local = await _client(bench, "cluster-client-local", a_port)
        procs.append(local)
        await wait_view(b_port, "benchClusterA")
        cross = await _client(bench, "cluster-client-cross", b_port)
        procs.append(cross)
        systems: dict[str, Roles] = {
            "cluster_local": {"client": local, "router": a, "server": agent, "nats": nats},
            "cluster_cross": {
                "client": cross,
                "router": b,
                "peer": a,
                "server": agent,
                "nats": nats,
            },
        }
        await measure(bench, systems, results)
    finally:
        for proc in reversed(procs):
            await bench.supervisor.stop(proc)


def figures(results: dict[str, Any]) -> list[Figure]:
    """The cross-sentinel cost: p50 added, throughput ratio at 64 in flight."""
    cluster = results.get("cluster", {})
    local, cross = cluster.get("cluster_local", {}), cluster.get("cluster_cross", {})
    local_p50 = _series(local.get("latency"), "p50_ms")
    cross_p50 = _series(cross.get("latency"), "p50_ms")
    if not local_p50 or not cross_p50:
        return []
    return [
        Figure(
            "cluster.p50_cross_vs_local",
            "Echo p50 — caller and agent on two sentinels vs on one (added ms)",
            "ms",
            cross_p50,
            "same sentinel",
            local_p50,
            "diff",
            ("<=", 1.0),
            "≤ +1 ms",
        ),
        Figure(
            "cluster.tp64_cross_vs_local",
            "Echo throughput, 64 in flight — two sentinels vs one",
            "calls/s",
            _series(cross.get("throughput", {}).get("64"), "rate"),
            "same sentinel",
            _series(local.get("throughput", {}).get("64"), "rate"),
            "ratio",
        ),
    ]


def table(results: dict[str, Any]) -> str:
    """Both paths side by side, with the CPU each process spends per call."""
    cluster = results.get("cluster", {})
    roles = ("client", "router", "peer", "server", "nats")
    rows = []
    for name, title in (
        ("cluster_local", "one sentinel (both on A)"),
        ("cluster_cross", "two sentinels (caller on B, agent on A)"),
    ):
        data = cluster.get(name)
        if not data:
            continue
        tp = data.get("throughput", {})
        cpu = [_series(tp.get("64"), "cpu_us_per_call", role) for role in roles]
        rows.append(
            [
                title,
                spread(_series(data.get("latency"), "p50_ms"), "ms"),
                spread(_series(data.get("latency"), "p99_ms"), "ms"),
                spread(_series(tp.get("64"), "rate"), "calls/s"),
                " / ".join(f"{statistics.median(v):.0f}" if v else "—" for v in cpu),
            ]
        )
    if not rows:
        return ""
    return "Cluster (docs/CLUSTER.md): an echo call within one sentinel and across two.\n\n" + (
        _table(
            [
                "path",
                "p50 ms",
                "p99 ms",
                "calls/s @64",
                "CPU µs/call @64: client / ingress sentinel / agent's sentinel / agent / nats",
            ],
            rows,
        )
    )
