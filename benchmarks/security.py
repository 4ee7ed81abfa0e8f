"""The cost of security on echo calls: the same famefabric trio with tokens on, and with TLS on.

``fabric_auth``: the sentinel verifies HS256 tokens and decides every bind
and call against the identities (cached per connection and per address).
``fabric_tls``: the sentinel serves ``wss://`` with a certificate from a
private CA (trustme), and the nodes trust that CA through ``FAME_TLS_CA``.
Both run interleaved with the plain ``fabric`` system of the echo section,
so the ratios compare runs of one moment on one machine.
"""

from __future__ import annotations

import trustme

from benchmarks.common import FAME, PYTHON, Bench, admission_env
from benchmarks.procs import Proc, free_port, wait_port
from famefabric.security import mint_token

ADDRESS = "echo@fame.fabric"
SECRET = "bench-secret-" + "b" * 40
Roles = dict[str, Proc]


async def _trio(
    bench: Bench,
    name: str,
    procs: list[Proc],
    *,
    sentinel_args: list[str],
    sentinel_env: dict[str, str],
    node_env: dict[str, str],
    url: str,
    agent_token: str | None = None,
    client_token: str | None = None,
) -> Roles:
    port = free_port()
    sentinel = await bench.supervisor.spawn(
        f"{name}-sentinel",
        [
            FAME,
            "sentinel",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--node-id",
            f"{name.replace('_', '')}Sentinel",
            "--log-level",
            "warning",
            *sentinel_args,
        ],
        env=sentinel_env,
        pipe_stdout=False,
    )
    procs.append(sentinel)
    await wait_port(port, 20.0, sentinel)
    env = admission_env(port, **node_env)
    env["FAME_DIRECT_ADMISSION_URL"] = url.format(port=port)
    agent_env = {**env, **({"FAME_TOKEN": agent_token} if agent_token else {})}
    client_env = {**env, **({"FAME_TOKEN": client_token} if client_token else {})}
    agent, _ = await bench.start_ready(
        f"{name}-agent",
        [PYTHON, "-m", "benchmarks.fabric_echo", "agent", "--address", ADDRESS],
        agent_env,
    )
    procs.append(agent)
    client, _ = await bench.start_driver(
        f"{name}-client",
        [
            PYTHON,
            "-m",
            "benchmarks.fabric_echo",
            "client",
            "--address",
            ADDRESS,
            "--text",
            bench.config.echo_text,
        ],
        client_env,
    )
    procs.append(client)
    return {"client": client, "router": sentinel, "server": agent}


async def security_systems(bench: Bench, procs: list[Proc]) -> dict[str, Roles]:
    """Start the ``fabric_auth`` and ``fabric_tls`` trios (their processes go into ``procs``)."""
    workdir = bench.supervisor.log_dir / "tls"
    systems = {
        "fabric_auth": await _trio(
            bench,
            "fabric_auth",
            procs,
            sentinel_args=[],
            sentinel_env={"FAME_AUTH_SECRET": SECRET},
            node_env={},
            agent_token=mint_token(SECRET.encode(), subject="echo-agent", serve=[ADDRESS]),
            client_token=mint_token(SECRET.encode(), subject="echo-client", call=[ADDRESS]),
            url="ws://127.0.0.1:{port}/fame/v1/attach/ws/downstream",
        )
    }
    ca = trustme.CA()
    workdir.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = (workdir / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    issued = ca.issue_cert("localhost")
    issued.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    issued.private_key_pem.write_to_path(str(key_file))
    systems["fabric_tls"] = await _trio(
        bench,
        "fabric_tls",
        procs,
        sentinel_args=["--tls-cert", str(cert_file), "--tls-key", str(key_file)],
        sentinel_env={},
        node_env={"FAME_TLS_CA": str(ca_file)},
        url="wss://localhost:{port}/fame/v1/attach/ws/downstream",
    )
    return systems
