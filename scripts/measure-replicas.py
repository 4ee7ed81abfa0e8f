#!/usr/bin/env python3
"""Chat turns per second with 1 and 3 replicas of ``fame agent chat``, on SQLite and on Redis.

Run from the repository root::

    .venv/bin/python scripts/measure-replicas.py [--stores sqlite,redis] [--replicas 1,3]
        [--repeats 3] [--conversations 100] [--turns 10] [--concurrency 50]

For each store and replica count it starts a fresh stack on 127.0.0.1: the
stub LLM (``python -m famefabric.testing.openai_server``, answering at once),
``redis-server`` without persistence (Redis only), ``fame sentinel`` and the
replicas, all sharing one store. This process is the client: one node,
``--concurrency`` conversations at a time, each started with ``start_task``
and then answered turn after turn with ``run_turn`` and a turn id, as
``fame chat`` sends them. Only the turns are timed; one uncounted round warms
everything up first. Each repeat uses new conversations; the table shows the
median of the repeats, their range, and the CPU seconds each kind of process
spent per 1,000 turns (median), which tells where the time goes.

Every wait has a deadline, and every process started is stopped (SIGTERM,
then SIGKILL) on the way out. Logs go to a temporary directory, printed at
the start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from famefabric import FameFabric
from famefabric.agent.proxy import RemoteAgent
from famefabric.protocol.ids import new_id
from famefabric.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
ADDRESS = "chat@fame.fabric"
ATTACH_PATH = "/fame/v1/attach/ws/downstream"
HEALTH_PATH = "/fame/v1/attach/health"
READY_TIMEOUT = 30.0
RUN_TIMEOUT = 300.0
TURN_TIMEOUT = 60.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    """A process of the stack; its stdout and stderr go to one log file."""

    kind: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, what: str) -> re.Match[str]:
        """Wait until the log matches ``pattern``; fail if the process exits or time runs out."""
        deadline = time.monotonic() + READY_TIMEOUT
        compiled = re.compile(pattern, re.MULTILINE)
        while True:
            found = compiled.search(self.text())
            if found:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.text().splitlines()[-20:])
                raise RuntimeError(f"{self.kind} did not show {what}:\n{tail}")
            time.sleep(0.05)


@dataclass
class Stack:
    """The processes of one configuration."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def spawn(self, kind: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        log = self.log_dir / f"{kind}-{len(self.children)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                cwd=ROOT,
            )
        child = Child(kind, process, log)
        self.children.append(child)
        return child

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far, summed per kind of process (this process is ``client``)."""
        used: dict[str, float] = {"client": time.process_time()}
        for child in self.children:
            used[child.kind] = used.get(child.kind, 0.0) + cpu_seconds(child.process.pid)
        return used

    def stop(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


def wait_healthy(sentinel: Child, port: int) -> None:
    """Wait until the sentinel's health endpoint answers."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=1.0):
                return
        except OSError:
            if sentinel.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sentinel did not answer on port {port}") from None
            time.sleep(0.05)


