"""Real processes for end-to-end and interop tests.

Everything here starts genuine operating-system processes on 127.0.0.1 and
waits for them with deadlines, never with a bare sleep:

* :class:`ManagedProcess` runs one command with its stdout and stderr in log
  files (one pair per run, so a restarted process gets fresh files), waits
  for a line, a predicate or its exit, and stops it (SIGTERM, then SIGKILL
  after 5 s), kills it (:meth:`ManagedProcess.kill9`) or restarts it;
* :class:`ProcessPool` owns the processes a fixture started and stops them
  all at teardown;
* :class:`OurSentinel` and :class:`NaylenceSentinel` are sentinels that know
  their port, id and attach URL, and are ready when they can take attaches;
* :func:`run_clients` runs client scenarios (ours or the Naylence
  reference's), several at a time, and returns their JSON reports.

When a wait times out, or a process exits early, the :class:`ProcessFailure`
raised carries the command, the exit status and the tail of both logs, so a
failing test shows what the process said.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
OUR_PYTHON = VENV_BIN / "python"
FAME = VENV_BIN / "fame"
INTEROP_VENV = Path(os.environ.get("FAME_INTEROP_VENV") or REPO_ROOT / ".venv-interop")
INTEROP_PYTHON = INTEROP_VENV / "bin" / "python"
INTEROP_VENV_SCRIPT = REPO_ROOT / "scripts" / "interop-venv.sh"
PEERS_DIR = REPO_ROOT / "tests" / "interop" / "peers"
OUR_AGENTS_DIR = REPO_ROOT / "tests" / "interop" / "agents"

ATTACH_PATH = "/fame/v1/attach/ws/downstream"
HEALTH_PATH = "/fame/v1/attach/health"

READY_TIMEOUT = 30.0
"""Seconds a process may take to become ready (a Naylence peer needs 2 s on an idle machine)."""
STOP_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL."""
POLL_INTERVAL = 0.05
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


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def admission_url(port: int) -> str:
    """Return the ``FAME_DIRECT_ADMISSION_URL`` of a sentinel on 127.0.0.1:``port``."""
    return f"ws://127.0.0.1:{port}{ATTACH_PATH}"


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


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"


