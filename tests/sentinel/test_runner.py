"""Running a sentinel: stable default id, stop event, signals and exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import pytest

from famefabric.errors import ConfigurationError
from famefabric.sentinel import Sentinel, default_sentinel_id, run_sentinel, serve_sentinel


def test_the_default_sentinel_id_is_stable_and_depends_on_host_and_port() -> None:
    first = default_sentinel_id(port=8000, hostname="host-a")
    assert first == default_sentinel_id(port=8000, hostname="host-a")
    assert len(first) == 16 and first.isalnum()
    assert first != default_sentinel_id(port=8001, hostname="host-a")
    assert first != default_sentinel_id(port=8000, hostname="host-b")
    assert default_sentinel_id(port=8000) == default_sentinel_id(port=8000)
    assert default_sentinel_id("configured01", port=8000) == "configured01"


def test_a_sentinel_without_an_id_uses_the_default_one() -> None:
    assert Sentinel(port=8123, listen=False).system_id == default_sentinel_id(port=8123)


def test_an_invalid_system_id_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="'a/b' is not valid"):
        Sentinel(system_id="a/b")


async def test_a_busy_port_is_a_configuration_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with Sentinel(system_id="S1", host="127.0.0.1", port=port):
                pass


async def test_serve_sentinel_returns_when_stop_is_set() -> None:
    stop = asyncio.Event()
    stop.set()
    async with asyncio.timeout(5):
        await serve_sentinel(host="127.0.0.1", port=0, system_id="S1", stop=stop)


async def test_serve_forever_returns_after_close() -> None:
    async with Sentinel(system_id="S1", host="127.0.0.1", port=0) as sentinel:
        serving = asyncio.ensure_future(sentinel.serve_forever())
        await asyncio.sleep(0)
        assert not serving.done()
        await sentinel.close()
        async with asyncio.timeout(5):
            await serving


async def test_serve_forever_starts_and_stops_the_sentinel() -> None:
    sentinel = Sentinel(system_id="S1", host="127.0.0.1", port=0)
    async with asyncio.timeout(5), asyncio.TaskGroup() as task_group:
        serving = task_group.create_task(sentinel.serve_forever())
        for _ in range(500):  # until it listens
            if sentinel.port:
                break
            await asyncio.sleep(0.01)
        assert sentinel.port
        await sentinel.close()
        await serving


async def test_a_closed_sentinel_cannot_start_again() -> None:
    sentinel = Sentinel(system_id="S1", host="127.0.0.1", port=0)
    await sentinel.close()
    with pytest.raises(RuntimeError, match="closed"):
        async with sentinel:
            pass


def test_an_unknown_log_level_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="'loud' is not a log level"):
        run_sentinel(log_level="loud")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_sentinel_exits_cleanly_on_a_stop_signal(signum: signal.Signals) -> None:
    code = (
        "from famefabric.sentinel import run_sentinel\n"
        "run_sentinel(host='127.0.0.1', port=0, system_id='sigSentinel')\n"
        "print('returned')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "listening on" in line:
                break
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stdout.strip() == "returned"
    assert "sentinel sigSentinel stopped" in stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_sentinel_takes_port_and_id_from_the_environment() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = "from famefabric import run_sentinel\nrun_sentinel(host='127.0.0.1')\n"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "FAME_LISTENER_PORT": str(port),
        "FAME_NODE_ID": "envSentinel01",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "famefabric.sentinel" in line and "listening on" in line:
                assert f"sentinel envSentinel01 listening on 127.0.0.1:{port}" in line
                break
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
