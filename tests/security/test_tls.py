"""TLS with real certificates (trustme): a good chain, an unknown CA, a wrong host name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from famefabric.errors import ConfigurationError, ConnectionClosed
from famefabric.node import Node
from famefabric.protocol.frames import Data, Envelope
from famefabric.security.tls import client_context, server_context, server_context_from_env
from famefabric.sentinel import Sentinel


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    yield str(path)


def issue(ca: trustme.CA, directory: Path, *names: str) -> tuple[str, str]:
    cert = ca.issue_cert(*names)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


@pytest.fixture
async def tls_sentinel(ca: trustme.CA, tmp_path: Path) -> AsyncIterator[Sentinel]:
    cert, key = issue(ca, tmp_path, "localhost", "127.0.0.1")
    async with Sentinel(
        system_id="tlsSentinel01", host="127.0.0.1", port=0, tls=server_context(cert, key)
    ) as sentinel:
        yield sentinel


def url(host: str, port: int) -> str:
    return f"wss://{host}:{port}/fame/v1/attach/ws/downstream"


async def test_a_good_chain_carries_calls(tls_sentinel: Sentinel, ca_file: str) -> None:
    tls = client_context(ca_file)
    async with Node(admission_url=url("localhost", tls_sentinel.port), tls=tls) as agent:

        async def echo(envelope: Envelope) -> None:
            assert isinstance(envelope.frame, Data)
            payload = envelope.frame.payload
            await agent.reply(
                envelope, {"jsonrpc": "2.0", "id": payload["id"], "result": payload["params"]}
            )

        await agent.bind("echo@fame.fabric", echo)
        async with Node(admission_url=url("localhost", tls_sentinel.port), tls=tls) as client:
            assert await client.call("echo@fame.fabric", "echo", "over tls") == "over tls"


async def test_an_unknown_ca_is_refused_with_a_clear_error(tls_sentinel: Sentinel) -> None:
    target = url("localhost", tls_sentinel.port)
    with pytest.raises(ConnectionClosed) as info:
        async with Node(admission_url=target, tls=client_context(None)):
            pass
    message = str(info.value)
    assert target in message and "not trusted" in message and "FAME_TLS_CA" in message


async def test_a_wrong_host_name_is_refused_with_a_clear_error(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    cert, key = issue(ca, tmp_path, "other.example")
    async with Sentinel(
        system_id="tlsSentinel02", host="127.0.0.1", port=0, tls=server_context(cert, key)
    ) as sentinel:
        target = url("localhost", sentinel.port)
        with pytest.raises(ConnectionClosed) as info:
            async with Node(admission_url=target, tls=client_context(ca_file)):
                pass
    message = str(info.value)
    assert target in message and "not valid for this host name" in message


async def test_a_plain_client_cannot_talk_to_a_tls_sentinel(tls_sentinel: Sentinel) -> None:
    with pytest.raises(ConnectionClosed):
        async with Node(
            admission_url=f"ws://127.0.0.1:{tls_sentinel.port}/fame/v1/attach/ws/downstream"
        ):
            pass


def test_tls_settings_explain_mistakes(tmp_path: Path) -> None:
    assert server_context_from_env({}) is None
    with pytest.raises(ConfigurationError, match="needs both a certificate and its key"):
        server_context_from_env({"FAME_TLS_CERT": "x.pem"})
    with pytest.raises(ConfigurationError, match="cannot use the TLS certificate"):
        server_context_from_env({"FAME_TLS_CERT": "x.pem", "FAME_TLS_KEY": "y.pem"})
    with pytest.raises(ConfigurationError, match="cannot load FAME_TLS_CA"):
        client_context(str(tmp_path / "missing.pem"))
