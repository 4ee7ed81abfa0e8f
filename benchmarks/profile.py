"""Profile the sentinel, the agent and the client under load, with py-spy.

``python -m benchmarks --profile`` starts the echo trio, keeps 64 echo calls
in flight and samples each process in turn with ``py-spy record --native
--format raw`` (collapsed stacks; waits are dropped, so shares are of
CPU-busy time). It does the same for the chat agent under 16 concurrent
conversations. The raw stacks go to ``benchmarks/results/profile/`` (open
them in speedscope, or feed them to flamegraph.pl); the summary (top frames
by self and inclusive time, by file, the CPU each process used per call)
goes into the run's JSON and table.

py-spy is not a project dependency: ``.venv/bin/pip install py-spy``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.chat import CHAT_ADDRESS, chat_agent_argv, chat_agent_env, start_client, start_stub
from benchmarks.common import PYTHON, RESULTS_DIR, Bench
from benchmarks.echo import fabric_echo, floor
from benchmarks.procs import Proc

PROFILE_DIR = RESULTS_DIR / "profile"
RATE = 100
TOP = 25
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")


def py_spy() -> str | None:
    """The py-spy executable: next to the venv's Python, else on PATH."""
    beside = Path(PYTHON).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def _split(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match["func"], match["file"]


IDLE_NATIVE = frozenset(
    {
        "epoll_wait",
        "epoll_pwait",
        "epoll_pwait2",
        "poll",
        "ppoll",
        "select",
        "pselect",
        "pselect6",
        "nanosleep",
        "clock_nanosleep",
        "take_gil",
        "sem_wait",
        "sem_timedwait",
        "pthread_cond_wait",
        "pthread_cond_timedwait",
        "__futex_abstimed_wait_common",
    }
)
IDLE_MARKERS = ("PyThread_acquire_lock_timed", "readline", "take_gil")


def _is_python(frame: str) -> bool:
    return _split(frame)[1].endswith(".py") or _split(frame)[1] == "fame"


def _package(file: str) -> str:
    """``websockets/frames.py`` -> ``websockets``; a top-level stdlib module -> ``stdlib``."""
    if not file:
        return "native"
    head = file.split("/", 1)[0]
    if head == file:
        return "stdlib" if file.endswith(".py") else file
    return head


def is_idle(frames: list[str]) -> bool:
    """Whether a native stack is a wait: a poll, a lock, the GIL, a blocking read.

    py-spy's own idle detection does not work on this kind of machine (blocked
    threads are reported as running), so waits are recognised by their frames.
    """
    if _split(frames[-1])[0] in IDLE_NATIVE:
        return True
    return any(marker in frame for frame in frames for marker in IDLE_MARKERS)


def analyze(path: Path, seconds: float) -> dict[str, Any]:
    """Summarize collapsed native stacks into where the CPU time goes.

    Waiting samples (see :func:`is_idle`) are dropped, so every share is of
    CPU-busy time. ``self`` charges each sample to its deepest Python frame
    (C code it called, orjson or a socket write, included); ``native`` to
    the very leaf; ``inclusive`` counts a Python frame once per sample it
    appears in; ``files`` groups ``self`` by file.
    """
    self_time: Counter[str] = Counter()
    native: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if is_idle(frames):
            idle += count
            continue
        total += count
        native[frames[-1]] += count
        python = [f for f in frames if _is_python(f)]
        leaf = python[-1] if python else frames[-1]
        self_time[leaf] += count
        by_file[_split(leaf)[1] or leaf] += count
        by_package[_package(_split(leaf)[1])] += count
        for frame in set(python):
            inclusive[frame] += count

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "samples": n, "share": n / total if total else 0.0}
            for frame, n in counter.most_common(TOP)
        ]

    return {
        "samples": total,
        "idle_samples": idle,
        "busy_share": total / (seconds * RATE) if seconds else 0.0,
        "self": top(self_time),
        "native": top(native),
        "inclusive": top(inclusive),
        "files": top(by_file),
        "packages": top(by_package),
    }


