"""``python -m benchmarks [--quick] [--only SECTIONS] [--profile]``: run, print, save.

Runs the sections in order, prints one table (each figure, its baseline, the
ratio and the target) and writes every raw result to
``benchmarks/results/latest.json``. Children are stopped on every way out,
Ctrl-C included; a section that fails is reported and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks import chat, cluster, coldstart, echo, gateway, memory, profile, report, swarm
from benchmarks.common import PYTHON, RESULTS_DIR, Bench, Config, machine_busy
from benchmarks.procs import ROOT, Supervisor

Section = Callable[[Bench], Awaitable[None]]
SECTIONS: dict[str, Section] = {
    "echo": echo.run,
    "chat": chat.run,
    "gateway": gateway.run,
    "memory": memory.run,
    "swarm": swarm.run,
    "coldstart": coldstart.run,
    "cluster": cluster.run,
}
report.SECTION_FIGURES.append(cluster.figures)
report.SECTION_TABLES.append(cluster.table)
# Seconds each section needs at least (full run); a section that does not fit the
# remaining budget is skipped with a note instead of overrunning it.
MIN_SECONDS = {
    "echo": 30.0,
    "chat": 20.0,
    "gateway": 20.0,
    "memory": 20.0,
    "swarm": 20.0,
    "coldstart": 15.0,
    "cluster": 20.0,
}


def machine() -> dict[str, Any]:
    """Describe the machine: CPUs, CPU model, memory, Python, kernel."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_total = 0
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_bytes": mem_total,
        "python": platform.python_version(),
        "python_executable": PYTHON,
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),
    }


def log_dir(keep: int = 5) -> Path:
    """A fresh folder for this run's child logs; older runs' folders beyond ``keep`` go."""
    root = RESULTS_DIR / "logs"
    root.mkdir(parents=True, exist_ok=True)
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - keep + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    for stray in (p for p in root.iterdir() if p.is_file()):
        stray.unlink(missing_ok=True)
    return root / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def code_version() -> dict[str, Any]:
    """The commit measured, and how many paths under src/ differ from it (read-only git calls)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "src")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_paths_changed": len(changed.splitlines()),
    }


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def run_sections(bench: Bench, names: list[str]) -> None:
    """Run the sections in order, each bounded by the budget left after the later ones' minimum."""
    scale = 0.5 if bench.config.quick else 1.0
    for index, name in enumerate(names):
        need = MIN_SECONDS[name] * scale
        reserve = sum(MIN_SECONDS[later] * scale for later in names[index + 1 :])
        if bench.remaining < need:
            bench.note(f"section {name} skipped: {bench.remaining:.0f} s left of the time budget")
            continue
        bench.say(f"== {name}")
        started = time.monotonic()
        busy_before, total_before = machine_busy()
        try:
            await asyncio.wait_for(SECTIONS[name](bench), max(bench.remaining - reserve, need))
        except TimeoutError:
            bench.note(f"section {name} stopped: the run's time budget ran out")
        except Exception as exc:
            bench.note(
                f"section {name} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            bench.results.setdefault("errors", {})[name] = traceback.format_exc()
        finally:
            await bench.supervisor.stop_all()
        for casualty in bench.supervisor.casualties:
            bench.note(f"section {name}: a child ended before it was stopped: {casualty}")
        bench.supervisor.casualties.clear()
        bench.results.setdefault("section_secs", {})[name] = round(time.monotonic() - started, 1)
        busy_after, total_after = machine_busy()
        share = (busy_after - busy_before) / max(1.0, total_after - total_before)
        bench.results.setdefault("machine_load", {})[name] = {
            "cpu_busy_share": round(share, 3),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }


async def amain(args: argparse.Namespace) -> int:
    """Run the benchmark and report; return the exit code."""
    config = Config.quick_run() if args.quick else Config.full()
    if args.repeats:
        config = Config(
            **{
                **config.to_json(),
                "repeats": args.repeats,
                "latency_repeats": args.repeats,
                "swarm_repeats": args.repeats,
                "coldstart_repeats": args.repeats,
                "inflights": config.inflights,
            }
        )
    supervisor = Supervisor(log_dir())
    atexit.register(supervisor.kill_all_now)
    bench = Bench(config, supervisor)
    fd_limit = raise_fd_limit()
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        print("\ninterrupted: stopping child processes", file=sys.stderr, flush=True)
        if main_task is not None:
            main_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupt)
    bench.results["machine"] = {**machine(), "fd_limit": fd_limit}
    bench.results["code"] = code_version()
    bench.results["config"] = config.to_json()
    bench.results["mode"] = "quick" if args.quick else "full"
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS and n != "profile"]
    if unknown:
        print(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}, profile", file=sys.stderr)
        return 2
    if args.profile:
        names = [n for n in names if n != "profile"] if args.only else []
    started = time.monotonic()
    try:
        await run_sections(bench, [n for n in names if n in SECTIONS])
        if args.profile or "profile" in names:
            bench.say("== profile")
            try:
                await profile.run(bench, seconds=args.profile_seconds)
            except Exception as exc:
                bench.note(f"profile failed: {type(exc).__name__}: {exc}")
                bench.results.setdefault("errors", {})["profile"] = traceback.format_exc()
        status = 0
    except asyncio.CancelledError:
        bench.note("run interrupted: partial results")
        status = 130
    finally:
        await supervisor.stop_all()
    total = time.monotonic() - started
    output = args.output or (
        str(RESULTS_DIR / "profile.json") if args.profile and not args.only else None
    )
    path = _save(bench, total, output)
    print(report.render(bench.results))
    print(f"\nraw results: {path}  (run took {total:.0f} s)")
    return status


def _save(bench: Bench, total: float, output: str | None) -> str:
    bench.results["notes"] = bench.notes
    bench.results["total_secs"] = round(total, 1)
    bench.results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    bench.results["figures"] = report.figures_json(bench.results)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = output or str(RESULTS_DIR / "latest.json")
    with open(path, "w") as out:
        json.dump(bench.results, out, indent=1, default=str)
    return path


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run (~2 min): fewer samples, smaller scales, no Naylence",
    )
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}, profile")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the sentinel, agents and client under load with py-spy "
        "(alone: writes benchmarks/results/profile.json)",
    )
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=10.0,
        help="seconds of py-spy sampling (default 10)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=0,
        help="repeats of every figure (default: 5 for echo and chat, 3 otherwise; quick: 3/2)",
    )
    parser.add_argument(
        "--output", help="where to write the JSON (default benchmarks/results/latest.json)"
    )
    args = parser.parse_args(argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
