"""The gated profile across implementations, both ways, with OAuth2 tokens in the bearer subprotocol.

The Naylence echo agent runs with its ``direct`` admission profile: it gets
a token from an OAuth2 client-credentials endpoint (``FAME_ADMISSION_TOKEN_URL``,
``FAME_ADMISSION_CLIENT_ID``, ``FAME_ADMISSION_CLIENT_SECRET``) and sends it
in the WebSocket subprotocol pair ``bearer, <token>``. Our sentinel verifies
it against the same provider's keys (``FAME_JWKS_URL``), and refuses the same
node without credentials. The provider is a small real one on loopback
(:mod:`support.identity_provider`). The other way round, our node with a
client-credentials token attaches to the Naylence sentinel in its ``gated``
security profile, and without one it is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.agents import naylence_echo_agent
from support.identity_provider import running_provider
from support.pool import ProcessPool
from support.procs import INTEROP_PYTHON, PEERS_DIR

from famefabric import Agent, FameFabric
from famefabric.errors import FabricError
from famefabric.security import ClientCredentials
from famefabric.testing import free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

ECHO = "echo@fame.fabric"


async def test_a_naylence_node_with_a_bearer_token_attaches_to_our_gated_sentinel(
    interop_venv: Path, processes: ProcessPool
) -> None:
    with running_provider("RS256") as idp:
        idp.clients["naylence-echo"] = ("n-secret", {"fame_serve": [ECHO]})
        idp.clients["our-client"] = ("o-secret", {"fame_call": [ECHO]})
        sentinel = await processes.our_sentinel(
            node_id="gatedSentinel1",
            env={
                "FAME_JWKS_URL": idp.jwks_url,
                "FAME_JWT_ALGORITHM": "RS256",
                "FAME_JWT_TRUSTED_ISSUER": idp.issuer,
                "FAME_JWT_AUDIENCE": idp.audience,
            },
        )
        spec = naylence_echo_agent(ECHO)
        gated = {
            "FAME_ADMISSION_PROFILE": "direct",
            "FAME_ADMISSION_TOKEN_URL": idp.token_url,
            "FAME_ADMISSION_CLIENT_ID": "naylence-echo",
            "FAME_ADMISSION_CLIENT_SECRET": "n-secret",
            "FAME_JWT_AUDIENCE": idp.audience,
        }
        agent = processes.spawn(spec.name, spec.argv, env=sentinel.node_env(gated))
        await agent.wait_for_line(spec.ready, stream=spec.stream, within=60, what="ready")
        assert idp.token_requests >= 1
        assert "attached as 'naylence-echo'" in sentinel.process.stderr()

        credentials = ClientCredentials(idp.token_url, "our-client", "o-secret")
        async with FameFabric.create(
            admission_url=sentinel.admission_url, token=credentials
        ) as fabric:
            echo = Agent.remote_by_address(ECHO, fabric=fabric)
            assert await echo.echo("through the gate") == "through the gate"

        anonymous = processes.spawn(
            "naylence-anonymous", spec.argv, env=sentinel.node_env({"FAME_NODE_ID": "anon1"})
        )
        code = await anonymous.wait_exit(within=60)
        assert code != 0 or "401" in anonymous.stderr()
        assert "refused the attach of anon1" in sentinel.process.stderr()
        with pytest.raises(FabricError):
            async with FameFabric.create(admission_url=sentinel.admission_url):
                pass


async def test_our_node_attaches_to_a_naylence_sentinel_in_its_gated_profile(
    interop_venv: Path, processes: ProcessPool
) -> None:
    with running_provider("RS256") as idp:
        # The reference's gated profile finds the keys at <issuer>/.well-known/jwks.json
        # and requires the scope node.connect.
        idp.issuer = f"http://127.0.0.1:{idp.port}"
        idp.clients["our-node"] = ("o-secret", {"scope": "node.connect"})
        port = free_port()
        sentinel = processes.spawn(
            "naylence-gated-sentinel",
            [INTEROP_PYTHON, PEERS_DIR / "naylence_sentinel.py"],
            env={
                "FAME_LISTENER_PORT": str(port),
                "FAME_NODE_ID": "nayGated01",
                "FAME_SECURITY_PROFILE": "gated",
                "FAME_JWT_TRUSTED_ISSUER": idp.issuer,
                "FAME_JWT_AUDIENCE": idp.audience,
                "FAME_JWT_ALGORITHM": "RS256",
            },
        )
        await sentinel.wait_for_line(r"^READY sentinel", stream="stdout", within=60, what="ready")
        url = f"ws://127.0.0.1:{port}/fame/v1/attach/ws/downstream"
        credentials = ClientCredentials(idp.token_url, "our-node", "o-secret")
        async with FameFabric.create(admission_url=url, token=credentials) as fabric:
            assert fabric.node.assigned_path is not None
            assert fabric.node.assigned_path.startswith("/nayGated01/")
        with pytest.raises(FabricError, match="Authentication failed"):
            async with FameFabric.create(admission_url=url):
                pass
