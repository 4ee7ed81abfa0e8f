"""One real process, started by a test, watched through its log files.

:class:`ManagedProcess` runs one command with its stdout and stderr in log
files (one pair per run, so a restarted process gets fresh files). Every
wait is a coroutine with a deadline: for a line of output
(:meth:`~ManagedProcess.wait_for_line`), for a condition
(:meth:`~ManagedProcess.wait_until`) or for the exit
(:meth:`~ManagedProcess.wait_exit`); each fails at once when the process
exits first. :meth:`~ManagedProcess.stop` sends SIGTERM, then SIGKILL after
5 s; :meth:`~ManagedProcess.kill9` kills at once (for fault tests).

A failed wait raises :class:`ProcessFailure`, whose message ends with the
command, the exit status and the tail of both logs, so that a failing test
shows what the process said.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
OUR_PYTHON = VENV_BIN / "python"
FAME = VENV_BIN / "fame"
INTEROP_VENV = Path(os.environ.get("FAME_INTEROP_VENV") or REPO_ROOT / ".venv-interop")
INTEROP_PYTHON = INTEROP_VENV / "bin" / "python"
INTEROP_VENV_SCRIPT = REPO_ROOT / "scripts" / "interop-venv.sh"
PEERS_DIR = REPO_ROOT / "tests" / "interop" / "peers"
OUR_AGENTS_DIR = REPO_ROOT / "tests" / "interop" / "agents"

READY_TIMEOUT = 60.0
"""Seconds a process may take to become ready: a deadline (a Naylence peer needs 2 s on an
idle machine, and more than 30 s was seen on a busy one)."""
STOP_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL."""
POLL_INTERVAL = 0.05
"""How often a wait looks at a log file or a condition again."""
LOG_TAIL_LINES = 40

# Variables of the developer's shell that would change how a test process
# behaves; each process gets only what its test asks for.
_SCRUBBED_ENV = (
    "FAME_DIRECT_ADMISSION_URL",
    "FAME_NODE_ID",
    "FAME_SHOW_ENVELOPES",
    "FAME_LISTENER_PORT",
    "FAME_LISTENER_WEBSOCKET_PORT",
    "FAME_LISTENER_HTTP_PORT",
    "FAME_PEER_ID_MODE",
    "FAME_CALL_TIMEOUT",
    "FAME_LOG_LEVEL",
    "FAME_SESSION_MAX_INITIAL_ATTEMPTS",
    "FAME_DELIVERY_PROFILE",
    "FAME_FLOW_CONTROL",
    "FAME_TOKEN",
    "FAME_TOKEN_FILE",
    "FAME_AUTH_SECRET",
    "FAME_JWKS_URL",
    "FAME_JWT_TRUSTED_ISSUER",
    "FAME_JWT_AUDIENCE",
    "FAME_JWT_ALGORITHM",
    "FAME_ADMISSION_TOKEN_URL",
    "FAME_ADMISSION_CLIENT_ID",
    "FAME_ADMISSION_CLIENT_SECRET",
    "FAME_TLS_CERT",
    "FAME_TLS_KEY",
    "FAME_TLS_CA",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "MODEL_NAME",
    "CHAT_STORE",
    "AGENT_ADDRESS",
    "TASKS_AGENT_ADDRESS",
)


