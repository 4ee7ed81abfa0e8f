"""JSON-RPC 2.0 messages inside ``Data`` frames (PROTOCOL.md §8.3, §10).

Requests carry ``params`` as ``{"args": [...], "kwargs": {...}}`` for agent
operations and as the A2A object itself for ``tasks/*`` methods. A success
response with a null result omits ``result``; in a stream, a response with
neither ``result`` nor ``error`` is the end marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from famefabric.errors import JSONValue

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APPLICATION_ERROR = -32000
TASK_NOT_CANCELABLE = -32002
PUSH_NOT_SUPPORTED = -32003
UNSUPPORTED_OPERATION = -32004
DELIVERY_FAILED = -32099


@dataclass(frozen=True, slots=True)
class Request:
    """A JSON-RPC request; ``id`` is None for a notification."""

    method: str
    params: JSONValue
    id: str | None


@dataclass(frozen=True, slots=True)
class Response:
    """A JSON-RPC response: a result, an error, or (in a stream) the end marker."""

    id: str | None
    result: JSONValue = None
    error: dict[str, Any] | None = None

    @property
    def is_end_marker(self) -> bool:
        """Tell whether this response ends a stream (neither result nor error)."""
        return self.error is None and self.result is None


def make_request(request_id: str, method: str, params: JSONValue) -> dict[str, Any]:
    """Return a request object."""
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def operation_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return the ``params`` of an operation call (§10.1)."""
    return {"args": list(args), "kwargs": kwargs}


def make_result(request_id: str | None, result: JSONValue) -> dict[str, Any]:
    """Return a success response; a null result omits the ``result`` key (§10.2)."""
    if result is None:
        return {"jsonrpc": "2.0", "id": request_id}
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def make_end_marker(request_id: str | None) -> dict[str, Any]:
    """Return the end-of-stream marker (§8.3)."""
    return {"jsonrpc": "2.0", "id": request_id}


def make_error(
    request_id: str | None, code: int, message: str, data: JSONValue = None
) -> dict[str, Any]:
    """Return an error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def parse_request(payload: object) -> Request | None:
    """Read a request from a Data payload; None when it is not a request.

    Payloads that are not JSON-RPC requests (a bare string, a response) are
    not answered (§10.1).
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("method"), str):
        return None
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str | int):
        request_id = None
    return Request(
        method=payload["method"],
        params=payload.get("params"),
        id=None if request_id is None else str(request_id),
    )


def parse_response(payload: object) -> Response | None:
    """Read a response from a Data payload; None when it is not a response."""
    if not isinstance(payload, dict) or "method" in payload:
        return None
    error = payload.get("error")
    if error is not None and not isinstance(error, dict):
        error = {"code": INTERNAL_ERROR, "message": str(error)}
    request_id = payload.get("id")
    return Response(
        id=None if request_id is None else str(request_id),
        result=payload.get("result"),
        error=error,
    )


def split_params(params: JSONValue) -> tuple[list[Any], dict[str, Any]]:
    """Return positional and keyword arguments of an operation call.

    ``{"args": [...], "kwargs": {...}}`` is unpacked; any other object is
    taken as keyword arguments; a list as positional ones; null as none.

    Raises:
        ValueError: the params cannot be read as arguments.
    """
    if params is None:
        return [], {}
    if isinstance(params, list):
        return list(params), {}
    if not isinstance(params, dict):
        raise ValueError(f"params must be an object or a list, got {type(params).__name__}")
    if "args" in params or "kwargs" in params:
        args = params.get("args") or []
        kwargs = params.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("params 'args' must be a list and 'kwargs' an object")
        return list(args), dict(kwargs)
    return [], dict(params)
