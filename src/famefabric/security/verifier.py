"""Verifying admission tokens: HS256 with a shared secret, or an identity provider's keys.

:class:`TokenVerifier` checks a token's signature, ``exp``, ``nbf``,
audience and issuer with PyJWT, then turns its claims into an
:class:`~famefabric.routing.permissions.Identity`. It is what the sentinel
runs at every attach, and what any other server of the fabric (an HTTP
gateway) can run on a bearer token.

Configuration (:meth:`TokenVerifier.from_env`):

- ``FAME_AUTH_SECRET`` (or a file, ``--auth-secret-file``): HS256 tokens
  signed with this secret, as ``fame token create`` mints them;
- ``FAME_JWKS_URL``: RS256/ES256 tokens from an identity provider, whose keys
  are fetched from this URL, cached and refreshed; ``FAME_JWT_ALGORITHM``
  (default RS256) is the one algorithm accepted from it;
- ``FAME_JWT_TRUSTED_ISSUER``: the required ``iss``; ``FAME_JWT_AUDIENCE``:
  the required ``aud`` (either check is skipped when unset);
- ``FAME_JWT_LEEWAY``: seconds of clock skew tolerated on ``exp``/``nbf`` (default 30).

Both a secret and a JWKS URL may be set: a token's header says which applies
(``HS256`` the secret, anything else the provider's keys), and each key only
ever verifies its own algorithm, so one can never be passed off as the other.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import jwt

from famefabric.errors import ConfigurationError, TokenRejected
from famefabric.routing.permissions import Identity
from famefabric.security.jwks import JwksKeys
from famefabric.security.tokens import (
    MAX_TOKEN_CHARS,
    check_secret,
    identity_from_claims,
    secret_from_env,
    unverified_subject,
)
from famefabric.settings import env_float

DEFAULT_LEEWAY = 30.0
PROVIDER_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
SECRET_ALGORITHM = "HS256"


class TokenVerifier:
    """Checks admission tokens and says whom they name.

    Args:
        secret: the HS256 shared secret (at least 32 bytes), or None.
        jwks: the identity provider's keys, or None. At least one of both.
        algorithm: the one algorithm accepted with ``jwks``.
        issuer: the required ``iss``, or None.
        audience: the required ``aud``, or None (then a token carrying an
            ``aud`` is refused: it was meant for another service).
        leeway: seconds of clock skew tolerated on ``exp`` and ``nbf``.

    Raises:
        ConfigurationError: neither a secret nor keys, a short secret, or an
            algorithm that is not an asymmetric JWS algorithm.
    """

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        jwks: JwksKeys | None = None,
        algorithm: str = "RS256",
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = DEFAULT_LEEWAY,
    ) -> None:
        if secret is None and jwks is None:
            raise ConfigurationError("a token verifier needs a shared secret or a JWKS URL")
        if secret is not None:
            check_secret(secret, where="the shared secret")
        if algorithm not in PROVIDER_ALGORITHMS:
            raise ConfigurationError(
                f"FAME_JWT_ALGORITHM={algorithm!r} is not supported: expected one of "
                f"{', '.join(sorted(PROVIDER_ALGORITHMS))} (HS256 is implied by FAME_AUTH_SECRET)"
            )
        self._secret = secret
        self._jwks = jwks
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, secret_file: str | None = None
    ) -> TokenVerifier | None:
        """Build the verifier the environment describes; None when auth is not configured.

        Args:
            env: the variables (default: the process environment).
            secret_file: a file holding the shared secret (``--auth-secret-file``);
                it wins over ``FAME_AUTH_SECRET``.

        Raises:
            ConfigurationError: a variable has an invalid value; names it, never a secret.
        """
        env = os.environ if env is None else env
        secret = secret_from_env(env, secret_file)
        jwks_url = env.get("FAME_JWKS_URL") or None
        if secret is None and jwks_url is None:
            for key in ("FAME_JWT_TRUSTED_ISSUER", "FAME_JWT_AUDIENCE", "FAME_JWT_ALGORITHM"):
                if env.get(key):
                    raise ConfigurationError(
                        f"{key} is set but no token is verified: set FAME_JWKS_URL "
                        "or FAME_AUTH_SECRET too"
                    )
            return None
        return cls(
            secret=secret,
            jwks=JwksKeys(jwks_url) if jwks_url else None,
            algorithm=env.get("FAME_JWT_ALGORITHM") or "RS256",
            issuer=env.get("FAME_JWT_TRUSTED_ISSUER") or None,
            audience=env.get("FAME_JWT_AUDIENCE") or None,
            leeway=env_float(env, "FAME_JWT_LEEWAY", DEFAULT_LEEWAY),
        )

    @property
    def uses_provider(self) -> bool:
        """Tell whether tokens may need keys fetched from an identity provider."""
        return self._jwks is not None

    def describe(self) -> str:
        """Say how tokens are verified, for the start-up log (never a secret)."""
        parts = []
        if self._secret is not None:
            parts.append("HS256 with the shared secret")
        if self._jwks is not None:
            parts.append(f"{self._algorithm} with the keys of {self._jwks.url}")
        text = " or ".join(parts)
        if self._issuer:
            text += f", issuer {self._issuer!r}"
        if self._audience:
            text += f", audience {self._audience!r}"
        return text

    def verify(self, token: str) -> Identity:
        """Check ``token`` and return the identity it proves.

        May block while fetching an identity provider's keys; async code
        calls :meth:`verify_async`.

        Raises:
            TokenRejected: the token is malformed, forged, expired, not yet
                valid, for another audience or issuer, or its claims are invalid.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRejected(f"the token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRejected("the token is not a JWT") from None
        algorithm = header.get("alg")
        key: Any
        if algorithm == SECRET_ALGORITHM and self._secret is not None:
            key = self._secret
        elif algorithm == self._algorithm and self._jwks is not None:
            kid = header.get("kid")
            if kid is not None and type(kid) is not str:
                raise TokenRejected("the token's key id is not a string")
            try:
                key = self._jwks.key_for(kid).key
            except TokenRejected as exc:
                raise TokenRejected(
                    exc.reason, subject=unverified_subject(token), unavailable=exc.unavailable
                ) from None
        else:
            raise TokenRejected(
                f"the token is signed with {str(algorithm)[:20]!r}, which this sentinel "
                "does not accept",
                subject=unverified_subject(token),
            )
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(_wording(exc), subject=unverified_subject(token)) from None
        return identity_from_claims(claims, leeway=self._leeway)

    async def verify_async(self, token: str) -> Identity:
        """:meth:`verify` without blocking the event loop (keys are fetched in a thread).

        Raises:
            TokenRejected: see :meth:`verify`.
        """
        if self._jwks is None:
            return self.verify(token)
        return await asyncio.to_thread(self.verify, token)


def _wording(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet (nbf or iat in the future)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token is for another audience (aud)"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token is from an untrusted issuer (iss)"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature is not valid"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the claim {exc.claim!r}"
    if isinstance(exc, jwt.DecodeError):
        return "the token is not a valid JWT"
    return f"the token is not valid ({type(exc).__name__})"