class ProcessFailure(AssertionError):
    """A process did not become ready in time, exited early, or misbehaved.

    The message ends with the command, the exit status and the tail of the
    process's stdout and stderr logs.
    """


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment without fabric settings, plus ``extra``.

    ``PYTHONUNBUFFERED`` is set so that ready lines reach the log at once.
    """
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("NO_COLOR", "1")
    if extra:
        env.update(extra)
    return env


async def wait_for(predicate: Callable[[], bool], *, within: float) -> bool:
    """Check ``predicate`` until it holds or ``within`` seconds pass; tell whether it held.

    An exception raised by the predicate ends the wait (and propagates).
    """
    deadline = time.monotonic() + within
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"


def _compile(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern


class ManagedProcess:
    """One command run as a child process, with its output in log files.

    Args:
        name: a short label, used for the log file names.
        argv: the command and its arguments.
        env: the complete environment of the process.
        log_dir: where the logs go: ``<name>.<run>.stdout.log`` / ``.stderr.log``.
        cwd: the working directory (default: the repository root).
        stdin_pipe: give the process a stdin pipe (:meth:`send_stdin`);
            otherwise its stdin is ``/dev/null``.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        cwd: Path = REPO_ROOT,
        stdin_pipe: bool = False,
    ) -> None:
        self.name = name
        self.argv = [os.fspath(arg) for arg in argv]
        self.env = dict(env)
        self.log_dir = log_dir
        self.cwd = cwd
        self.stdin_pipe = stdin_pipe
        self.runs = 0
        self.started_at = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} returncode={self.returncode}>"

    @property
    def stdout_path(self) -> Path:
        """The stdout log of the current (or last) run."""
        return self.log_dir / f"{self.name}.{self.runs}.stdout.log"

    @property
    def stderr_path(self) -> Path:
        """The stderr log of the current (or last) run."""
        return self.log_dir / f"{self.name}.{self.runs}.stderr.log"

    @property
    def pid(self) -> int | None:
        """The process id of the current run, if started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while running (or before the start)."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ManagedProcess:
        """Start a new run with fresh log files (starting does not wait).

        Raises:
            ProcessFailure: the process is already running.
        """
        if self.is_running:
            raise ProcessFailure(f"{self.name} is already running (pid {self.pid})")
        self._close_files()
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = self.stdout_path.open("wb")
        err = self.stderr_path.open("wb")
        self._files = [out, err]
        self.started_at = time.monotonic()
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=self.env,
            cwd=self.cwd,
        )
        return self

    def stdout(self) -> str:
        """What the current run has written to stdout so far."""
        return self.stdout_path.read_text(errors="replace") if self.runs else ""

    def stderr(self) -> str:
        """What the current run has written to stderr so far."""
        return self.stderr_path.read_text(errors="replace") if self.runs else ""

    def output(self, stream: str) -> str:
        """The current run's ``stdout``, ``stderr`` or both (``any``)."""
        if stream == "stdout":
            return self.stdout()
        if stream == "stderr":
            return self.stderr()
        if stream == "any":
            return self.stdout() + "\n" + self.stderr()
        raise ValueError(f"unknown stream {stream!r}: expected stdout, stderr or any")

    def describe(self) -> str:
        """The command, its status and the tail of both logs, for failure messages."""
        if self.is_running:
            status = f"running (pid {self.pid})"
        elif self._proc is None:
            status = "not started"
        else:
            status = f"exited with status {self.returncode}"
        return (
            f"--- {self.name}: {' '.join(self.argv)}\n"
            f"--- status: {status}, run {self.runs}\n"
            f"--- stdout ({self.stdout_path}):\n{_tail(self.stdout_path)}\n"
            f"--- stderr ({self.stderr_path}):\n{_tail(self.stderr_path)}"
        )

    def fail(self, message: str, *others: ManagedProcess) -> ProcessFailure:
        """Return a :class:`ProcessFailure` whose message shows this process's logs (and others')."""
        details = "\n".join(process.describe() for process in (self, *others))
        return ProcessFailure(f"{message}\n{details}")

    def count(self, pattern: str | re.Pattern[str], *, stream: str = "stderr") -> int:
        """Count the matches of ``pattern`` (multi-line mode) in the current run's log."""
        return len(_compile(pattern).findall(self.output(stream)))

    async def wait_for_line(
        self,
        pattern: str | re.Pattern[str],
        *,
        stream: str = "stdout",
        within: float = READY_TIMEOUT,
        what: str | None = None,
    ) -> re.Match[str]:
        """Wait until ``pattern`` (multi-line mode) matches the current run's output.

        Args:
            pattern: a regular expression, e.g. ``r"^READY "``.
            stream: ``stdout``, ``stderr`` or ``any``.
            within: seconds to wait.
            what: what is awaited, for the failure message.

        Raises:
            ProcessFailure: no match in time, or the process exited first.
        """
        compiled = _compile(pattern)
        label = what or repr(compiled.pattern)
        found: list[re.Match[str]] = []

        def matched() -> bool:
            exited = not self.is_running
            match = compiled.search(self.output(stream))
            if match is not None:
                found.append(match)
                return True
            if exited:
                raise self.fail(f"{self.name} exited before printing {label}")
            return False

        if not await wait_for(matched, within=within):
            raise self.fail(f"{self.name} did not print {label} within {within:g} s")
        return found[0]

    async def wait_until(
        self, predicate: Callable[[], bool], *, within: float = READY_TIMEOUT, what: str
    ) -> None:
        """Wait until ``predicate()`` holds while the process keeps running.

        Raises:
            ProcessFailure: the predicate stayed false, or the process exited.
        """

        def holds() -> bool:
            if predicate():
                return True
            if not self.is_running:
                raise self.fail(f"{self.name} exited while waiting until {what}")
            return False

        if not await wait_for(holds, within=within):
            raise self.fail(f"timed out after {within:g} s waiting until {what}")

    async def wait_exit(self, within: float) -> int:
        """Wait for the process to exit and return its status.

        Raises:
            ProcessFailure: it is still running after ``within`` seconds (it is then killed).
        """
        if self._proc is None:
            raise ProcessFailure(f"{self.name} was never started")
        if not await wait_for(lambda: not self.is_running, within=within):
            failure = self.fail(f"{self.name} did not exit within {within:g} s")
            self.kill9()
            raise failure
        self._close_files()
        return self._proc.wait()

    def send_stdin(self, data: bytes, *, close: bool = True) -> None:
        """Write ``data`` to the process's stdin pipe (and close it)."""
        pipe = self._proc.stdin if self._proc is not None else None
        if pipe is None:
            raise ProcessFailure(f"{self.name} has no stdin pipe (start it with stdin_pipe=True)")
        pipe.write(data)
        pipe.flush()
        if close:
            pipe.close()

    def terminate(self) -> None:
        """Send SIGTERM if the process runs (see :meth:`stop` to also wait and kill)."""
        self._signal(signal.SIGTERM)

    async def stop(self, *, grace: float = STOP_GRACE) -> int | None:
        """Stop the process: SIGTERM, then SIGKILL after ``grace`` seconds.

        Returns:
            The exit status (None if it was never started).
        """
        proc = self._proc
        if proc is None:
            return None
        self.terminate()
        if not await wait_for(lambda: proc.poll() is not None, within=max(grace, 0.0)):
            self.kill9()
        self._close_files()
        return proc.wait()

    def kill9(self) -> None:
        """Kill the process with SIGKILL at once and reap it (for fault tests)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait()  # the kernel reaps a SIGKILLed process at once
        self._close_files()

    async def restart(self) -> ManagedProcess:
        """Stop the process (if running) and start it again with the same command."""
        await self.stop()
        return self.start()

    def _signal(self, signum: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def _close_files(self) -> None:
        proc = self._proc
        if proc is not None and proc.stdin is not None and proc.poll() is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for handle in self._files:
            handle.close()
        self._files = []
