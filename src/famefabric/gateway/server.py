"""``fame gateway``: the gateway app served by uvicorn on ``FAME_GATEWAY_PORT``."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import uvicorn

from famefabric.errors import ConfigurationError
from famefabric.gateway.app import create_app
from famefabric.gateway.login import LoginCodes, write_link
from famefabric.gateway.settings import GatewaySettings
from famefabric.security.verifier import TokenVerifier
from famefabric.settings import FabricSettings

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")


async def serve_gateway(
    settings: GatewaySettings,
    fabric: FabricSettings,
    *,
    insecure: bool = False,
    secret_file: str | None = None,
) -> None:
    """Serve the gateway until SIGINT/SIGTERM.

    Args:
        settings: the gateway's settings.
        fabric: the fabric settings (the sentinel's attach URL).
        insecure: allow a non-loopback interface without auth.
        secret_file: the HS256 secret's file (``--auth-secret-file``), like the sentinel's.

    Raises:
        ConfigurationError: a non-loopback host without auth and without ``insecure``.
    """
    verifier = TokenVerifier.from_env(secret_file=secret_file)
    if verifier is None and settings.host not in LOOPBACK and not insecure:
        raise ConfigurationError(
            f"FAME_GATEWAY_HOST={settings.host} without auth would let anyone on the network "
            "use the fabric: configure tokens (FAME_AUTH_SECRET or FAME_JWKS_URL), listen on "
            "127.0.0.1, or pass --insecure"
        )
    codes = LoginCodes.from_env()
    app = create_app(
        settings, admission_url=fabric.admission_url, verifier=verifier, login_codes=codes
    )
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it, a response's separate writes
    # (headers, then each event) wait for the client's delayed ACK, 40 ms apiece.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((settings.host, settings.port))
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    mode = f"tokens: {verifier.describe()}" if verifier else "open mode, no tokens"
    if verifier is None and host not in LOOPBACK:
        log.warning("the gateway listens on %s without auth (--insecure)", host)
    log.info("gateway listening on http://%s:%d (%s)", shown, port, mode)
    print(f"gateway listening on http://{shown}:{port}", file=sys.stderr, flush=True)
    if codes is not None:
        link_host = "127.0.0.1" if host in ("0.0.0.0", "::") else shown
        write_link(f"http://{link_host}:{port}", codes.new_code())
    await server.serve(sockets=[sock])


def run_gateway(
    settings: GatewaySettings,
    fabric: FabricSettings,
    *,
    insecure: bool,
    secret_file: str | None = None,
) -> None:
    """Run :func:`serve_gateway` to completion."""
    asyncio.run(serve_gateway(settings, fabric, insecure=insecure, secret_file=secret_file))
