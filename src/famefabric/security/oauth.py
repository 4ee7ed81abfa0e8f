"""A node's token from an OAuth2 client-credentials grant (RFC 6749 §4.4).

``FAME_ADMISSION_TOKEN_URL``, ``FAME_ADMISSION_CLIENT_ID`` and
``FAME_ADMISSION_CLIENT_SECRET`` name the identity provider's token endpoint
and this node's client. The node asks for a token before its first attach
and again once the last one is past :data:`REFRESH_FRACTION` of its lifetime
(or within :data:`REFRESH_MARGIN` seconds of expiry), so a reconnect never
presents an expired token. ``FAME_ADMISSION_SCOPE`` and
``FAME_ADMISSION_AUDIENCE`` are sent when set.

The client authenticates with HTTP Basic (``client_secret_basic``); the
secret travels only to an ``https://`` endpoint (or plain HTTP on loopback).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping

from famefabric.errors import AttachRefused, ConfigurationError, ConnectionClosed
from famefabric.security.jwks import is_safe_url
from famefabric.security.tokens import check_token_text

REFRESH_FRACTION = 0.8
REFRESH_MARGIN = 60.0
DEFAULT_LIFETIME = 300.0
"""Lifetime assumed when the endpoint does not say (``expires_in``)."""
FETCH_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 64 * 1024


class ClientCredentials:
    """Obtains and refreshes a token with the client-credentials grant.

    Args:
        token_url: the token endpoint.
        client_id: this node's client id.
        client_secret: its secret.
        scope: the ``scope`` parameter, if any.
        audience: the ``audience`` parameter, if any (some providers need it).
        clock: wall-clock seconds (tests may pass their own).

    Raises:
        ConfigurationError: the URL is not https (or loopback http), or the id
            or secret is empty.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        audience: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not is_safe_url(token_url):
            raise ConfigurationError(
                f"FAME_ADMISSION_TOKEN_URL={token_url!r} is not valid: expected an https:// "
                "URL (plain http:// only to localhost)"
            )
        if not client_id or not client_secret:
            raise ConfigurationError(
                "FAME_ADMISSION_TOKEN_URL needs FAME_ADMISSION_CLIENT_ID and "
                "FAME_ADMISSION_CLIENT_SECRET"
            )
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._audience = audience
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many tokens were obtained (for tests and logs)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientCredentials:
        """Build from ``FAME_ADMISSION_*`` variables.

        Raises:
            ConfigurationError: a variable is missing or invalid.
        """
        env = os.environ if env is None else env
        return cls(
            env.get("FAME_ADMISSION_TOKEN_URL", ""),
            env.get("FAME_ADMISSION_CLIENT_ID", ""),
            env.get("FAME_ADMISSION_CLIENT_SECRET", ""),
            scope=env.get("FAME_ADMISSION_SCOPE") or None,
            audience=env.get("FAME_ADMISSION_AUDIENCE") or None,
        )

    async def token(self) -> str:
        """Return a token that is not near its expiry, fetching one if needed.

        Raises:
            AttachRefused: the endpoint refused the client (HTTP 400/401/403);
                ``status`` is 401, so the node does not retry in vain.
            ConnectionClosed: the endpoint cannot be reached or answered
                something that is not a token; the node retries with backoff.
        """
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                await asyncio.to_thread(self._fetch)
            assert self._token is not None
            return self._token

    def can_renew(self) -> bool:
        """A new grant may bring a token the sentinel accepts."""
        return True

    def _request(self) -> urllib.request.Request:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        if self._audience:
            form["audience"] = self._audience
        pair = f"{urllib.parse.quote(self.client_id, safe='')}:{urllib.parse.quote(self._secret, safe='')}"
        return urllib.request.Request(
            self.token_url,
            data=urllib.parse.urlencode(form).encode(),
            method="POST",
            headers={
                "Authorization": "Basic " + base64.b64encode(pair.encode()).decode(),
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )

    def _fetch(self) -> None:
        where = f"the token endpoint {self.token_url} (FAME_ADMISSION_TOKEN_URL)"
        started = self._clock()
        try:
            with urllib.request.urlopen(self._request(), timeout=FETCH_TIMEOUT) as response:
                body = response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response and its socket
            if exc.code in (400, 401, 403):
                raise AttachRefused(
                    f"{where} refused client {self.client_id!r} with HTTP {exc.code}: check "
                    "FAME_ADMISSION_CLIENT_ID and FAME_ADMISSION_CLIENT_SECRET",
                    status=401,
                    reason=f"token endpoint answered HTTP {exc.code}",
                ) from None
            raise ConnectionClosed(f"{where} answered HTTP {exc.code}") from None
        except (OSError, urllib.error.URLError) as exc:
            raise ConnectionClosed(f"cannot obtain a token from {where}: {exc}") from None
        try:
            answer = json.loads(body)
            token = check_token_text(str(answer["access_token"]), where=self.token_url)
            lifetime = float(answer.get("expires_in", DEFAULT_LIFETIME))
        except (ValueError, KeyError, TypeError, ConfigurationError):
            raise ConnectionClosed(f"{where} did not answer with an access token") from None
        lifetime = max(lifetime, 1.0)
        self._token = token
        self._refresh_at = started + min(
            lifetime * REFRESH_FRACTION, max(lifetime - REFRESH_MARGIN, lifetime / 2)
        )
        self.fetches += 1
