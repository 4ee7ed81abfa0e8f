"""The HTTP side of the sentinel's port: attach paths, health endpoints, refusals.

Nodes attach at ``/fame/v1/attach/ws/downstream/<systemId>`` (PROTOCOL.md
§2.1). Like the reference, the sentinel refuses with an empty HTTP 403 a
WebSocket handshake on any other ``/fame/v1/attach/ws/...`` path: a wrong
origin segment, a missing or extra segment, or its own system id (C-43).
``GET /fame/v1/attach/health`` and ``GET /fame/v1/ingress/health`` answer
200 with JSON; every other request gets the reference's 404 JSON (§13).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from famefabric.sentinel.system_ids import is_valid_system_id

ATTACH_PREFIX = "/fame/v1/attach/ws/"
ORIGIN_DOWNSTREAM = "downstream"
ATTACH_HEALTH_PATH = "/fame/v1/attach/health"
INGRESS_HEALTH_PATH = "/fame/v1/ingress/health"
NOT_FOUND = {"detail": "Not Found"}


def attach_target(path: str, sentinel_id: str) -> str | None:
    """Return the child's system id for a valid attach path, None otherwise.

    Args:
        path: the request path, with or without a query string.
        sentinel_id: the sentinel's own id, which no child may use.
    """
    path = path.partition("?")[0]
    if not path.startswith(ATTACH_PREFIX):
        return None
    parts = path[len(ATTACH_PREFIX) :].split("/")
    if len(parts) != 2 or parts[0] != ORIGIN_DOWNSTREAM:
        return None
    child = parts[1]
    if not is_valid_system_id(child) or child == sentinel_id:
        return None
    return child


def json_response(
    connection: ServerConnection, status: HTTPStatus, body: Mapping[str, Any]
) -> Response:
    """Return an HTTP response with a JSON body."""
    response = connection.respond(status, "")
    data = orjson.dumps(body)
    response.body = data
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = "application/json"
    response.headers["Content-Length"] = str(len(data))
    return response


def health_response(
    connection: ServerConnection,
    counts: Mapping[str, int],
    system_id: str,
    cluster: Mapping[str, Any] | None,
) -> Response:
    """The attach listener's health answer: node and address counts, and the cluster's view."""
    body: dict[str, Any] = {
        "status": "healthy",
        "nodes": counts["nodes"],
        "addresses": counts["addresses"],
        "systemId": system_id,
    }
    if cluster is not None:
        body["cluster"] = cluster
    return json_response(connection, HTTPStatus.OK, body)


def is_closed(connection: ServerConnection) -> bool:
    """Whether the connection is closed (the connection gate's test)."""
    return connection.state is State.CLOSED


def forbidden(connection: ServerConnection) -> Response:
    """Return the reference's handshake refusal: 403 with an empty body."""
    return connection.respond(HTTPStatus.FORBIDDEN, "")


def is_websocket_upgrade(headers: Mapping[str, str]) -> bool:
    """Tell whether request headers ask for a WebSocket upgrade."""
    return headers.get("Upgrade", "").lower() == "websocket"


def select_subprotocol(
    connection: ServerConnection, subprotocols: Sequence[Subprotocol]
) -> Subprotocol | None:
    """Select ``bearer`` when the client offers it first; else no subprotocol (§2.2)."""
    if subprotocols and subprotocols[0] == "bearer":
        return subprotocols[0]
    return None
