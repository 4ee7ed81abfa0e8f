"""The connection limit (HTTP 503 beyond it), the listen backlog and the open-file fit."""

from __future__ import annotations

import asyncio
import resource
import socket
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus

from famefabric.cli import main
from famefabric.errors import AttachRefused, ConfigurationError
from famefabric.node import Node
from famefabric.protocol.frames import Data, Envelope
from famefabric.sentinel import Sentinel
from famefabric.sentinel.admission_limits import (
    DEFAULT_MAX_CONNECTIONS,
    FILE_RESERVE,
    AdmissionLimits,
    ConnectionGate,
    fit_open_files,
    system_backlog,
)
from famefabric.sentinel.limits import SentinelLimits

S = "admissionSentinel"
WAIT = 5.0
ATTACH = "/fame/v1/attach/ws/downstream"


def test_defaults_are_ten_thousand_connections_and_the_system_backlog(tmp_path: Path) -> None:
    limits = AdmissionLimits.from_env({})
    assert limits.max_connections == DEFAULT_MAX_CONNECTIONS == 10_000
    assert limits.backlog == system_backlog()
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("4096\n")
    assert system_backlog(somaxconn) == 4096
    assert system_backlog(tmp_path / "missing") == socket.SOMAXCONN


def test_flags_win_over_the_environment() -> None:
    env = {"FAME_SENTINEL_MAX_CONNECTIONS": "7", "FAME_SENTINEL_BACKLOG": "50"}
    assert AdmissionLimits.from_env(env) == AdmissionLimits(max_connections=7, backlog=50)
    assert AdmissionLimits.from_env(env, max_connections=3).max_connections == 3
    assert AdmissionLimits.from_env(env, backlog=9).backlog == 9


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FAME_SENTINEL_MAX_CONNECTIONS": "lots"}, "FAME_SENTINEL_MAX_CONNECTIONS='lots'"),
        ({"FAME_SENTINEL_MAX_CONNECTIONS": "0"}, "max_connections must be a positive integer"),
        ({"FAME_SENTINEL_BACKLOG": "-1"}, "backlog must be a positive integer"),
    ],
)
def test_bad_settings_are_refused_with_their_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AdmissionLimits.from_env(env)


def test_the_gate_refuses_beyond_its_limit_and_forgets_closed_connections() -> None:
    closed: set[str] = set()
    gate: ConnectionGate[str] = ConnectionGate(2, is_closed=closed.__contains__)
    assert gate.admit("a") and gate.admit("b")
    assert not gate.admit("c")
    assert gate.refused == 1
    gate.release("a")
    assert gate.admit("c")
    closed.add("b")  # a handshake that failed after admission, never released
    assert gate.admit("d")
    assert len(gate) == 2


def test_the_open_file_limit_is_raised_to_fit_or_the_limit_shrinks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits: dict[int, tuple[int, int]] = {resource.RLIMIT_NOFILE: (1024, 4096)}

    def setrlimit(kind: int, value: tuple[int, int]) -> None:
        if value[0] > limits[kind][1]:
            raise ValueError("not allowed")
        limits[kind] = value

    assert fit_open_files(2000, getrlimit=limits.__getitem__, setrlimit=setrlimit) == 2000
    assert limits[resource.RLIMIT_NOFILE] == (2000 + FILE_RESERVE, 4096)
    fits = fit_open_files(10_000, getrlimit=limits.__getitem__, setrlimit=setrlimit)
    assert fits == 4096 - FILE_RESERVE
    assert "leaves room for 3840 connections, not 10000" in caplog.text


async def _refusal(port: int) -> tuple[int, Headers, str]:
    with pytest.raises(InvalidStatus) as caught:
        async with asyncio.timeout(WAIT):
            await connect(f"ws://127.0.0.1:{port}{ATTACH}/extraNode")
    response = caught.value.response
    return response.status_code, response.headers, response.body.decode()


async def _health(port: int) -> Any:
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /fame/v1/attach/health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200")
    return orjson.loads(body)


async def test_attaches_beyond_the_limit_get_503_while_nodes_and_health_carry_on() -> None:
    limits = AdmissionLimits(max_connections=2)
    async with Sentinel(
        system_id=S, host="127.0.0.1", port=0, connection_limits=limits
    ) as sentinel:
        url = f"ws://127.0.0.1:{sentinel.port}{ATTACH}"
        async with Node(admission_url=url) as agent, Node(admission_url=url) as client:
            await agent.bind("echo@fame.fabric", _Echo(agent))
            status, headers, body = await _refusal(sentinel.port)
            assert status == 503
            assert headers["Retry-After"] == "5"
            assert body == (
                "sentinel is at its limit of 2 connections "
                "(FAME_SENTINEL_MAX_CONNECTIONS); try again in 5 s\n"
            )
            with pytest.raises(AttachRefused) as caught:
                async with asyncio.timeout(WAIT), Node(admission_url=url):
                    pass
            assert caught.value.status == 503
            assert "at its limit of 2 connections" in caught.value.reason
            assert (await _health(sentinel.port))["nodes"] == 2
            async with asyncio.timeout(WAIT):
                assert await client.call("echo@fame.fabric", "echo", ["still here"]) == [
                    "still here"
                ]
        # Both nodes left: their places free up, and a node that retries 503s gets in.
        late = Node(admission_url=url, max_initial_attempts=0, backoff=lambda: iter([0.02] * 250))
        async with asyncio.timeout(WAIT), late:
            assert late.is_attached


async def test_the_listener_uses_the_configured_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    original = socket.socket.listen

    def listen(self: socket.socket, backlog: int = 0) -> None:
        seen.append(backlog)
        original(self, backlog)

    monkeypatch.setattr(socket.socket, "listen", listen)
    limits = AdmissionLimits(backlog=777)
    async with Sentinel(system_id=S, host="127.0.0.1", port=0, connection_limits=limits):
        pass
    assert seen == [777]


class _Echo:
    """Answers every JSON-RPC request with its params."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def __call__(self, envelope: Envelope) -> None:
        frame = envelope.frame
        if isinstance(frame, Data) and isinstance(frame.payload, dict):
            payload = frame.payload
            reply = {"jsonrpc": "2.0", "id": payload.get("id"), "result": payload.get("params")}
            await self.node.reply(envelope, reply)


def test_the_cli_flag_is_checked_before_the_sentinel_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sentinel", "--port", "0", "--max-connections", "0"]) == 2
    assert "max_connections must be a positive integer, got 0" in capsys.readouterr().err


def test_every_sentinel_limit_is_in_the_readme_limits_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Limits\n", 1)[1].split("\n## ", 1)[0]
    names = [f"FAME_SENTINEL_{field.name.upper()}" for field in fields(SentinelLimits)]
    names += ["FAME_SENTINEL_MAX_CONNECTIONS", "FAME_SENTINEL_BACKLOG", "--max-connections"]
    names += ["FAME_LOG_REPEAT_BURST", "CHAT_MAX_HISTORY_LIMIT", "CHAT_MAX_SYSTEM_PROMPT_CHARS"]
    assert [name for name in names if f"`{name}`" not in table] == []
