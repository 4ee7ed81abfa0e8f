"""``make start/stop/status/run`` and scripts/services.sh, run for real with a temporary .run dir.

Each test gets its own run directory and free ports, so it never touches the
developer's services; the services are local processes (``FAME_SERVICES=local``)
with the built-in echo LLM, and are stopped at teardown.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from support.procs import REPO_ROOT, base_env

from famefabric.testing import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCRIPT = str(REPO_ROOT / "scripts" / "services.sh")


class Services:
    """One test's services: its run directory, ports and environment."""

    def __init__(self, run_dir: Path, data_dir: Path) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self.llm_port = free_port()
        self.gateway_port = free_port()
        self.env = base_env(
            {
                "FAME_RUN_DIR": str(run_dir),
                "FAME_SERVICES": "local",
                "FAME_LISTENER_PORT": str(self.port),
                "FAME_DEMO_LLM_PORT": str(self.llm_port),
                "FAME_GATEWAY_PORT": str(self.gateway_port),
                "FAME_DEMO_TOKEN_DELAY": "0.03",
                "FAME_DATA_DIR": str(data_dir),
                "TERM": "dumb",
            }
        )

    def run(
        self, *args: str, env: dict[str, str] | None = None, input: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """Run the script (or ``make`` when args start with ``make``) and return the result."""
        command = list(args) if args[0] == "make" else [SCRIPT, *args]
        return subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env or self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def pid(self, name: str) -> int:
        return int((self.run_dir / f"{name}.pid").read_text())

    def health(self, port: int | None = None) -> dict[str, object]:
        url = f"http://127.0.0.1:{port or self.port}/fame/v1/attach/health"
        with urllib.request.urlopen(url, timeout=2) as response:
            health: dict[str, object] = json.load(response)
        return health


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = Services(tmp_path / "run", tmp_path / "data")
    try:
        yield svc
    finally:
        svc.run("stop")


def test_start_runs_services_in_their_own_session_and_status_remembers_the_port(
    services: Services,
) -> None:
    started = services.run("make", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Ctrl-C here does not stop them" in started.stdout
    assert f"ws://127.0.0.1:{services.port}/fame/v1/attach/ws/downstream" in started.stdout
    assert f"http://127.0.0.1:{services.llm_port}/v1" in started.stdout
    for name in ("sentinel", "agent", "llm"):
        pid = services.pid(name)
        assert alive(pid)
        assert os.getsid(pid) == pid, f"{name} is not a session leader"
        assert os.getsid(pid) != os.getsid(0)
    assert services.health()["addresses"] == 1

    # Neither `make status` nor `make chat` is told the port again: they read the one used.
    without_port = {k: v for k, v in services.env.items() if k != "FAME_LISTENER_PORT"}
    status = services.run("make", "status", env=without_port)
    assert status.returncode == 0, status.stderr
    assert f"sentinel on port {services.port}:" in status.stdout
    assert '"status":"healthy"' in status.stdout.replace(" ", "")
    chat = services.run("make", "chat", env=without_port, input="hello\n")
    assert chat.returncode == 0, chat.stdout + chat.stderr
    assert "A> echo(2): hello" in chat.stdout
    # The health checks of start and status are not logged at INFO; the binding is.
    sentinel_log = (services.run_dir / "sentinel.log").read_text()
    assert "HTTP response sent" not in sentinel_log
    assert "bound chat@fame.fabric" in sentinel_log

    stopped = services.run("make", "stop", env=without_port)
    assert stopped.returncode == 0
    assert "stopped sentinel" in stopped.stdout
    assert not any(alive(p) for p in _known_pids(services))


def _known_pids(services: Services) -> list[int]:
    return [int(p.read_text()) for p in services.run_dir.glob("*.pid")]


def test_ctrl_c_in_make_run_at_the_prompt_and_mid_reply_leaves_the_services_running(
    services: Services,
) -> None:
    child = pexpect.spawn(
        "make", ["run"], cwd=str(REPO_ROOT), env=services.env, encoding="utf-8", timeout=40
    )
    try:
        child.expect_exact("Q> ")
        pids = {name: services.pid(name) for name in ("sentinel", "agent", "llm")}
        child.sendline(" ".join(f"word{i}" for i in range(400)))
        child.expect_exact("A> echo(")  # the reply, not the terminal's echo of the question
        child.expect("word5 ")
        child.sendintr()
        child.expect_exact("[stopped]")
        child.expect_exact("Q> ")
        child.sendline("still there?")
        child.expect_exact("still there?\r\n")
        child.expect_exact("Q> ")
        child.sendintr()
        child.expect_exact("goodbye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
    time.sleep(0.3)  # a SIGINT that reached them would have stopped them by now
    assert all(alive(pid) for pid in pids.values()), pids
    assert services.health()["addresses"] == 1
    assert "received SIGINT" not in (services.run_dir / "sentinel.log").read_text()


def test_start_refuses_a_port_in_use_and_says_what_holds_it(services: Services) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", services.port))
        holder.listen()
        result = services.run("start")
    assert result.returncode == 1
    assert f"port {services.port} (for the sentinel) is in use by" in result.stderr
    assert "FAME_LISTENER_PORT=<port>" in result.stderr
    assert "started" not in result.stdout
    assert f"pid={os.getpid()}" in result.stderr or "another program" in result.stderr


def test_a_second_start_with_other_settings_says_they_are_not_used(services: Services) -> None:
    assert services.run("start").returncode == 0
    again = services.run(
        "start", env={**services.env, "MODEL_NAME": "gpt-x", "OPENAI_API_KEY": "sk-secret-value"}
    )
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert "MODEL_NAME=gpt-x (running: echo)" in again.stderr
    assert "LLM openai (running: echo)" in again.stderr
    assert "make restart" in again.stderr
    assert "sk-secret-value" not in again.stdout + again.stderr
    assert "sk-secret-value" not in (services.run_dir / "settings").read_text()
    same = services.run("start")
    assert "warning" not in same.stderr


def test_status_after_an_exited_service_says_so(services: Services) -> None:
    assert services.run("start").returncode == 0
    agent = services.pid("agent")
    os.kill(agent, 9)
    deadline = time.monotonic() + 10
    while alive(agent) and time.monotonic() < deadline:
        time.sleep(0.05)
    status = services.run("status")
    assert "agent: NOT running (exited; see" in status.stdout
    assert "sentinel: running" in status.stdout


def test_make_clean_stops_the_services_before_removing_anything() -> None:
    result = subprocess.run(
        ["make", "-n", "clean"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    # Under `make test` a nested make adds "make[1]: Entering directory" lines.
    lines = [line for line in result.stdout.splitlines() if not line.startswith("make")]
    assert lines[0].endswith("scripts/services.sh stop"), lines
    assert any(line.startswith("rm -rf") for line in lines[1:])


def test_gitignore_covers_what_a_repo_local_redis_writes() -> None:
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert {"dump.rdb", "appendonlydir/"} <= set(ignored)
