"""Child processes of a benchmark run: start, wait for, command, measure, stop.

Every process is started in a session of its own (Ctrl-C in the terminal goes
to the orchestrator only, which then stops its children) and with
``PR_SET_PDEATHSIG``, so it gets SIGTERM even if the orchestrator dies
without cleaning up. :class:`Supervisor` remembers each child and stops them
all, by process id, on every way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import driver
from famefabric.testing import free_port as free_port  # the one shared helper

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
LINE_LIMIT = 16 * 1024 * 1024


class ProcessFailed(RuntimeError):
    """A child exited or misbehaved; the message carries the tail of its log."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def rss_bytes(pid: int) -> int:
    """Return the resident set size of a process (``VmRSS``), in bytes."""
    return _status_kb(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """Return the peak resident set size of a process (``VmHWM``), in bytes."""
    return _status_kb(pid, "VmHWM") * 1024


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise ProcessFailed(f"no {key} for pid {pid}")


class Proc:
    """One child process; its stderr goes to a log file."""

    def __init__(
        self,
        name: str,
        process: asyncio.subprocess.Process,
        log_path: Path,
        *,
        one_shot: bool = False,
    ) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.one_shot = one_shot
        """A child that exits by itself when done (not a casualty when found dead)."""
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the child still runs."""
        return self.process.returncode is None

    def rss(self) -> int:
        """Resident set size in bytes."""
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        """CPU seconds used so far."""
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the child's stderr log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _failure(self, what: str) -> ProcessFailed:
        status = "running" if self.alive else f"exit {self.process.returncode}"
        return ProcessFailed(
            f"{self.name} ({status}): {what}\n--- {self.log_path} ---\n{self.log_tail()}"
        )

    async def _line(self, prefixes: Sequence[str], deadline: float) -> tuple[str, dict[str, Any]]:
        stdout = self.process.stdout
        if stdout is None:
            raise self._failure("stdout is not piped")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(f"no {'/'.join(prefixes)} line in time")
            try:
                raw = await asyncio.wait_for(stdout.readline(), remaining)
            except TimeoutError:
                raise self._failure(f"no {'/'.join(prefixes)} line in time") from None
            if not raw:
                await asyncio.sleep(0.05)
                raise self._failure("stdout closed")
            line = raw.decode(errors="replace").strip()
            kind, _, rest = line.partition(" ")
            if kind in prefixes:
                body = json.loads(rest) if rest.strip() else {}
                return kind, body if isinstance(body, dict) else {"value": body}

    async def wait_result(self, limit: float) -> dict[str, Any]:
        """Wait for a ``RESULT`` line (from a one-shot child) and return its body."""
        kind, body = await self._line((driver.RESULT, driver.ERROR), time.monotonic() + limit)
        if kind == driver.ERROR:
            raise self._failure(str(body.get("error")))
        return body

    async def wait_ready(self, limit: float) -> dict[str, Any]:
        """Wait for the child's ``READY`` line and return its JSON body."""
        kind, body = await self._line((driver.READY, driver.ERROR), time.monotonic() + limit)
        if kind == driver.ERROR:
            raise self._failure(str(body.get("error")))
        return body

    async def request(self, op: str, limit: float, **fields: Any) -> dict[str, Any]:
        """Send a driver command and return its ``RESULT``.

        Raises:
            ProcessFailed: the driver answered ``ERROR``, died or timed out.
        """
        stdin = self.process.stdin
        if stdin is None or not self.alive:
            raise self._failure(f"cannot send {op}")
        stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
        await stdin.drain()
        kind, body = await self._line((driver.RESULT, driver.ERROR), time.monotonic() + limit)
        if kind == driver.ERROR:
            raise self._failure(f"{op}: {body.get('error')}")
        return body


class Supervisor:
    """Starts children and makes sure every one of them is stopped."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._env = dict(env if env is not None else os.environ)
        self._procs: list[Proc] = []
        self._counter = 0
        self.casualties: list[str] = []
        """Children found dead before they were asked to stop, e.g. ``chat-agent (killed by signal 15)``."""

    async def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pipe_stdout: bool = True,
        pipe_stdin: bool = False,
        one_shot: bool = False,
    ) -> Proc:
        """Start ``argv`` with ``env`` added to the base environment."""
        self._counter += 1
        log_path = self.log_dir / f"{self._counter:03d}-{name}.log"
        merged = {**self._env, **(env or {})}
        with open(log_path, "wb") as log:  # noqa: ASYNC230 - a local log file, once per child
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                env=merged,
                stdin=asyncio.subprocess.PIPE if pipe_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if pipe_stdout else asyncio.subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                limit=LINE_LIMIT,
            )
        proc = Proc(name, process, log_path, one_shot=one_shot)
        self._procs.append(proc)
        return proc

    async def stop(self, proc: Proc, limit: float = 5.0) -> None:
        """Ask a child to stop (``quit``, then SIGTERM), kill it if it does not."""
        if not proc.alive and proc in self._procs and not proc.one_shot:
            code = proc.process.returncode
            how = (
                f"killed by signal {-code}"
                if code is not None and code < 0
                else f"exit status {code}"
            )
            self.casualties.append(f"{proc.name} ({how}; log {proc.log_path.name})")
        if proc.alive and proc.process.stdin is not None:
            with contextlib.suppress(Exception):
                proc.process.stdin.write(b'{"op": "quit"}\n')
                await proc.process.stdin.drain()
                proc.process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.process.wait(), min(limit, 2.0))
        if proc.alive:
            _signal(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.process.wait(), limit)
            except TimeoutError:
                _signal(proc.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.process.wait(), 2.0)
        _signal(proc.pid, signal.SIGKILL, group_only=True)
        if proc in self._procs:
            self._procs.remove(proc)

    async def stop_all(self) -> None:
        """Stop every child still known, newest first."""
        procs = list(reversed(self._procs))
        await asyncio.gather(*(self.stop(proc) for proc in procs), return_exceptions=True)

    def kill_all_now(self) -> None:
        """SIGKILL every known child at once (last resort, synchronous)."""
        for proc in self._procs:
            _signal(proc.pid, signal.SIGKILL)
        self._procs.clear()


def _signal(pid: int, signum: int, *, group_only: bool = False) -> None:
    """Signal a child's process group (it leads its own session), else the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
        return
    if not group_only:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


async def wait_port(
    port: int,
    limit: float,
    proc: Proc | None = None,
    host: str = "127.0.0.1",
    poll: float = 0.005,
) -> float:
    """Poll until ``host:port`` accepts a TCP connection; return when (monotonic).

    Raises:
        ProcessFailed: ``proc`` exited first, or the port stayed closed.
    """
    deadline = time.monotonic() + limit
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if proc is not None and not proc.alive:
                raise proc._failure(f"exited before listening on {port}") from None
            if time.monotonic() > deadline:
                name = proc.name if proc is not None else f"port {port}"
                raise ProcessFailed(
                    f"{name}: nothing listening on {host}:{port} after {limit} s"
                ) from None
            await asyncio.sleep(poll)
            continue
        now = time.monotonic()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return now
