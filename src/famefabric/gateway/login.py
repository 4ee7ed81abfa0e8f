"""One-time login links: ``make run`` prints a link that signs the web page in once.

When ``FAME_GATEWAY_LOGIN_TOKEN_FILE`` names a file holding a fame token, the
gateway makes a random one-time code at start and writes the link
``http://HOST:PORT/#login=CODE`` to ``FAME_GATEWAY_LOGIN_LINK_FILE`` (mode
0600; ``make run`` prints it). The code is in the URL fragment, which browsers
never send to a server; the page posts it to ``POST /v1/login`` and receives
the token. A code works once and for ``LOGIN_CODE_TTL`` seconds; nothing else
is ever answered with the token.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from famefabric.errors import ConfigurationError
from famefabric.gateway.errors import GatewayError

LOGIN_CODE_TTL = 600.0

router = APIRouter(prefix="/v1", tags=["login"])


class LoginRequest(BaseModel):
    """``POST /v1/login``."""

    model_config = ConfigDict(extra="ignore")
    code: str = Field(min_length=1, max_length=200)


class LoginCodes:
    """The one pending login code and the token it gives.

    Args:
        token: the token a correct code is answered with.
        ttl: seconds a code stays valid.
    """

    def __init__(self, token: str, *, ttl: float = LOGIN_CODE_TTL) -> None:
        self._token = token
        self._ttl = ttl
        self._code: str | None = None
        self._expires = 0.0

    def new_code(self) -> str:
        """Make a new code, replacing any pending one."""
        self._code = secrets.token_urlsafe(24)
        self._expires = time.monotonic() + self._ttl
        return self._code

    def redeem(self, code: str) -> str | None:
        """Return the token for a pending, unexpired ``code`` (once), else None."""
        pending = self._code
        if pending is None or time.monotonic() > self._expires:
            return None
        if not hmac.compare_digest(pending.encode(), code.encode()):
            return None
        self._code = None
        return self._token

    @classmethod
    def from_env(cls) -> LoginCodes | None:
        """Read ``FAME_GATEWAY_LOGIN_TOKEN_FILE``; None when it is not set.

        Raises:
            ConfigurationError: the file cannot be read or is empty.
        """
        path = os.environ.get("FAME_GATEWAY_LOGIN_TOKEN_FILE")
        if not path:
            return None
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"FAME_GATEWAY_LOGIN_TOKEN_FILE={path!r} cannot be read: {exc.strerror}"
            ) from None
        if not token:
            raise ConfigurationError(f"FAME_GATEWAY_LOGIN_TOKEN_FILE={path!r} is empty")
        return cls(token)


def write_link(url: str, code: str) -> None:
    """Write the login link to ``FAME_GATEWAY_LOGIN_LINK_FILE`` (0600), if set."""
    path = os.environ.get("FAME_GATEWAY_LOGIN_LINK_FILE")
    if not path:
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(f"{url}/#login={code}\n")


@router.post("/login", summary="Exchange a one-time login code for a token")
async def login(request: Request, body: LoginRequest) -> dict[str, Any]:
    """Answer a one-time code from a login link with the token it stands for (once)."""
    codes: LoginCodes | None = request.app.state.login_codes
    token = codes.redeem(body.code) if codes is not None else None
    if token is None:
        raise GatewayError(
            401,
            "the login link was not accepted: it works once and expires after "
            f"{int(LOGIN_CODE_TTL // 60)} minutes; restart with 'make run' for a new one, "
            "or sign in with a token ('fame token create --subject NAME')",
            code="invalid_login_code",
        )
    return {"token": token, "token_type": "bearer"}
