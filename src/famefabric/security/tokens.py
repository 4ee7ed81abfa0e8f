"""Admission tokens: JWTs whose claims name an identity (docs/PROTOCOL.md §17).

A token's claims are:

- ``sub``: the subject, the identity's name (required);
- ``exp``: when it expires, Unix seconds (required); ``nbf`` and ``iat`` as usual;
- ``fame_serve``: address patterns the holder may bind;
- ``fame_call``: address patterns the holder may send requests to;
- ``fame_admin``: ``true`` for an administrator.

The patterns are those of :mod:`famefabric.routing.permissions`. This module
turns verified claims into an :class:`~famefabric.routing.permissions.Identity`
and mints HS256 tokens for ``fame token create``; the signature checks are in
:mod:`famefabric.security.verifier`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from famefabric.errors import ConfigurationError, TokenRejected
from famefabric.routing.permissions import Identity, Permissions, check_pattern

CLAIM_SERVE = "fame_serve"
CLAIM_CALL = "fame_call"
CLAIM_ADMIN = "fame_admin"
MAX_PATTERNS = 256
"""Most patterns one claim may list."""
MAX_PATTERN_CHARS = 512
MAX_SUBJECT_CHARS = 256
MAX_TOKEN_CHARS = 8192
"""Longest token read; a longer one is refused before any parsing."""
MIN_SECRET_BYTES = 32
"""Shortest shared secret accepted for HS256 (RFC 7518 §3.2: at least the hash size)."""
DEFAULT_TTL = 24 * 3600


def check_secret(secret: bytes, *, where: str) -> bytes:
    """Return ``secret`` if it is long enough to sign HS256 tokens.

    Raises:
        ConfigurationError: it is shorter than :data:`MIN_SECRET_BYTES`; names ``where``
            (the variable or file it came from) but never the secret.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"the shared secret from {where} is {len(secret)} bytes long; it must be at least "
            f"{MIN_SECRET_BYTES} (e.g. the output of 'openssl rand -hex 32')"
        )
    return secret


def read_secret_file(path: str) -> bytes:
    """Read a shared secret from a file (surrounding white space removed).

    Raises:
        ConfigurationError: the file cannot be read or the secret is too short.
    """
    try:
        with open(path, "rb") as file:
            secret = file.read(64 * 1024).strip()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the auth secret file {path}: {exc.strerror or exc}"
        ) from None
    return check_secret(secret, where=path)


def secret_from_env(env: Mapping[str, str], secret_file: str | None = None) -> bytes | None:
    """Return the shared secret: from ``secret_file`` if given, else ``FAME_AUTH_SECRET``; or None.

    Raises:
        ConfigurationError: the file cannot be read or the secret is too short.
    """
    if secret_file:
        return read_secret_file(secret_file)
    if env.get("FAME_AUTH_SECRET"):
        return check_secret(env["FAME_AUTH_SECRET"].encode(), where="FAME_AUTH_SECRET")
    return None


def check_token_text(token: str, *, where: str) -> str:
    """Return ``token`` stripped, if it can be sent as a subprotocol value.

    Raises:
        ConfigurationError: empty, too long, or with characters a WebSocket
            subprotocol cannot carry; names ``where``, never the token.
    """
    token = token.strip()
    if not token:
        raise ConfigurationError(f"the token from {where} is empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise ConfigurationError(
            f"the token from {where} is longer than {MAX_TOKEN_CHARS} characters"
        )
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/=")
    if not set(token) <= allowed:
        raise ConfigurationError(
            f"the token from {where} has characters a JWT cannot contain (is it a token?)"
        )
    return token


def _subject(claims: Mapping[str, Any]) -> str:
    subject = claims.get("sub")
    if type(subject) is not str or not subject:
        raise TokenRejected("the token has no subject (claim 'sub')")
    if len(subject) > MAX_SUBJECT_CHARS or not subject.isprintable():
        raise TokenRejected(
            f"the token's subject is not valid: at most {MAX_SUBJECT_CHARS} printable characters"
        )
    return subject