def poll(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    interval: float = POLL_INTERVAL,
) -> bool:
    """Call ``predicate`` until it returns True or ``timeout`` seconds pass.

    Returns:
        Whether the predicate became true in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


async def poll_async(
    predicate: Callable[[], bool],
    *,
    within: float,
    interval: float = POLL_INTERVAL,
) -> bool:
    """Like :func:`poll` (``within`` is its ``timeout``), without blocking the event loop."""
    deadline = time.monotonic() + within
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


class ManagedProcess:
    """One command run as a child process, with its output in log files.

    Args:
        name: a short label, used for the log file names.
        argv: the command and its arguments.
        env: the complete environment of the process.
        log_dir: where the logs go: ``<name>.<run>.stdout.log`` / ``.stderr.log``.
        cwd: the working directory (default: the repository root).
        stdin_pipe: give the process a stdin pipe (:meth:`communicate_stdin`);
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

    @property
    def stdin(self) -> IO[bytes] | None:
        """The stdin pipe (only with ``stdin_pipe=True``)."""
        return self._proc.stdin if self._proc is not None else None

    def start(self) -> ManagedProcess:
        """Start a new run with fresh log files.

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

    def _search(self, pattern: re.Pattern[str], stream: str) -> re.Match[str] | None:
        texts = []
        if stream in ("stdout", "any"):
            texts.append(self.stdout())
        if stream in ("stderr", "any"):
            texts.append(self.stderr())
        for text in texts:
            found = pattern.search(text)
            if found is not None:
                return found
        return None

    def count(self, pattern: str | re.Pattern[str], *, stream: str = "stderr") -> int:
        """Count the matches of ``pattern`` (multi-line mode) in the current run's log."""
        compiled = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        text = self.stdout() if stream == "stdout" else self.stderr()
        if stream == "any":
            text = self.stdout() + "\n" + self.stderr()
        return len(compiled.findall(text))

    def wait_for_line(
        self,
        pattern: str | re.Pattern[str],
        *,
        stream: str = "stdout",
        timeout: float = READY_TIMEOUT,
        what: str | None = None,
    ) -> re.Match[str]:
        """Wait until ``pattern`` (multi-line mode) matches the output of the current run.

        Args:
            pattern: a regular expression, e.g. ``r"^READY "``.
            stream: ``stdout``, ``stderr`` or ``any``.
            timeout: seconds to wait.
            what: what is awaited, for the failure message.

        Raises:
            ProcessFailure: no match in time, or the process exited first.
        """
        compiled = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        found: list[re.Match[str]] = []

        def matched() -> bool:
            exited = not self.is_running
            match = self._search(compiled, stream)
            if match is not None:
                found.append(match)
                return True
            if exited:
                raise self.fail(f"{self.name} exited before printing {what or compiled.pattern!r}")
            return False

        if not poll(matched, timeout=timeout):
            raise self.fail(
                f"{self.name} did not print {what or compiled.pattern!r} within {timeout:g} s"
            )
        return found[0]

    async def wait_for_line_async(
        self,
        pattern: str | re.Pattern[str],
        *,
        stream: str = "stdout",
        within: float = READY_TIMEOUT,
        what: str | None = None,
    ) -> re.Match[str]:
        """Like :meth:`wait_for_line` (``within`` is its ``timeout``), without blocking the loop."""
        compiled = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        found: list[re.Match[str]] = []

        def matched() -> bool:
            exited = not self.is_running
            match = self._search(compiled, stream)
            if match is not None:
                found.append(match)
                return True
            if exited:
                raise self.fail(f"{self.name} exited before printing {what or compiled.pattern!r}")
            return False

        if not await poll_async(matched, within=within):
            raise self.fail(
                f"{self.name} did not print {what or compiled.pattern!r} within {within:g} s"
            )
        return found[0]

    def wait_until(
        self, predicate: Callable[[], bool], *, timeout: float = READY_TIMEOUT, what: str
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

        if not poll(holds, timeout=timeout):
            raise self.fail(f"timed out after {timeout:g} s waiting until {what}")

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit and return its status.

        Raises:
            ProcessFailure: it is still running after ``timeout`` seconds (it is then killed).
        """
        if self._proc is None:
            raise ProcessFailure(f"{self.name} was never started")
        try:
            status = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            failure = self.fail(f"{self.name} did not exit within {timeout:g} s")
            self.kill9()
            raise failure from None
        self._close_files()
        return status

    def send_stdin(self, data: bytes, *, close: bool = True) -> None:
        """Write ``data`` to the process's stdin pipe (and close it)."""
        pipe = self.stdin
        if pipe is None:
            raise ProcessFailure(f"{self.name} has no stdin pipe (start it with stdin_pipe=True)")
        pipe.write(data)
        pipe.flush()
        if close:
            pipe.close()

    def terminate(self) -> None:
        """Send SIGTERM if the process runs (see :meth:`stop` to also wait and kill)."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, *, grace: float = STOP_GRACE) -> int | None:
        """Stop the process: SIGTERM, then SIGKILL after ``grace`` seconds.

        Returns:
            The exit status (None if it was never started).
        """
        proc = self._proc
        if proc is None:
            return None
        self.terminate()
        try:
            proc.wait(timeout=max(grace, 0.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._close_files()
        return proc.returncode

    def kill9(self) -> None:
        """Kill the process with SIGKILL at once and reap it (for fault tests)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self._close_files()

    def restart(self) -> ManagedProcess:
        """Stop the process (if running) and start it again with the same command."""
        self.stop()
        return self.start()

    def _close_files(self) -> None:
        if (
            self._proc is not None
            and self._proc.stdin is not None
            and self._proc.poll() is not None
        ):
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        for handle in self._files:
            handle.close()
        self._files = []


def kill9(process: ManagedProcess) -> None:
    """Kill ``process`` with SIGKILL at once and reap it (for fault tests)."""
    process.kill9()


def restart(process: ManagedProcess) -> ManagedProcess:
    """Stop ``process`` (SIGTERM, then SIGKILL) and start it again with the same command."""
    return process.restart()


SentinelT = TypeVar("SentinelT", bound="_Sentinel")


class ProcessPool:
    """The processes one fixture started; :meth:`stop_all` ends them all.

    Args:
        log_dir: where every process's logs go (under pytest's tmp_path).
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []
        self._names: dict[str, int] = {}

    def _unique(self, name: str) -> str:
        count = self._names.get(name, 0) + 1
        self._names[name] = count
        return name if count == 1 else f"{name}-{count}"

    def spawn(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        stdin_pipe: bool = False,
        start: bool = True,
    ) -> ManagedProcess:
        """Create a process owned by the pool (and start it, by default).

        Args:
            name: a label; made unique within the pool.
            argv: the command.
            env: variables added to :func:`base_env`.
            stdin_pipe: give the process a stdin pipe.
            start: start it now.
        """
        process = ManagedProcess(
            self._unique(name),
            argv,
            env=base_env(env),
            log_dir=self.log_dir,
            stdin_pipe=stdin_pipe,
        )
        self.processes.append(process)
        if start:
            process.start()
        return process

    def our_sentinel(
        self, *, node_id: str = "ourSentinel01", name: str = "our-sentinel", wait: bool = True
    ) -> OurSentinel:
        """Start our sentinel (``fame sentinel``) on a free port.

        Args:
            node_id: its system id.
            name: label for logs.
            wait: wait until it is healthy (else call ``start()`` later to wait).
        """
        return self._adopt(OurSentinel(self, node_id=node_id, name=self._unique(name)), wait)

    def naylence_sentinel(
        self, *, node_id: str = "refSentinel01", name: str = "naylence-sentinel", wait: bool = True
    ) -> NaylenceSentinel:
        """Start the Naylence reference sentinel on a free port.

        Args:
            node_id: its system id.
            name: label for logs.
            wait: wait for its ready line (else call ``start()`` later to wait).
        """
        return self._adopt(NaylenceSentinel(self, node_id=node_id, name=self._unique(name)), wait)

    def _adopt(self, sentinel: SentinelT, wait: bool) -> SentinelT:
        self.processes.append(sentinel.process)
        sentinel.start() if wait else sentinel.launch()
        return sentinel

    def stop_all(self) -> None:
        """Stop every process: SIGTERM to all at once, SIGKILL to those alive 5 s later."""
        for process in reversed(self.processes):
            process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for process in reversed(self.processes):
            process.stop(grace=deadline - time.monotonic())


def read_health(port: int, *, timeout: float = 1.0) -> dict[str, Any] | None:
    """GET the attach health endpoint; the JSON body when it answers 200, else None."""
    url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status != 200:
                return None
            body = json.loads(response.read() or b"{}")
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return body if isinstance(body, dict) else {}


class _Sentinel:
    """What both sentinels share: a port, an id, an attach URL, a process."""

    kind = "sentinel"

    def __init__(self, pool: ProcessPool, *, node_id: str, name: str) -> None:
        self.pool = pool
        self.node_id = node_id
        self.port = free_port()
        self.process = ManagedProcess(
            name, self._argv(), env=base_env(self._env()), log_dir=pool.log_dir
        )

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return {}

    @property
    def admission_url(self) -> str:
        """The ``FAME_DIRECT_ADMISSION_URL`` for nodes of this sentinel."""
        return admission_url(self.port)

    def node_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment variables that attach a node to this sentinel."""
        env = {"FAME_DIRECT_ADMISSION_URL": self.admission_url}
        if extra:
            env.update(extra)
        return env

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        raise NotImplementedError

    def launch(self) -> None:
        """Start the sentinel's process without waiting (then call :meth:`wait_ready`)."""
        self.process.start()

    def start(self, *, timeout: float = READY_TIMEOUT) -> None:
        """Start the sentinel and wait until it takes attaches.

        A port taken between choosing it and binding it is replaced by
        another free one (only on the first start: a restart keeps its port).
        """
        for attempt in range(3):
            if not self.process.is_running:
                self.process.start()
            try:
                self.wait_ready(timeout)
                return
            except ProcessFailure:
                port_taken = not self.process.is_running and "in use" in self.process.stderr()
                if not port_taken or attempt == 2:
                    self.process.stop()
                    raise
            self.port = free_port()
            self.process.argv = self._argv()
            self.process.env = base_env(self._env())

    def stop(self) -> None:
        """Stop the sentinel (SIGTERM, then SIGKILL)."""
        self.process.stop()

    def restart(self, *, timeout: float = READY_TIMEOUT) -> None:
        """Stop the sentinel and start it again with the same id on the same port."""
        self.process.stop()
        self.process.start()
        self.wait_ready(timeout)


class OurSentinel(_Sentinel):
    """Our sentinel, ``fame sentinel --host 127.0.0.1 --port P --node-id ID``.

    Ready when ``GET /fame/v1/attach/health`` answers 200; its JSON body
    counts attached ``nodes`` and bound ``addresses``.
    """

    kind = "ours"

    def _argv(self) -> list[str]:
        return [
            os.fspath(FAME),
            "sentinel",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--node-id",
            self.node_id,
        ]

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the health endpoint answers 200.

        Raises:
            ProcessFailure: it did not, in time, or the process exited.
        """
        self.process.wait_until(
            lambda: read_health(self.port) is not None,
            timeout=timeout,
            what=f"GET {HEALTH_PATH} on port {self.port} answers 200",
        )

    def wait_health(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        what: str,
        timeout: float = READY_TIMEOUT,
    ) -> dict[str, Any]:
        """Wait until the health JSON satisfies ``predicate``; return it."""
        seen: list[dict[str, Any]] = []

        def holds() -> bool:
            body = read_health(self.port)
            if body is None:
                return False
            seen.append(body)
            return predicate(body)

        self.process.wait_until(holds, timeout=timeout, what=what)
        return seen[-1]

    def bound_count(self, address: str) -> int:
        """How many binds of ``address`` the current run has logged."""
        return self.process.count(rf"node \S+ bound {re.escape(address)}$")

    def wait_bound(
        self,
        address: str,
        *,
        count: int = 1,
        timeout: float = READY_TIMEOUT,
        after: ManagedProcess | None = None,
    ) -> None:
        """Wait until the sentinel has logged ``count`` binds of ``address`` in this run.

        Args:
            address: the logical address.
            count: how many binds (one per binding node) to wait for.
            timeout: seconds to wait.
            after: an agent process whose logs go into the failure message, and
                whose exit fails the wait at once.
        """

        def holds() -> bool:
            if after is not None and not after.is_running:
                raise after.fail(f"{after.name} exited before binding {address}", self.process)
            return self.bound_count(address) >= count

        if not poll(holds, timeout=timeout):
            others = (after,) if after is not None else ()
            raise self.process.fail(
                f"sentinel did not log {count} bind(s) of {address} within {timeout:g} s", *others
            )


class NaylenceSentinel(_Sentinel):
    """The Naylence reference sentinel (``tests/interop/peers/naylence_sentinel.py``).

    Ready when it prints ``READY sentinel ...``.
    """

    kind = "naylence"

    def _argv(self) -> list[str]:
        return [os.fspath(INTEROP_PYTHON), os.fspath(PEERS_DIR / "naylence_sentinel.py")]

    def _env(self) -> dict[str, str]:
        return {"FAME_LISTENER_PORT": str(self.port), "FAME_NODE_ID": self.node_id}

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait for the ``READY sentinel`` line."""
        self.process.wait_for_line(r"^READY sentinel ", timeout=timeout, what="its READY line")


Sentinel = OurSentinel | NaylenceSentinel


@dataclass(frozen=True)
class AgentSpec:
    """How to start one agent process and know it is ready.

    Attributes:
        name: label for logs.
        argv: the command.
        env: extra environment (the sentinel's admission URL is added).
        ready: a regular expression its output matches once it serves.
        stream: where ``ready`` is looked for: ``stdout``, ``stderr`` or ``any``.
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ready: str = r"^READY "
    stream: str = "stdout"


def naylence_echo_agent(address: str, *, tasks_address: str | None = None) -> AgentSpec:
    """The Naylence echo agent at ``address`` (and a tasks agent at ``tasks_address``)."""
    argv = [os.fspath(INTEROP_PYTHON), os.fspath(PEERS_DIR / "naylence_echo_agent.py"), address]
    argv += ["--tasks-address", tasks_address] if tasks_address else ["--no-tasks"]
    return AgentSpec(name=f"naylence-{address.split('@')[0]}", argv=tuple(argv))


def our_echo_agent(address: str, *, tasks_address: str | None = None) -> AgentSpec:
    """Our echo agent at ``address`` (and our tasks agent at ``tasks_address``)."""
    argv = [os.fspath(OUR_PYTHON), os.fspath(OUR_AGENTS_DIR / "our_echo_agent.py"), address]
    argv += ["--tasks-address", tasks_address] if tasks_address else ["--no-tasks"]
    return AgentSpec(name=f"our-{address.split('@')[0]}", argv=tuple(argv))


def naylence_chat_agent(address: str, llm_url: str) -> AgentSpec:
    """The Naylence chat agent at ``address``, using the stub LLM at ``llm_url``."""
    return AgentSpec(
        name=f"naylence-{address.split('@')[0]}",
        argv=(os.fspath(INTEROP_PYTHON), os.fspath(PEERS_DIR / "naylence_chat_agent.py"), address),
        env={"OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "test", "MODEL_NAME": "test"},
    )


def our_chat_agent(address: str, llm_url: str) -> AgentSpec:
    """Our ``fame agent chat`` at ``address`` with an in-memory store and the stub LLM.

    Ready when it logs that it serves the address (after the bind is acknowledged).
    """
    return AgentSpec(
        name=f"our-{address.split('@')[0]}",
        argv=(os.fspath(FAME), "agent", "chat", "--address", address),
        env={
            "OPENAI_BASE_URL": llm_url,
            "OPENAI_API_KEY": "test",
            "MODEL_NAME": "test",
            "CHAT_STORE": "memory://",
            "FAME_LOG_LEVEL": "info",
        },
        ready=rf"serving {re.escape(address)}\s*$",
        stream="stderr",
    )


def start_agents(
    pool: ProcessPool,
    sentinel: _Sentinel,
    specs: Iterable[AgentSpec],
    *,
    timeout: float = READY_TIMEOUT,
) -> list[ManagedProcess]:
    """Start agents attached to ``sentinel`` all at once, then wait until each is ready.

    Raises:
        ProcessFailure: an agent did not become ready (its logs and the
            sentinel's are in the message).
    """
    started = [
        (spec, pool.spawn(spec.name, spec.argv, env=sentinel.node_env(dict(spec.env))))
        for spec in specs
    ]
    for spec, process in started:
        try:
            process.wait_for_line(spec.ready, stream=spec.stream, timeout=timeout, what="ready")
        except ProcessFailure as exc:
            raise ProcessFailure(f"{exc}\n{sentinel.process.describe()}") from None
    return [process for _, process in started]


@dataclass(frozen=True)
class ClientJob:
    """One client scenario run: who runs it, against which sentinel and address.

    Attributes:
        client: ``ours`` or ``naylence``.
        scenario: the scenario name (see the client scripts).
        sentinel: the sentinel to attach to.
        address: the target address (None: the scenario's default).
        timeout: seconds per call.
        extra_args: further command-line arguments.
        env: extra environment variables.
    """

    client: str
    scenario: str
    sentinel: _Sentinel
    address: str | None = None
    timeout: float = 10.0
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """The command that runs this job."""
        if self.client == "ours":
            script = [os.fspath(OUR_PYTHON), os.fspath(OUR_AGENTS_DIR / "our_client.py")]
        elif self.client == "naylence":
            script = [os.fspath(INTEROP_PYTHON), os.fspath(PEERS_DIR / "naylence_client.py")]
        else:
            raise ValueError(f"unknown client {self.client!r}: expected 'ours' or 'naylence'")
        args = [self.scenario]
        if self.address:
            args.append(self.address)
        return [*script, *args, "--timeout", f"{self.timeout:g}", *self.extra_args]


@dataclass
class ClientRun:
    """A finished client run: its report, its process and how long it took."""

    job: ClientJob
    process: ManagedProcess
    report: dict[str, Any]
    wall: float

    def step(self, name: str) -> dict[str, Any]:
        """The step called ``name`` in the report.

        Raises:
            ProcessFailure: the report has no such step.
        """
        for step in self.report.get("steps", []):
            if step.get("step") == name:
                return dict(step)
        raise self.process.fail(
            f"{self.job.client} client report for {self.job.scenario!r} has no step {name!r}: "
            f"{json.dumps(self.report)[:2000]}"
        )

    @property
    def steps(self) -> list[dict[str, Any]]:
        """All steps of the report."""
        return list(self.report.get("steps", []))


def _parse_report(process: ManagedProcess) -> dict[str, Any]:
    lines = [line for line in process.stdout().splitlines() if line.strip()]
    if not lines:
        raise process.fail(f"{process.name} printed no report")
    try:
        report = json.loads(lines[-1])
    except ValueError:
        raise process.fail(f"{process.name} printed no JSON report on its last line") from None
    if not isinstance(report, dict) or "steps" not in report:
        raise process.fail(f"{process.name} printed an unexpected report: {lines[-1][:500]}")
    if report.get("error"):
        raise process.fail(f"{process.name} could not run its scenario: {report['error']}")
    return report


def run_clients(
    pool: ProcessPool,
    jobs: Sequence[ClientJob],
    *,
    parallel: int = 6,
    timeout: float = 90.0,
) -> list[ClientRun]:
    """Run client scenarios, up to ``parallel`` at a time; return their runs in job order.

    Args:
        pool: owns the client processes.
        jobs: what to run.
        parallel: how many clients run at once.
        timeout: seconds each client may take.

    Raises:
        ProcessFailure: a client did not finish in time, exited with an error
            or printed no report.
    """
    runs: list[ClientRun | None] = [None] * len(jobs)
    waiting = list(enumerate(jobs))
    active: list[tuple[int, ClientJob, ManagedProcess]] = []
    while waiting or active:
        while waiting and len(active) < parallel:
            index, job = waiting.pop(0)
            name = f"{job.client}-client-{job.scenario}"
            process = pool.spawn(name, job.argv(), env=job.sentinel.node_env(dict(job.env)))
            active.append((index, job, process))
        still: list[tuple[int, ClientJob, ManagedProcess]] = []
        for index, job, process in active:
            if process.is_running:
                if time.monotonic() - process.started_at > timeout:
                    failure = process.fail(f"{process.name} did not finish within {timeout:g} s")
                    process.kill9()
                    raise failure
                still.append((index, job, process))
                continue
            wall = time.monotonic() - process.started_at
            status = process.wait_exit(timeout=1.0)
            if status != 0:
                raise process.fail(f"{process.name} exited with status {status}")
            runs[index] = ClientRun(job, process, _parse_report(process), wall)
        active = still
        if active:
            time.sleep(POLL_INTERVAL)
    return [run for run in runs if run is not None]


def check_interop_venv(*, timeout: float = 900.0) -> tuple[int, str]:
    """Run ``scripts/interop-venv.sh``; return its exit status and its output.

    Exit status 3 means no Python >= 3.12 was found (see the script).
    """
    try:
        done = subprocess.run(
            ["bash", os.fspath(INTEROP_VENV_SCRIPT)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 4, f"{INTEROP_VENV_SCRIPT} did not finish within {timeout:g} s"
    return done.returncode, (done.stdout + done.stderr).strip()