async def _record(
    bench: Bench, name: str, target: Proc, seconds: float, native: bool
) -> Path | None:
    executable = py_spy()
    assert executable is not None
    out = PROFILE_DIR / f"{name}.txt"
    out.unlink(missing_ok=True)
    argv = [
        executable,
        "record",
        "--pid",
        str(target.pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        str(RATE),
    ]
    argv += ["--format", "raw", "--nolineno", "--output", str(out)]
    if native:
        argv.append("--native")
    spy = await bench.supervisor.spawn(f"py-spy-{name}", argv, pipe_stdout=False, one_shot=True)
    try:
        await asyncio.wait_for(spy.process.wait(), seconds + 60.0)
    except TimeoutError:
        bench.note(f"py-spy on {name} did not finish")
    finally:
        await bench.supervisor.stop(spy)
    if spy.process.returncode != 0 or not out.exists():
        if native:
            return await _record(bench, name, target, seconds, native=False)
        bench.note(f"py-spy on {name} failed: {spy.log_tail(3)}")
        return None
    return out


async def _profile_under_load(
    bench: Bench, targets: dict[str, Proc], load: asyncio.Future[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    await asyncio.sleep(1.0)  # past the warm-up
    profiles: dict[str, Any] = {}
    for name, proc in targets.items():  # one at a time: each py-spy slows its target
        before = proc.cpu()
        path = await _record(bench, name, proc, seconds, native=True)
        used = proc.cpu() - before
        if path is not None:
            profiles[name] = analyze(path, seconds)
            profiles[name]["raw_file"] = str(path.relative_to(RESULTS_DIR.parent.parent))
            profiles[name]["cpu_share_measured"] = used / seconds
    result = await load
    return {"load": result, "processes": profiles}


async def run(bench: Bench, seconds: float = 10.0) -> None:
    """Profile the echo trio and the relay floor at 64 in flight, then the chat agent."""
    if py_spy() is None:
        bench.note("profile skipped: py-spy is not installed (.venv/bin/pip install py-spy)")
        return
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = bench.results.setdefault(
        "profile", {"seconds": seconds, "rate": RATE}
    )
    timeout = seconds * 3 + 60.0
    async with fabric_echo(bench) as fabric:
        bench.say("profile: echo, 64 in flight, without profiler")
        results["echo_unprofiled"] = await fabric.client.request(
            "throughput", timeout, inflight=64, duration=3.0
        )
        bench.say(f"profile: echo, 64 in flight, sampling for {seconds:.0f} s")
        load = asyncio.ensure_future(
            fabric.client.request(
                "throughput", timeout, inflight=64, duration=3 * (seconds + 1.5) + 1.0, warmup=0.5
            )
        )
        targets = {
            "sentinel": fabric.sentinel,
            "echo_agent": fabric.agent,
            "echo_client": fabric.client,
        }
        results["echo"] = await _profile_under_load(bench, targets, load, seconds)
        relay = (await floor(bench, fabric.sizes, []))["ws_relay"]
        bench.say(f"profile: relay floor, 64 in flight, sampling for {seconds:.0f} s")
        load = asyncio.ensure_future(
            relay["client"].request(
                "throughput", timeout, inflight=64, duration=seconds + 2.5, warmup=0.5
            )
        )
        results["relay"] = await _profile_under_load(
            bench, {"relay": relay["router"]}, load, seconds
        )
    await bench.supervisor.stop_all()
    _, stub_url = await start_stub(bench)
    _, port = await bench.start_sentinel()
    agent = await bench.supervisor.spawn(
        "chat-agent",
        chat_agent_argv(CHAT_ADDRESS, "memory://"),
        env=chat_agent_env(port, stub_url),
        pipe_stdout=False,
    )
    client = await start_client(bench, "chat-client", CHAT_ADDRESS, port, stub_url)
    bench.say(f"profile: chat agent, 16 conversations, sampling for {seconds:.0f} s")
    load = asyncio.ensure_future(
        client.request(
            "turn_throughput",
            timeout,
            concurrency=16,
            duration=seconds + 2.5,
            slices=1,
            modes=["fabric"],
        )
    )
    results["chat"] = await _profile_under_load(bench, {"chat_agent": agent}, load, seconds)
    await bench.supervisor.stop_all()
