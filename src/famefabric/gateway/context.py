"""The gateway's shared state: settings, users' links, the stream budget, and who is calling."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request

from famefabric.errors import TokenRejected
from famefabric.gateway.errors import GatewayError
from famefabric.gateway.links import LinkPool, token_key
from famefabric.gateway.settings import GatewaySettings
from famefabric.gateway.upstream import Upstream
from famefabric.security.verifier import TokenVerifier

MAX_TOKEN_CHARS = 8192
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")


@dataclass(frozen=True, slots=True)
class User:
    """The caller of one HTTP request.

    Attributes:
        token: the fame token presented, or None in open mode.
        key: a digest of the token that names the user's link and budget.
    """

    token: str | None
    key: str


def _unauthorized(message: str) -> GatewayError:
    return GatewayError(
        401,
        message,
        code="invalid_token",
        headers={"WWW-Authenticate": 'Bearer realm="fame"'},
    )


class Gateway:
    """What every request handler shares.

    Args:
        settings: the gateway's settings.
        links: the users' links to the fabric.
        verifier: checks a token before its link is opened (the sentinel checks
            it again when the link attaches); None in open mode.
    """

    def __init__(
        self, settings: GatewaySettings, links: LinkPool, verifier: TokenVerifier | None = None
    ) -> None:
        self.settings = settings
        self.links = links
        self._verifier = verifier
        self._streams: Counter[str] = Counter()
        self._busy: dict[str, str] = {}

    async def user(self, request: Request) -> User:
        """Return the caller: the bearer token when auth is on.

        Raises:
            GatewayError: 401 when auth is on and the token is missing, malformed,
                forged or expired; 503 when it cannot be checked now.
        """
        if self._verifier is None:
            return User(token=None, key=token_key(None))
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized(
                "missing token: send 'Authorization: Bearer <fame token>' "
                "(mint one with 'fame token create --subject NAME')"
            )
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise _unauthorized("malformed token: expected a fame token (a JWT)")
        try:
            await self._verifier.verify_async(token)
        except TokenRejected as exc:
            if exc.unavailable:
                raise GatewayError(503, exc.reason, code="auth_unavailable") from None
            raise _unauthorized(f"token refused: {exc.reason}") from None
        return User(token=token, key=token_key(token))

    def resolve_model(self, model: str | None) -> str:
        """Return the agent address a request's ``model`` names.

        Raises:
            GatewayError: 404 when it is neither an address nor an alias.
        """
        address = self.settings.resolve_model(model)
        if address is None:
            aliases = ", ".join(sorted(self.settings.aliases)) or "none"
            raise GatewayError(
                404,
                f"the model {model!r} does not exist: use an agent address such as "
                f"{self.settings.default_model} or an alias ({aliases}); GET /v1/models lists them",
                code="model_not_found",
                param="model",
            )
        return address

    @asynccontextmanager
    async def upstream(self, user: User, address: str) -> AsyncIterator[Upstream]:
        """Call ``address`` through ``user``'s link for the duration of the block."""
        async with self.links.link(user.token) as node:
            yield Upstream(node, address, timeout=self.settings.call_timeout)

    @asynccontextmanager
    async def stream_slot(self, user: User) -> AsyncIterator[None]:
        """Hold one of the open-stream slots, globally and for ``user``.

        Raises:
            GatewayError: 429 when either budget is spent.
        """
        total = sum(self._streams.values())
        if total >= self.settings.max_streams:
            raise GatewayError(
                429,
                f"the gateway has {total} streams open, its limit (FAME_GATEWAY_MAX_STREAMS); "
                "try again shortly",
                code="too_many_streams",
                headers={"Retry-After": "1"},
            )
        if self._streams[user.key] >= self.settings.max_streams_per_user:
            raise GatewayError(
                429,
                f"you have {self._streams[user.key]} streams open, the limit per user "
                "(FAME_GATEWAY_MAX_STREAMS_PER_USER); close one or try again shortly",
                code="too_many_streams",
                headers={"Retry-After": "1"},
            )
        self._streams[user.key] += 1
        try:
            yield
        finally:
            self._streams[user.key] -= 1
            if self._streams[user.key] <= 0:
                del self._streams[user.key]

    @property
    def open_streams(self) -> int:
        """Streams open now."""
        return sum(self._streams.values())

    @asynccontextmanager
    async def turn(self, user: User, conversation_id: str, turn_id: str) -> AsyncIterator[None]:
        """Mark a conversation busy with a turn for the duration of the block.

        Raises:
            GatewayError: 409 when a turn of this conversation is already running here.
        """
        key = f"{user.key}:{conversation_id}"
        running = self._busy.get(key)
        if running is not None:
            same = " (the same Idempotency-Key: the first request is still running)"
            raise GatewayError(
                409,
                f"conversation {conversation_id!r} already has a turn in progress"
                f"{same if running == turn_id else ''}; wait for it to finish, then send again",
                code="conversation_busy",
                param="conversation",
            )
        self._busy[key] = turn_id
        try:
            yield
        finally:
            del self._busy[key]
