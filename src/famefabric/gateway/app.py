"""The gateway's ASGI application: FastAPI routes, error shapes, body limit and the web page.

FastAPI (on Starlette, served by uvicorn) was chosen because the API is
defined once, as typed request models, and the OpenAPI document at
``/openapi.json`` and the docs at ``/docs`` come from those same models; its
``StreamingResponse`` cancels the response's generator when the client goes
away, which is how a closed stream cancels the turn upstream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from famefabric.gateway import completions, conversations, login, responses
from famefabric.gateway.context import Gateway
from famefabric.gateway.errors import GatewayError
from famefabric.gateway.links import LinkOpener, LinkPool
from famefabric.gateway.settings import GatewaySettings
from famefabric.gateway.web_headers import STATIC_DIR, SecurityHeaders
from famefabric.node import Node
from famefabric.security.providers import StaticToken
from famefabric.security.verifier import TokenVerifier

log = logging.getLogger(__name__)


def node_opener(admission_url: str) -> LinkOpener:
    """Open users' links as nodes attached to the sentinel at ``admission_url``."""

    def open_link(token: str | None) -> AbstractAsyncContextManager[Node]:
        provider = None if token is None else StaticToken(token, where="the bearer token")
        return Node(admission_url=admission_url, max_initial_attempts=1, token=provider)

    return open_link


def _error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return _error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    detail = first.get("msg", "invalid request")
    message = f"invalid request: {param + ': ' if param else ''}{detail}"
    return _error_response(GatewayError(400, message, code="invalid_request", param=param))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        return _error_response(GatewayError(404, message, code="unknown_endpoint"))
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        return _error_response(GatewayError(405, message, code="method_not_allowed"))
    return _error_response(GatewayError(exc.status_code, str(exc.detail), code="http_error"))


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before they are read whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self) -> GatewayError:
        return GatewayError(
            413,
            f"request body over the limit of {self.limit} bytes (FAME_GATEWAY_MAX_BODY_BYTES)",
            code="body_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _error_response(self._too_large())(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise self._too_large()
            return message

        await self.app(scope, limited, send)


def create_app(
    settings: GatewaySettings,
    *,
    admission_url: str,
    opener: LinkOpener | None = None,
    verifier: TokenVerifier | None = None,
    login_codes: login.LoginCodes | None = None,
) -> FastAPI:
    """Build the gateway app; its lifespan opens and closes the users' links.

    Args:
        settings: the gateway's settings.
        admission_url: the sentinel's attach URL.
        opener: how a user's link is opened (default: a node with the user's token).
        verifier: checks users' tokens; None is open mode (one shared link, no token).
        login_codes: the one-time login code of ``POST /v1/login``, if any.
    """
    pool = LinkPool(
        opener or node_opener(admission_url),
        max_links=settings.max_links,
        idle_seconds=settings.link_idle_seconds,
    )
    gateway = Gateway(settings, pool, verifier)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.start()
        try:
            yield
        finally:
            await pool.aclose()

    app = FastAPI(
        title="famefabric gateway",
        summary="OpenAI's Conversations, Responses and Chat Completions APIs over fabric agents",
        version="1",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.login_codes = login_codes
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.include_router(conversations.router)
    app.include_router(responses.router)
    app.include_router(completions.router)
    app.include_router(login.router)

    @app.get("/healthz", tags=["health"], summary="Liveness and load")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "links": len(pool), "streams": gateway.open_streams}

    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="web")
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app
