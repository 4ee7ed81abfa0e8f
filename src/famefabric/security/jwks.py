"""An identity provider's signing keys, fetched from its JWKS URL, cached and refreshed.

PyJWT's :class:`jwt.PyJWKClient` does the fetching and parsing. This class
adds what a server that anyone can reach needs: the key set is kept for
``lifespan`` seconds, and a token naming an unknown key id triggers a
refetch at most once every ``min_refresh`` seconds, so forged key ids cannot
make the sentinel hammer the identity provider. Calls block (they may fetch);
run them in a thread from async code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import jwt
from jwt import PyJWK, PyJWKClient

from famefabric.errors import ConfigurationError, TokenRejected

DEFAULT_LIFESPAN = 300.0
DEFAULT_MIN_REFRESH = 10.0
FETCH_TIMEOUT = 5


def is_safe_url(url: str) -> bool:
    """Tell whether ``url`` is ``https://``, or ``http://`` to a loopback host.

    Keys fetched, or secrets sent, over plain HTTP to another host could be
    read or replaced on the way.
    """
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    return bool(parts.hostname) and (
        parts.scheme == "https" or (parts.scheme == "http" and loopback)
    )


def check_jwks_url(url: str) -> str:
    """Return ``url`` if :func:`is_safe_url`.

    Raises:
        ConfigurationError: another scheme, or plain HTTP to another host.
    """
    if is_safe_url(url):
        return url
    raise ConfigurationError(
        f"FAME_JWKS_URL={url!r} is not valid: expected an https:// URL "
        "(plain http:// only to localhost)"
    )


class JwksKeys:
    """The keys of one JWKS URL, by key id.

    Args:
        url: the JWKS URL (``FAME_JWKS_URL``).
        lifespan: seconds a fetched key set is used before it is fetched again.
        min_refresh: least seconds between two fetches caused by unknown key ids.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        url: str,
        *,
        lifespan: float = DEFAULT_LIFESPAN,
        min_refresh: float = DEFAULT_MIN_REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_jwks_url(url)
        self._client = PyJWKClient(
            url, cache_keys=False, cache_jwk_set=False, timeout=FETCH_TIMEOUT
        )
        self._lifespan = lifespan
        self._min_refresh = min_refresh
        self._clock = clock
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        try:
            keys = self._client.get_signing_keys(refresh=True)
        except jwt.PyJWKClientError as exc:
            raise TokenRejected(
                f"cannot verify tokens now: the key set at {self.url} cannot be fetched ({exc})",
                unavailable=True,
            ) from None
        self._keys = {key.key_id: key for key in keys}
        self._fetched_at = self._clock()

    def key_for(self, key_id: str | None) -> PyJWK:
        """Return the key a token's header names (``kid``; None: the only key).

        Raises:
            TokenRejected: no such key, even after a refresh allowed now, or the
                key set cannot be fetched.
        """
        with self._lock:
            now = self._clock()
            age = None if self._fetched_at is None else now - self._fetched_at
            known = key_id in self._keys or (key_id is None and len(self._keys) == 1)
            if age is None or age >= self._lifespan or (not known and age >= self._min_refresh):
                self._fetch()
            if key_id is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            key = self._keys.get(key_id)
        if key is None:
            named = f"key id {key_id!r}" if key_id is not None else "no key id"
            raise TokenRejected(f"the token names {named}, which {self.url} does not hold")
        return key
