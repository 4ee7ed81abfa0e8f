"""Admission at the handshake: a real sentinel with auth on, real WebSockets, real nodes."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from famefabric.errors import AttachRefused, FabricError
from famefabric.fabric import FameFabric
from famefabric.node import Node
from famefabric.protocol.frames import Data, Envelope
from famefabric.security import StaticToken, TokenVerifier, mint_token
from famefabric.sentinel import Sentinel

SECRET = b"k" * 32
S = "admSentinel1"
WAIT = 10.0


def attach_url(port: int, system_id: str = "") -> str:
    base = f"ws://127.0.0.1:{port}/fame/v1/attach/ws/downstream"
    return f"{base}/{system_id}" if system_id else base


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    verifier = TokenVerifier(secret=SECRET, audience="fabric-test", leeway=5)
    async with Sentinel(system_id=S, host="127.0.0.1", port=0, verifier=verifier) as s:
        yield s


def token(subject: str, **claims: Any) -> str:
    return mint_token(SECRET, subject=subject, audience="fabric-test", **claims)


async def refused_with(port: int, **options: Any) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(attach_url(port, "n1"), open_timeout=WAIT, **options):
            pass
    response = info.value.response
    return response.status_code, response.body.decode()


def forged() -> str:
    return mint_token(b"x" * 32, subject="mallory", audience="fabric-test")


def expired() -> str:
    return jwt.encode(
        {"sub": "old", "aud": "fabric-test", "exp": int(time.time()) - 60}, SECRET, "HS256"
    )


def wrong_audience() -> str:
    return mint_token(SECRET, subject="elsewhere", audience="other-fabric")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: None, "no token"),
        (forged, "signature is not valid"),
        (expired, "has expired"),
        (wrong_audience, "another audience"),
        (lambda: "garbage", "not a JWT"),
    ],
)
async def test_bad_or_missing_tokens_get_401_with_a_one_line_reason(
    sentinel: Sentinel, make: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    bearer = make()
    options = {"subprotocols": ["bearer", bearer]} if bearer else {}
    with caplog.at_level(logging.WARNING, logger="famefabric.sentinel.admission"):
        status, body = await refused_with(sentinel.port, **options)
    assert status == 401
    assert reason in body and body.count("\n") == 1
    assert sentinel.stats()["connections"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(reason in w for w in warnings), warnings
    if bearer:
        assert all(bearer not in w for w in warnings)
    if make in (forged, expired, wrong_audience):
        subject = jwt.decode(bearer, options={"verify_signature": False})["sub"]
        assert any(f"subject {subject!r}" in w for w in warnings)


async def test_a_good_token_attaches_by_subprotocol_or_authorization_header(
    sentinel: Sentinel,
) -> None:
    async with connect(attach_url(sentinel.port, "n1"), subprotocols=["bearer", token("a")]) as ws:
        assert ws.subprotocol == "bearer"
    headers = {"Authorization": f"Bearer {token('b')}"}
    async with connect(attach_url(sentinel.port, "n2"), additional_headers=headers) as ws:
        assert ws.subprotocol is None


async def test_nodes_present_their_token_and_get_their_permissions(sentinel: Sentinel) -> None:
    url = attach_url(sentinel.port)
    agent_token = StaticToken(token("agent-svc", serve=["echo@fame.fabric"]))
    client_token = StaticToken(token("alice", call=["echo@fame.fabric"]))
    seen: list[Any] = []

    async with Node(admission_url=url, token=agent_token) as agent:

        async def echo(envelope: Envelope) -> None:
            assert isinstance(envelope.frame, Data)
            seen.append(envelope.meta)
            payload = envelope.frame.payload
            result = {"jsonrpc": "2.0", "id": payload["id"], "result": payload["params"]}
            await agent.reply(envelope, result)

        await agent.bind("echo@fame.fabric", echo)
        with pytest.raises(FabricError, match="'agent-svc' lacks permission to serve"):
            await agent.bind("chat@fame.fabric", echo)
        async with Node(admission_url=url, token=client_token) as client:
            assert await client.call("echo@fame.fabric", "echo", 7) == 7
        assert seen[0]["subject"] == "alice"


async def test_a_node_without_token_is_refused_once_and_does_not_retry(
    sentinel: Sentinel,
) -> None:
    node = Node(admission_url=attach_url(sentinel.port), max_initial_attempts=0)
    with pytest.raises(AttachRefused) as info:
        async with node:
            pass
    assert info.value.status == 401 and "no token" in info.value.reason


async def test_fabric_reads_fame_token_from_the_environment(
    sentinel: Sentinel, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("FAME_TOKEN", token("env-node"))
    async with FameFabric.create(admission_url=attach_url(sentinel.port)) as fabric:
        assert fabric.node.is_attached
    monkeypatch.delenv("FAME_TOKEN")
    path = tmp_path / "node.token"
    path.write_text(token("file-node") + "\n")
    monkeypatch.setenv("FAME_TOKEN_FILE", str(path))
    async with FameFabric.create(admission_url=attach_url(sentinel.port)) as fabric:
        assert fabric.node.is_attached


async def test_open_mode_accepts_anonymous_and_ignores_tokens() -> None:
    async with Sentinel(system_id=S, host="127.0.0.1", port=0) as open_sentinel:
        url = attach_url(open_sentinel.port)
        async with Node(admission_url=url), Node(admission_url=url, token=StaticToken(forged())):
            assert open_sentinel.stats()["connections"] == 2
