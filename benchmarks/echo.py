"""Echo RPC, side by side: the websockets floor, famefabric, the Naylence reference.

Every system runs as real processes (client, router, echo server) on
loopback. All of them stay up for the whole section and the repeats are
interleaved (floor, relay, fabric, reference, floor, ...), so that the noise
of the machine falls on every system alike and ratios are taken within one
repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks.common import INTEROP_PYTHON, PYTHON, Bench, admission_env, wait_http_ok
from benchmarks.observability import tracing_systems
from benchmarks.procs import ROOT, Proc, ProcessFailed, free_port
from benchmarks.security import security_systems

ECHO_ADDRESS = "echo@fame.fabric"
UVLOOP_ADDRESS = "ecuv@fame.fabric"  # same length as ECHO_ADDRESS: same envelope sizes
SYSTEMS = (
    "ws_direct",
    "ws_relay",
    "fabric",
    "fabric_auth",
    "fabric_tls",
    "fabric_trace1",
    "fabric_trace100",
    "fabric_uvloop",
    "naylence",
)
INTEROP_SETUP_TIMEOUT = 300.0


@dataclass
class FabricEcho:
    """A running famefabric echo trio."""

    sentinel: Proc
    port: int
    agent: Proc
    client: Proc
    sizes: dict[str, Any]


@asynccontextmanager
async def fabric_echo(bench: Bench, *, with_client: bool = True) -> AsyncIterator[FabricEcho]:
    """Start ``fame sentinel``, the echo agent and (optionally) the client driver."""
    sup = bench.supervisor
    sentinel, port = await bench.start_sentinel()
    procs = [sentinel]
    try:
        env = admission_env(port)
        agent, _ = await bench.start_ready(
            "echo-agent",
            [PYTHON, "-m", "benchmarks.fabric_echo", "agent", "--address", ECHO_ADDRESS],
            env,
        )
        procs.append(agent)
        client = agent
        sizes: dict[str, Any] = {}
        if with_client:
            client, _ = await bench.start_driver(
                "echo-client",
                [
                    PYTHON,
                    "-m",
                    "benchmarks.fabric_echo",
                    "client",
                    "--address",
                    ECHO_ADDRESS,
                    "--text",
                    bench.config.echo_text,
                ],
                env,
            )
            procs.append(client)
            sizes = await client.request("sizes", 20.0)
        yield FabricEcho(sentinel, port, agent, client, sizes)
    finally:
        for proc in reversed(procs):
            await sup.stop(proc)


async def floor(
    bench: Bench, sizes: dict[str, Any], procs: list[Proc]
) -> dict[str, dict[str, Proc]]:
    """Start the floor: echo server, relay, and a client driver for each (added to ``procs``)."""
    server_port, relay_port = free_port(), free_port()
    server, _ = await bench.start_ready(
        "floor-server",
        [
            PYTHON,
            "-m",
            "benchmarks.floor",
            "server",
            "--port",
            str(server_port),
            "--reply-size",
            str(sizes["reply_bytes"]),
        ],
    )
    procs.append(server)
    relay, _ = await bench.start_ready(
        "floor-relay",
        [
            PYTHON,
            "-m",
            "benchmarks.floor",
            "relay",
            "--port",
            str(relay_port),
            "--upstream",
            f"ws://127.0.0.1:{server_port}",
            "--uvloop",
        ],
    )
    procs.append(relay)
    systems: dict[str, dict[str, Proc]] = {}
    for name, port in (("ws_direct", server_port), ("ws_relay", relay_port)):
        client, _ = await bench.start_driver(
            f"floor-client-{name}",
            [
                PYTHON,
                "-m",
                "benchmarks.floor",
                "client",
                "--url",
                f"ws://127.0.0.1:{port}",
                "--request-size",
                str(sizes["request_bytes"]),
            ],
        )
        procs.append(client)
        systems[name] = {"client": client, "server": server}
    systems["ws_relay"]["router"] = relay
    return systems


async def _uvloop_nodes(bench: Bench, fabric: FabricEcho, procs: list[Proc]) -> dict[str, Proc]:
    """A second echo agent and client on the same sentinel, both running on uvloop."""
    env = admission_env(fabric.port)
    module = [PYTHON, "-m", "benchmarks.fabric_echo"]
    agent, _ = await bench.start_ready(
        "echo-agent-uvloop", [*module, "agent", "--address", UVLOOP_ADDRESS, "--uvloop"], env
    )
    procs.append(agent)
    client, _ = await bench.start_driver(
        "echo-client-uvloop",
        [
            *module,
            "client",
            "--address",
            UVLOOP_ADDRESS,
            "--text",
            bench.config.echo_text,
            "--uvloop",
        ],
        env,
    )
    procs.append(client)
    return {"client": client, "router": fabric.sentinel, "server": agent}


async def interop_python(bench: Bench) -> str | None:
    """Run ``scripts/interop-venv.sh``; return the interop Python, or None (with a note)."""
    try:
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(ROOT / "scripts" / "interop-venv.sh"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        bench.note(f"Naylence reference skipped: cannot run scripts/interop-venv.sh ({exc})")
        return None
    try:
        output, _ = await asyncio.wait_for(
            process.communicate(), min(INTEROP_SETUP_TIMEOUT, max(10.0, bench.remaining - 200))
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        bench.note("Naylence reference skipped: scripts/interop-venv.sh took too long")
        return None
    if process.returncode != 0 or not INTEROP_PYTHON.exists():
        last = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
        bench.note(
            f"Naylence reference skipped: scripts/interop-venv.sh exited {process.returncode} ({last[0]})"
        )
        return None
    return str(INTEROP_PYTHON)


async def _naylence(bench: Bench, python: str, procs: list[Proc]) -> dict[str, Proc]:
    port = free_port()
    base = {"PYTHONPATH": str(ROOT), "FAME_LOG_LEVEL": "warning", "FAME_SHOW_ENVELOPES": "false"}
    scripts = ROOT / "benchmarks" / "naylence"
    sentinel = await bench.supervisor.spawn(
        "naylence-sentinel",
        [python, str(scripts / "sentinel.py")],
        env={**base, "FAME_LISTENER_PORT": str(port), "FAME_NODE_ID": "benchRefSentinel"},
        pipe_stdout=False,
    )
    procs.append(sentinel)
    await wait_http_ok(port, "/fame/v1/attach/health", 60.0, sentinel)
    env = {**admission_env(port), **base}
    agent, _ = await bench.start_ready(
        "naylence-agent",
        [python, str(scripts / "echo_agent.py"), ECHO_ADDRESS],
        {**env, "FAME_NODE_ID": "benchRefAgent"},
        60.0,
    )
    procs.append(agent)
    client, _ = await bench.start_driver(
        "naylence-client",
        [python, str(scripts / "echo_client.py"), ECHO_ADDRESS, "--text", bench.config.echo_text],
        {**env, "FAME_NODE_ID": "benchRefClient"},
        60.0,
    )
    procs.append(client)
    return {"client": client, "router": sentinel, "server": agent}


Roles = dict[str, Proc]
"""The processes of one system: ``client``, ``router`` (if any) and ``server``."""


def _cpu(roles: Roles) -> dict[str, float]:
    return {role: proc.cpu() for role, proc in roles.items()}


async def measure(bench: Bench, systems: dict[str, Roles], results: dict[str, Any]) -> None:
    """Interleave the repeats of latency and throughput over every system.

    Throughput runs also record the CPU time each process of the system used
    per call (from ``/proc/<pid>/stat``), after an uncounted warm-up.
    """
    cfg = bench.config
    timeout = cfg.echo_duration * 4 + 60.0
    for rep in range(cfg.latency_repeats):
        for name, roles in systems.items():
            client = roles["client"]
            entry = results.setdefault(name, {"latency": [], "throughput": {}})
            bench.say(f"echo {name}: repeat {rep + 1}/{cfg.latency_repeats}")
            try:
                entry["latency"].append(
                    await client.request("latency", timeout, duration=cfg.echo_duration)
                )
                for inflight in cfg.inflights:
                    await client.request(
                        "throughput", timeout, inflight=inflight, duration=0.2, warmup=0
                    )
                    before = _cpu(roles)
                    result = await client.request(
                        "throughput",
                        timeout,
                        inflight=inflight,
                        duration=cfg.echo_duration,
                        warmup=0,
                    )
                    after = _cpu(roles)
                    calls = max(1, int(result["calls"]))
                    result["cpu_us_per_call"] = {
                        r: (after[r] - before[r]) / calls * 1e6 for r in roles
                    }
                    result["cpu_share"] = {
                        r: (after[r] - before[r]) / result["secs"] for r in roles
                    }
                    entry["throughput"].setdefault(str(inflight), []).append(result)
            except ProcessFailed as exc:
                bench.note(f"echo {name} failed in repeat {rep + 1}: {str(exc).splitlines()[0]}")
                entry.setdefault("errors", []).append(str(exc))


async def run(bench: Bench) -> None:
    """Section 1-3: the floor, famefabric and the reference doing echo calls."""
    results: dict[str, Any] = bench.results.setdefault("echo", {})
    procs: list[Proc] = []
    try:
        async with fabric_echo(bench) as fabric:
            results["sizes"] = fabric.sizes
            bench.say(
                f"echo envelope sizes: request {fabric.sizes['request_bytes']} B, reply {fabric.sizes['reply_bytes']} B"
            )
            systems = await floor(bench, fabric.sizes, procs)
            systems["fabric"] = {
                "client": fabric.client,
                "router": fabric.sentinel,
                "server": fabric.agent,
            }
            systems.update(await security_systems(bench, procs))
            systems.update(await tracing_systems(bench, procs))
            if not bench.config.quick:
                systems["fabric_uvloop"] = await _uvloop_nodes(bench, fabric, procs)
            if bench.config.naylence:
                python = await interop_python(bench)
                if python is not None:
                    try:
                        systems["naylence"] = await _naylence(bench, python, procs)
                    except ProcessFailed as exc:
                        bench.note(
                            f"Naylence reference skipped: it did not start ({str(exc).splitlines()[0]})"
                        )
            else:
                bench.note("Naylence reference skipped (--quick)")
            ordered = {name: systems[name] for name in SYSTEMS if name in systems}
            await measure(bench, ordered, results)
    finally:
        for proc in reversed(procs):
            await bench.supervisor.stop(proc)
