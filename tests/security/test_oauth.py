"""OAuth2 client credentials against a real local token endpoint, and a node attaching with them."""

from __future__ import annotations

import pytest
from support.identity_provider import running_provider

from famefabric.errors import AttachRefused, ConfigurationError, ConnectionClosed
from famefabric.node import Node
from famefabric.security import ClientCredentials, TokenVerifier, token_provider_from_env
from famefabric.security.jwks import JwksKeys
from famefabric.sentinel import Sentinel


async def test_a_token_is_fetched_cached_and_refreshed_before_expiry() -> None:
    now = [1_000_000.0]
    with running_provider() as idp:
        idp.clients["node-1"] = ("s3cret:with/odd chars", {"fame_serve": ["a@b.c"]})
        idp.token_lifetime = 1000
        provider = ClientCredentials(
            idp.token_url, "node-1", "s3cret:with/odd chars", clock=lambda: now[0]
        )
        first = await provider.token()
        assert await provider.token() == first and idp.token_requests == 1
        now[0] += 799  # before 80% of the lifetime: still the same token
        assert await provider.token() == first and idp.token_requests == 1
        now[0] += 2
        await provider.token()
        assert idp.token_requests == 2 and provider.can_renew()


async def test_a_refused_client_is_final_and_an_unreachable_endpoint_is_retryable() -> None:
    with running_provider() as idp:
        idp.clients["node-1"] = ("right", {})
        with pytest.raises(AttachRefused) as info:
            await ClientCredentials(idp.token_url, "node-1", "wrong").token()
        assert info.value.status == 401 and "FAME_ADMISSION_CLIENT_SECRET" in str(info.value)
        assert "wrong" not in str(info.value)
        url = idp.token_url
    with pytest.raises(ConnectionClosed, match="cannot obtain a token"):
        await ClientCredentials(url, "node-1", "right").token()


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="expected an https"):
        ClientCredentials("http://idp.example/token", "a", "b")
    with pytest.raises(ConfigurationError, match="needs FAME_ADMISSION_CLIENT_ID"):
        token_provider_from_env({"FAME_ADMISSION_TOKEN_URL": "https://idp.example/token"})
    with pytest.raises(ConfigurationError, match="set only one way"):
        token_provider_from_env({"FAME_TOKEN": "a.b.c", "FAME_TOKEN_FILE": "/x"})
    provider = token_provider_from_env(
        {
            "FAME_ADMISSION_TOKEN_URL": "https://idp.example/token",
            "FAME_ADMISSION_CLIENT_ID": "a",
            "FAME_ADMISSION_CLIENT_SECRET": "b",
        }
    )
    assert isinstance(provider, ClientCredentials)


async def test_a_node_attaches_with_a_client_credentials_token_verified_by_jwks() -> None:
    with running_provider("ES256") as idp:
        idp.clients["svc"] = ("pw", {"fame_serve": ["svc@fame.fabric"]})
        verifier = TokenVerifier(
            jwks=JwksKeys(idp.jwks_url),
            algorithm="ES256",
            issuer=idp.issuer,
            audience=idp.audience,
        )
        async with Sentinel(system_id="oauthSentinel", port=0, verifier=verifier) as sentinel:
            url = f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream"
            credentials = ClientCredentials(idp.token_url, "svc", "pw")
            async with Node(admission_url=url, token=credentials) as node:

                async def ignore(envelope: object) -> None:
                    return None

                await node.bind("svc@fame.fabric", ignore)  # type: ignore[arg-type]
            assert idp.token_requests == 1 and idp.jwks_fetches == 1
