"""``GET /metrics`` over HTTP: on the sentinel's listener, or on its own port for agents.

Both use the websockets server's HTTP request hook, so the metrics endpoint
of an agent is the same code as the sentinel's, with the access rule of
:func:`famefabric.observability.metrics.check_access`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from famefabric.errors import ConfigurationError
from famefabric.observability import metrics

log = logging.getLogger(__name__)


def _respond(
    connection: ServerConnection,
    status: HTTPStatus,
    body: bytes,
    content_type: str,
    extra: dict[str, str] | None = None,
) -> Response:
    response = connection.respond(status, "")
    response.body = body
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = content_type
    response.headers["Content-Length"] = str(len(body))
    for key, value in (extra or {}).items():
        response.headers[key] = value
    return response


def metrics_response(connection: ServerConnection, request: Request, token: str | None) -> Response:
    """Answer ``GET /metrics``: the exposition, or 401/403 with a JSON reason."""
    remote = connection.remote_address
    host = remote[0] if isinstance(remote, tuple) else None
    refusal = metrics.check_access(host, request.headers.get("Authorization"), token)
    if refusal is not None:
        status, reason = refusal
        log.info("refused a metrics scrape from %s: %s", host, status.phrase)
        extra = {"WWW-Authenticate": "Bearer"} if status is HTTPStatus.UNAUTHORIZED else None
        body = orjson.dumps({"error": reason})
        return _respond(connection, status, body, "application/json", extra)
    data, content_type = metrics.exposition()
    return _respond(connection, HTTPStatus.OK, data, content_type)


class MetricsServer:
    """``/metrics`` alone on a port (for agent processes); use :func:`serve_metrics`."""

    def __init__(self, server: Server, token: str | None) -> None:
        self._server = server
        self.token = token

    @property
    def port(self) -> int:
        """The bound port."""
        for sock in self._server.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("the metrics server is not listening")


@asynccontextmanager
async def serve_metrics(
    port: int, *, host: str = "0.0.0.0", token: str | None = None
) -> AsyncIterator[MetricsServer]:
    """Serve ``/metrics`` on ``host:port`` for the life of the block.

    Raises:
        ConfigurationError: the port cannot be bound.
    """

    def process_request(connection: ServerConnection, request: Request) -> Response:
        if request.path.partition("?")[0] == metrics.METRICS_PATH:
            return metrics_response(connection, request, token)
        body = orjson.dumps({"error": f"not found: this port serves {metrics.METRICS_PATH} only"})
        return _respond(connection, HTTPStatus.NOT_FOUND, body, "application/json")

    async def refuse(
        connection: ServerConnection,
    ) -> None:  # never reached: every request is answered
        await connection.close(1008, "metrics only")

    try:
        server = await serve(
            refuse, host, port, process_request=process_request, server_header=None
        )
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port} ({metrics.PORT_SETTING}): {exc.strerror or exc}"
        ) from exc
    metrics_server = MetricsServer(server, token)
    log.info("metrics on http://%s:%d%s", host, metrics_server.port, metrics.METRICS_PATH)
    try:
        yield metrics_server
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def serve_metrics_from_env() -> AsyncIterator[MetricsServer | None]:
    """Serve ``/metrics`` on ``FAME_METRICS_PORT`` if it is set, for the life of the block."""
    port = metrics.metrics_port()
    if port is None:
        yield None
        return
    async with serve_metrics(port, token=metrics.metrics_token()) as server:
        yield server
