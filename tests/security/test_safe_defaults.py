"""Safe defaults: loopback without auth, --insecure, credentials files, private stores, no secrets in logs."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from support.pool import ProcessPool
from support.procs import FAME, REPO_ROOT, base_env
from support.sentinels import LISTENING

from famefabric.chat.stores._contract import redact_url
from famefabric.chat.stores.sqlite import SQLiteConversationStore
from famefabric.errors import ConfigurationError
from famefabric.security import TokenVerifier
from famefabric.sentinel.admission import is_loopback, listening_host

SECRET = "d" * 40


def test_listening_host_policy(caplog: pytest.LogCaptureFixture) -> None:
    assert listening_host(None, authenticated=False) == "127.0.0.1"
    assert listening_host(None, authenticated=True) == "0.0.0.0"
    assert listening_host("::1", authenticated=False) == "::1"
    assert listening_host("10.0.0.5", authenticated=True) == "10.0.0.5"
    with pytest.raises(ConfigurationError, match=r"refusing to listen on 0\.0\.0\.0 without auth"):
        listening_host("0.0.0.0", authenticated=False)
    with caplog.at_level("WARNING"):
        assert listening_host("0.0.0.0", authenticated=False, insecure=True) == "0.0.0.0"
    assert "INSECURE" in caplog.text
    assert is_loopback("127.0.0.2") and is_loopback("localhost") and not is_loopback("0.0.0.0")


async def test_the_sentinel_process_refuses_to_expose_itself_without_auth(
    processes: ProcessPool,
) -> None:
    refused = processes.spawn("exposed", [FAME, "sentinel", "--host", "0.0.0.0", "--port", "0"])
    assert await refused.wait_exit(within=30) == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in refused.stderr()

    default = processes.spawn("default", [FAME, "sentinel", "--port", "0"])
    line = await default.wait_for_line(LISTENING, stream="stderr", within=30, what="listening")
    assert " listening on 127.0.0.1:" in line.group(0)
    assert "open mode" in default.stderr()

    insecure = processes.spawn(
        "insecure", [FAME, "sentinel", "--host", "0.0.0.0", "--port", "0", "--insecure"]
    )
    await insecure.wait_for_line(LISTENING, stream="stderr", within=30, what="listening")
    assert "WARNING famefabric.sentinel.admission: INSECURE" in insecure.stderr()

    authed = processes.spawn(
        "authed", [FAME, "sentinel", "--port", "0"], env={"FAME_AUTH_SECRET": SECRET}
    )
    line = await authed.wait_for_line(LISTENING, stream="stderr", within=30, what="listening")
    assert " listening on 0.0.0.0:" in line.group(0)
    assert "tokens required" in authed.stderr() and SECRET not in authed.stderr()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_script_creates_private_files_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    script = REPO_ROOT / "scripts" / "credentials.sh"
    first = subprocess.run(
        ["bash", str(script), str(run_dir)],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    secret = (run_dir / "auth-secret").read_text().strip()
    assert len(secret) == 64 and secret not in first.stdout + first.stderr
    files = [run_dir / "auth-secret", run_dir / "compose.env"] + [
        run_dir / "tokens" / f"{name}.token" for name in ("agent", "chat", "admin")
    ]
    assert all(_mode(path) == 0o600 for path in files), {str(p): oct(_mode(p)) for p in files}
    verifier = TokenVerifier.from_env({}, secret_file=str(run_dir / "auth-secret"))
    assert verifier is not None
    agent = verifier.verify((run_dir / "tokens" / "agent.token").read_text().strip())
    chat = verifier.verify((run_dir / "tokens" / "chat.token").read_text().strip())
    admin = verifier.verify((run_dir / "tokens" / "admin.token").read_text().strip())
    assert agent.may_serve("chat@fame.fabric") and not agent.may_call("chat@fame.fabric")
    assert chat.may_call("chat@fame.fabric") and not chat.may_serve("chat@fame.fabric")
    assert admin.admin and not chat.admin and not agent.admin
    env_file = (run_dir / "compose.env").read_text()
    assert f"FAME_AUTH_SECRET={secret}\n" in env_file and "FAME_AGENT_TOKEN=" in env_file

    before = {path: path.read_bytes() for path in files}
    again = subprocess.run(
        ["bash", str(script), str(run_dir)],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and again.stdout == ""
    assert {path: path.read_bytes() for path in files} == before


async def test_a_new_sqlite_store_and_an_old_readable_one_are_private(tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    async with SQLiteConversationStore(path) as store:
        await store.list_ids(limit=1)
    assert _mode(path) == 0o600
    os.chmod(path, 0o644)
    async with SQLiteConversationStore(path) as store:
        await store.list_ids(limit=1)
    assert _mode(path) == 0o600


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://app:hunter2@h/0", "redis://app:***@h/0"),
        ("rediss://h:6380/0?password=hunter2&ssl_cert_reqs=none", "?password=***&ssl"),
        ("sqlite:///data/c.db", "sqlite:///data/c.db"),
    ],
)
def test_store_urls_are_logged_without_their_password(url: str, shown: str) -> None:
    assert shown in redact_url(url) and "hunter2" not in redact_url(url)


async def test_the_agent_start_up_line_masks_the_redis_password(
    processes: ProcessPool,
) -> None:
    agent = processes.spawn(
        "agent",
        [FAME, "agent", "chat", "--store", "redis://:hunter2@127.0.0.1:1/0"],
        env={"FAME_DIRECT_ADMISSION_URL": "ws://127.0.0.1:1/fame/v1/attach/ws/downstream"},
    )
    await agent.wait_exit(within=60)
    output = agent.stderr() + agent.stdout()
    assert "redis://:***@127.0.0.1:1/0" in output
    assert "hunter2" not in output


def test_configuration_errors_never_echo_a_secret() -> None:
    with pytest.raises(ConfigurationError) as info:
        TokenVerifier.from_env({"FAME_AUTH_SECRET": "tooshort-secret"})
    assert "tooshort-secret" not in str(info.value)