def _patterns(claims: Mapping[str, Any], name: str, subject: str) -> Permissions:
    value = claims.get(name, [])
    if type(value) is not list:
        raise TokenRejected(
            f"the token's claim {name!r} must be a list of address patterns", subject=subject
        )
    if len(value) > MAX_PATTERNS:
        raise TokenRejected(
            f"the token's claim {name!r} lists more than {MAX_PATTERNS} patterns", subject=subject
        )
    for pattern in value:
        if type(pattern) is not str or len(pattern) > MAX_PATTERN_CHARS:
            raise TokenRejected(
                f"the token's claim {name!r} holds a value that is not an address pattern",
                subject=subject,
            )
        try:
            check_pattern(pattern)
        except ValueError as exc:
            raise TokenRejected(f"the token's claim {name!r}: {exc}", subject=subject) from None
    return Permissions.of(value)


def identity_from_claims(claims: Mapping[str, Any], *, leeway: float = 0.0) -> Identity:
    """Build the identity that verified ``claims`` prove.

    Args:
        claims: the payload of a token whose signature and dates were checked.
        leeway: seconds of clock skew tolerated; the identity expires at
            ``exp + leeway``, as the verification counted it.

    Raises:
        TokenRejected: a claim is missing or has the wrong type.
    """
    subject = _subject(claims)
    admin = claims.get(CLAIM_ADMIN, False)
    if type(admin) is not bool:
        raise TokenRejected(
            f"the token's claim {CLAIM_ADMIN!r} must be true or false", subject=subject
        )
    exp = claims.get("exp")
    expires_at = float(exp) + leeway if isinstance(exp, int | float) else None
    return Identity(
        subject=subject,
        serve=_patterns(claims, CLAIM_SERVE, subject),
        call=_patterns(claims, CLAIM_CALL, subject),
        admin=admin,
        expires_at=expires_at,
    )


def unverified_subject(token: str) -> str | None:
    """Read a token's ``sub`` without checking anything, for logging a refusal; None if unreadable."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if type(subject) is str and 0 < len(subject) <= MAX_SUBJECT_CHARS and subject.isprintable():
        return subject
    return None


def mint_token(
    secret: bytes,
    *,
    subject: str,
    serve: Iterable[str] = (),
    call: Iterable[str] = (),
    admin: bool = False,
    ttl: float = DEFAULT_TTL,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """Sign an HS256 token for ``subject`` with ``secret``.

    Args:
        secret: the shared secret (``FAME_AUTH_SECRET``), at least 32 bytes.
        subject: the identity's name (``sub``).
        serve: address patterns it may bind (``fame_serve``).
        call: address patterns it may call (``fame_call``).
        admin: make it an administrator (``fame_admin``).
        ttl: seconds until it expires.
        audience: the ``aud`` claim (``FAME_JWT_AUDIENCE`` of the sentinels it is for).
        issuer: the ``iss`` claim (``FAME_JWT_TRUSTED_ISSUER``).
        now: the issue time (default: now).

    Raises:
        ConfigurationError: a pattern, the subject, the ttl or the secret is not valid.
    """
    check_secret(secret, where="the given secret")
    if not subject or len(subject) > MAX_SUBJECT_CHARS or not subject.isprintable():
        raise ConfigurationError(
            f"subject {subject!r} is not valid: 1 to {MAX_SUBJECT_CHARS} printable characters"
        )
    if not ttl > 0:
        raise ConfigurationError(f"ttl {ttl!r} must be a positive number of seconds")
    serve_list, call_list = list(serve), list(call)
    for pattern in (*serve_list, *call_list):
        try:
            check_pattern(pattern)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": subject,
        "iat": issued,
        "exp": issued + max(1, int(ttl)),
        "jti": secrets.token_urlsafe(12),
        CLAIM_SERVE: serve_list,
        CLAIM_CALL: call_list,
        CLAIM_ADMIN: admin,
    }
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
