"""What every benchmark section shares: the configuration and the run context."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procs import ROOT, Proc, ProcessFailed, Supervisor, free_port, wait_port

PYTHON = (
    str(ROOT / ".venv" / "bin" / "python")
    if (ROOT / ".venv" / "bin" / "python").exists()
    else sys.executable
)
FAME = str(Path(PYTHON).parent / "fame")
INTEROP_PYTHON = ROOT / ".venv-interop" / "bin" / "python"
RESULTS_DIR = ROOT / "benchmarks" / "results"
ATTACH_PATH = "/fame/v1/attach/ws/downstream"


@dataclass(frozen=True, slots=True)
class Config:
    """How much of everything one run measures."""

    quick: bool = False
    repeats: int = 3
    latency_repeats: int = 5
    """Repeats of the echo and chat figures: short, noise-sensitive, interleaved."""
    echo_duration: float = 1.5
    echo_text: str = "Hello, fabric!"
    inflights: tuple[int, ...] = (1, 16, 64)
    naylence: bool = True
    chat_duration: float = 1.5
    chat_concurrency: int = 16
    memory_conversations: int = 10_000
    memory_messages: int = 20
    memory_chars: int = 200
    swarm_nodes: int = 1000
    swarm_procs: int = 4
    swarm_repeats: int = 3
    coldstart_repeats: int = 3
    import_runs: int = 3
    budget: float = 570.0

    @classmethod
    def full(cls) -> Config:
        """The ``make bench`` configuration (under 10 minutes)."""
        return cls()

    @classmethod
    def quick_run(cls) -> Config:
        """The ``--quick`` configuration (about 2 minutes): shorter, smaller, no Naylence."""
        return cls(
            quick=True,
            latency_repeats=3,
            echo_duration=0.3,
            naylence=False,
            chat_duration=0.3,
            memory_conversations=1_000,
            swarm_nodes=200,
            swarm_procs=2,
            swarm_repeats=2,
            coldstart_repeats=2,
            import_runs=1,
            budget=110.0,
        )

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON."""
        return asdict(self)


@dataclass
class Bench:
    """The context of one run: configuration, children, results, notes."""

    config: Config
    supervisor: Supervisor
    started: float = field(default_factory=time.monotonic)
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Record a note for the report and say it now."""
        self.notes.append(text)
        print(f"  note: {text}", file=sys.stderr, flush=True)

    def say(self, text: str) -> None:
        """Progress output (stderr)."""
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {text}", file=sys.stderr, flush=True)

    @property
    def remaining(self) -> float:
        """Seconds left in the run's time budget."""
        return self.config.budget - (time.monotonic() - self.started)

    async def start_sentinel(
        self, name: str = "sentinel", *, node_id: str = "benchSentinel"
    ) -> tuple[Proc, int]:
        """Start ``fame sentinel`` on a free port and wait until it listens."""
        port = free_port()
        proc = await self.supervisor.spawn(
            name,
            [
                FAME,
                "sentinel",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--node-id",
                node_id,
                "--log-level",
                "warning",
            ],
            pipe_stdout=False,
        )
        await wait_port(port, 20.0, proc)
        return proc, port

    async def start_driver(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, limit: float = 30.0
    ) -> tuple[Proc, dict[str, Any]]:
        """Start a driver process and wait for its ``READY``."""
        proc = await self.supervisor.spawn(name, argv, env=env, pipe_stdin=True)
        info = await proc.wait_ready(limit)
        return proc, info

    async def start_ready(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, limit: float = 30.0
    ) -> tuple[Proc, dict[str, Any]]:
        """Start a process that prints ``READY`` and wait for it."""
        proc = await self.supervisor.spawn(name, argv, env=env)
        info = await proc.wait_ready(limit)
        return proc, info


def machine_busy() -> tuple[float, float]:
    """Return (busy, total) CPU jiffies of the whole machine, from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return float(sum(fields) - idle), float(sum(fields))


def admission_env(port: int, **extra: str) -> dict[str, str]:
    """The environment of a node attaching to the sentinel on ``port``."""
    return {
        "FAME_DIRECT_ADMISSION_URL": f"ws://127.0.0.1:{port}{ATTACH_PATH}",
        "FAME_LOG_LEVEL": "warning",
        "FAME_SHOW_ENVELOPES": "false",
        **extra,
    }


async def wait_http_ok(port: int, path: str, limit: float, proc: Proc | None = None) -> None:
    """Poll ``GET http://127.0.0.1:port/path`` until it answers 200."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive:
            raise ProcessFailed(f"{proc.name} exited:\n{proc.log_tail()}")
        with contextlib.suppress(OSError, TimeoutError):
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
                )
                await writer.drain()
                status = await asyncio.wait_for(reader.readline(), 1.0)
                if b" 200 " in status:
                    return
            finally:
                writer.close()
        await asyncio.sleep(0.05)
    raise ProcessFailed(f"GET {path} on port {port} did not answer 200 within {limit} s")
