"""Authorization across the cluster, and sentinels authenticating to NATS.

Two sentinels with token verification on, in this process, joined through a
real ``nats-server`` that requires a user and password (given in its config
file and to the sentinels through ``FAME_CLUSTER_*`` settings, never in a
command line). The ingress sentinel decides: it refuses a call the caller's
identity may not make (``FORBIDDEN``, before anything crosses NATS), removes
the ``meta.subject`` a caller forged, and stamps the authenticated subject,
which the agent on the other sentinel reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trustme
from cluster_harness import NatsServer
from support.pool import ProcessPool

from famefabric.errors import ConfigurationError, FabricError
from famefabric.node import Node
from famefabric.protocol.frames import Data, Envelope
from famefabric.security import StaticToken, TokenVerifier, mint_token
from famefabric.sentinel import Sentinel
from famefabric.sentinel.cluster import ClusterSettings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SECRET = b"c" * 32
AUDIENCE = "cluster-test"
NATS_USER = "fame-sentinels"
NATS_PASSWORD = "n4ts-only-in-files"
SECURE = "secure@fame.fabric"
WAIT = 10.0


def token(subject: str, **claims: Any) -> str:
    return mint_token(SECRET, subject=subject, audience=AUDIENCE, **claims)


def attach_url(sentinel: Sentinel) -> str:
    return f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream"


async def authenticated_nats(processes: ProcessPool, binary: str, tmp_path: Path) -> NatsServer:
    config = tmp_path / "nats.conf"
    config.write_text(f'authorization {{ user: "{NATS_USER}", password: "{NATS_PASSWORD}" }}\n')
    return await NatsServer(processes, binary, config=config).start()


def settings(nats: NatsServer, password: str = NATS_PASSWORD) -> ClusterSettings:
    return ClusterSettings(servers=(nats.url,), user=NATS_USER, password=password, peer_timeout=1.0)


async def wait_for(predicate: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def two_sentinels(
    processes: ProcessPool, nats_binary: str, tmp_path: Path
) -> AsyncIterator[tuple[Sentinel, Sentinel]]:
    nats = await authenticated_nats(processes, nats_binary, tmp_path)
    async with AsyncExitStack() as stack:
        pair = []
        for name in ("secA", "secB"):
            verifier = TokenVerifier(secret=SECRET, audience=AUDIENCE, leeway=5)
            sentinel = Sentinel(
                system_id=name, host="127.0.0.1", port=0, verifier=verifier, cluster=settings(nats)
            )
            pair.append(await stack.enter_async_context(sentinel))
        yield pair[0], pair[1]
    assert NATS_PASSWORD not in " ".join(nats.process.argv)


async def test_the_ingress_sentinel_authorizes_and_its_stamp_crosses_the_cluster(
    two_sentinels: tuple[Sentinel, Sentinel],
) -> None:
    a, b = two_sentinels
    seen: list[Any] = []
    agent_token = StaticToken(token("agent-svc", serve=[SECURE]))
    async with Node(admission_url=attach_url(a), token=agent_token) as agent:

        async def handler(envelope: Envelope) -> None:
            assert isinstance(envelope.frame, Data)
            seen.append(envelope.meta)
            payload = envelope.frame.payload
            await agent.reply(envelope, {"jsonrpc": "2.0", "id": payload["id"], "result": 1})

        await agent.bind(SECURE, handler)
        await wait_for(lambda: b.stats()["addresses"] == 0 and _peer_has(b, SECURE), "B sees it")

        alice = StaticToken(token("alice", call=[SECURE]))
        async with Node(admission_url=attach_url(b), token=alice) as client:
            assert await client.call(SECURE, "op", [], meta={"subject": "root", "admin": True}) == 1
        assert seen[-1]["subject"] == "alice"
        assert "admin" not in seen[-1]

        mallory = StaticToken(token("mallory", call=["other@fame.fabric"]))
        async with Node(admission_url=attach_url(b), token=mallory) as client:
            with pytest.raises(FabricError, match="'mallory' lacks permission to call"):
                await client.call(SECURE, "op", [])
        assert len(seen) == 1, "a forbidden call must not reach the agent"


def _peer_has(sentinel: Sentinel, address: str) -> bool:
    member = sentinel._cluster
    return member is not None and member.view.has_exact(address)


async def test_a_wrong_nats_password_is_refused_without_showing_it(
    processes: ProcessPool, nats_binary: str, tmp_path: Path
) -> None:
    nats = await authenticated_nats(processes, nats_binary, tmp_path)
    sentinel = Sentinel(
        system_id="secWrong",
        host="127.0.0.1",
        port=0,
        cluster=settings(nats, password="not-the-password"),
    )
    with pytest.raises(ConfigurationError, match="cannot join the cluster") as caught:
        async with sentinel:
            pass
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in repr(settings(nats, password="not-the-password"))


async def test_sentinels_reach_nats_over_tls_verified_with_the_configured_ca(
    processes: ProcessPool, nats_binary: str, tmp_path: Path
) -> None:
    """A ``tls://`` URL and FAME_CLUSTER_CA: the sentinels verify the server's certificate;
    without the CA the handshake fails and the sentinel refuses to start."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = (
        tmp_path / "server.pem",
        tmp_path / "server.key",
        tmp_path / "ca.pem",
    )
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    ca.cert_pem.write_to_path(ca_file)
    config = tmp_path / "nats-tls.conf"
    config.write_text(f'tls {{ cert_file: "{cert_file}", key_file: "{key_file}" }}\n')
    nats = await NatsServer(processes, nats_binary, config=config).start()
    url = f"tls://127.0.0.1:{nats.port}"
    env = {
        "FAME_CLUSTER_URL": url,
        "FAME_CLUSTER_CA": str(ca_file),
        "FAME_CLUSTER_PEER_TIMEOUT": "1",
    }
    verified = ClusterSettings.from_env(env)
    assert verified is not None and verified.tls
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            Sentinel(system_id="tlsA", host="127.0.0.1", port=0, cluster=verified)
        )
        b = await stack.enter_async_context(
            Sentinel(system_id="tlsB", host="127.0.0.1", port=0, cluster=verified)
        )
        async with Node(admission_url=attach_url(a)) as agent:

            async def handler(envelope: Envelope) -> None:
                assert isinstance(envelope.frame, Data)
                payload = envelope.frame.payload
                await agent.reply(envelope, {"jsonrpc": "2.0", "id": payload["id"], "result": 2})

            await agent.bind(SECURE, handler)
            await wait_for(lambda: _peer_has(b, SECURE), "B sees the agent over TLS")
            async with Node(admission_url=attach_url(b)) as client:
                assert await client.call(SECURE, "op", []) == 2

    unverified = ClusterSettings(servers=(url,))  # the system CAs do not know this one
    with pytest.raises(ConfigurationError, match="cannot join the cluster"):
        async with Sentinel(system_id="tlsC", host="127.0.0.1", port=0, cluster=unverified):
            pass
