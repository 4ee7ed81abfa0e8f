"""Fixtures for the chat tests: a real Redis server on 127.0.0.1.

``redis_url`` is one server for the whole session; ``redis_server`` is the same
server as an object that can be stopped and started again on its port;
``private_redis_server`` is a server of the test's own, for tests that stop it.

redis-server is found (or installed, as root, from Debian's packages) by
``scripts/ensure-redis.sh``. When it cannot be had, the Redis tests are
skipped, unless ``CI`` or ``FAME_REQUIRE_REDIS=1`` is set: then they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from famefabric.testing import free_port

ENSURE_REDIS = Path(__file__).resolve().parents[2] / "scripts" / "ensure-redis.sh"
REDIS_START_TIMEOUT = 10.0


def is_redis_required() -> bool:
    """Tell whether a missing redis-server must fail the tests rather than skip them."""
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get("FAME_REQUIRE_REDIS") == "1"


def answers_ping(port: int) -> bool:
    """Tell whether a Redis server on 127.0.0.1:``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` subprocess without persistence, on 127.0.0.1.

    :meth:`stop` and :meth:`start` may be called any number of times; the
    server always comes back on the same port, empty, which is what a Redis
    restart looks like to its clients.

    Args:
        binary: the path of redis-server.
        port: the TCP port to listen on.
        workdir: where the server's log goes.
    """

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.log_path = workdir / f"redis-{port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers PING.

        Raises:
            RuntimeError: it exited, or did not answer within 10 s.
        """
        if self.is_running:
            return
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.log_path.parent),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not answers_ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"redis-server on port {self.port} did not start within "
                    f"{REDIS_START_TIMEOUT:.0f} s; its output:\n{output}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server, if running, and wait for it to exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop the server and start it again on the same port, empty."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """The path of redis-server, installed by scripts/ensure-redis.sh if need be."""
    try:
        found = subprocess.run(
            ["bash", str(ENSURE_REDIS)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        problem = f"{ENSURE_REDIS.name} did not finish within 600 s"
    else:
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip().splitlines()[-1]
        problem = found.stderr.strip() or f"{ENSURE_REDIS.name} exited with {found.returncode}"
    message = (
        f"redis-server is not available ({problem}); install it with "
        "'apt-get install redis-server' (scripts/ensure-redis.sh does it when run as root) "
        "or set FAME_REDIS_SERVER to its path"
    )
    if is_redis_required():
        pytest.fail(message + "; CI or FAME_REQUIRE_REDIS=1 requires the Redis tests to run")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server(
    redis_server_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """One Redis server for the session; a test that stops it must start it again."""
    server = RedisServer(redis_server_binary, free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's Redis server, database 0."""
    return redis_server.url


@pytest.fixture
def private_redis_server(redis_server_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server for this test alone, free to stop and restart."""
    server = RedisServer(redis_server_binary, free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