def start_stack(stack: Stack, store: str, replicas: int) -> str:
    """Start stub, store, sentinel and replicas; return the sentinel's admission URL."""
    stub = stack.spawn(
        "llm", [str(BIN / "python"), "-m", "famefabric.testing.openai_server", "--port", "0"]
    )
    llm_url = stub.wait_for(r"^listening on (\S+)", "its listening line").group(1)
    if store == "redis":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        redis_port = free_port()  # redis-server --port 0 would not listen on TCP at all
        redis = stack.spawn(
            "redis",
            [
                *(binary, "--port", str(redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(stack.log_dir)),
            ],
        )
        redis.wait_for("Ready to accept connections", "that it accepts connections")
        store_url = f"redis://127.0.0.1:{redis_port}/0"
    else:
        store_url = f"sqlite:///{stack.log_dir / 'conversations.db'}"
    sentinel = stack.spawn(
        "sentinel",
        [
            *(str(BIN / "fame"), "sentinel", "--host", "127.0.0.1", "--port", "0"),
            *("--node-id", "measureSentinel", "--log-level", "info"),
        ],
    )
    listening = sentinel.wait_for(r"listening on 127\.0\.0\.1:(\d+)", "its listening line")
    sentinel_port = int(listening.group(1))
    wait_healthy(sentinel, sentinel_port)
    admission = f"ws://127.0.0.1:{sentinel_port}{ATTACH_PATH}"
    env = {
        "FAME_DIRECT_ADMISSION_URL": admission,
        "OPENAI_BASE_URL": llm_url,
        "OPENAI_API_KEY": "measure",
        "MODEL_NAME": "measure",
        "CHAT_STORE": store_url,
        "FAME_LOG_LEVEL": "info",
    }
    agents = [
        stack.spawn("agent", [str(BIN / "fame"), "agent", "chat"], env) for _ in range(replicas)
    ]
    for agent in agents:
        agent.wait_for(rf"serving {re.escape(ADDRESS)}", "that it serves the address")
    return admission


async def run_round(chat: RemoteAgent, conversations: int, turns: int, concurrency: int) -> float:
    """Start ``conversations``, then answer ``turns`` turns in each; return the turns' seconds."""
    ids = [new_id() for _ in range(conversations)]
    slots = asyncio.Semaphore(concurrency)

    async def start(conversation: str) -> None:
        async with slots:
            await chat.start_task(id=conversation, history_length=turns, timeout=TURN_TIMEOUT)

    async def talk(conversation: str) -> None:
        async with slots:
            for turn in range(turns):
                reply = await chat.run_turn(conversation, f"question {turn}", turn_id=new_id())
                if reply != f"echo({2 * turn + 2}): question {turn}":
                    raise RuntimeError(f"unexpected reply {reply!r} in {conversation}")

    await asyncio.gather(*(start(conversation) for conversation in ids))
    began = time.perf_counter()
    await asyncio.gather(*(talk(conversation) for conversation in ids))
    return time.perf_counter() - began


@dataclass
class Result:
    store: str
    replicas: int
    rates: list[float]
    cpu_per_1000: dict[str, float]


async def measure(store: str, replicas: int, args: argparse.Namespace, log_root: Path) -> Result:
    stack = Stack(log_root / f"{store}-{replicas}")
    stack.log_dir.mkdir(parents=True)
    try:
        admission = await asyncio.to_thread(start_stack, stack, store, replicas)
        async with FameFabric.create(admission_url=admission, call_timeout=TURN_TIMEOUT) as fabric:
            chat = RemoteAgent(ADDRESS, fabric=fabric)
            await run_round(chat, min(args.concurrency, args.conversations), 3, args.concurrency)
            rates: list[float] = []
            cpu: dict[str, list[float]] = {}
            turns = args.conversations * args.turns
            for _ in range(args.repeats):
                before = stack.cpu()
                secs = await asyncio.wait_for(
                    run_round(chat, args.conversations, args.turns, args.concurrency), RUN_TIMEOUT
                )
                after = stack.cpu()
                rates.append(turns / secs)
                for kind, used in after.items():
                    cpu.setdefault(kind, []).append((used - before.get(kind, 0.0)) * 1000 / turns)
        return Result(
            store, replicas, rates, {kind: statistics.median(v) for kind, v in cpu.items()}
        )
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--replicas", default="1,3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    log_root = Path(tempfile.mkdtemp(prefix="measure-replicas-"))
    print(f"logs: {log_root}", file=sys.stderr)
    results: list[Result] = []
    for store in args.stores.split(","):
        for replicas in (int(n) for n in args.replicas.split(",")):
            result = asyncio.run(measure(store, replicas, args, log_root))
            rates = ", ".join(f"{rate:.0f}" for rate in result.rates)
            print(f"{store} x{replicas}: {rates} turns/s", file=sys.stderr)
            results.append(result)
    kinds = sorted({kind for result in results for kind in result.cpu_per_1000})
    print(
        f"\n{args.conversations} conversations x {args.turns} turns, "
        f"{args.concurrency} at a time, {args.repeats} repeats, {os.cpu_count()} CPUs\n"
    )
    header = ["store", "replicas", "turns/s (median)", "range"]
    header += [f"CPU s/1000 turns: {kind}" for kind in kinds]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for result in results:
        row = [
            result.store,
            str(result.replicas),
            f"{statistics.median(result.rates):.0f}",
            f"{min(result.rates):.0f} to {max(result.rates):.0f}",
        ]
        row += [f"{result.cpu_per_1000.get(kind, 0.0):.1f}" for kind in kinds]
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
