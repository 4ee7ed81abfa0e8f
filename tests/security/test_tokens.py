"""Token validation: signatures, dates with clock skew, audience, issuer, claims, JWKS keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support.identity_provider import running_provider

from famefabric.errors import ConfigurationError, TokenRejected
from famefabric.security import TokenVerifier, mint_token
from famefabric.security.jwks import JwksKeys

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32


def hs256(claims: dict[str, Any], secret: bytes = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def verifier(**options: Any) -> TokenVerifier:
    return TokenVerifier(secret=SECRET, **options)


def test_a_minted_token_proves_its_subject_and_permissions() -> None:
    token = mint_token(
        SECRET, subject="agent-svc", serve=["chat@fame.fabric"], call=["*@fame.fabric"], ttl=60
    )
    identity = verifier(leeway=5).verify(token)
    assert identity.subject == "agent-svc"
    assert identity.may_serve("chat@fame.fabric") and not identity.may_serve("x@fame.fabric")
    assert identity.may_call("echo@fame.fabric") and not identity.may_call("echo@other.net")
    assert identity.admin is False
    assert identity.expires_at is not None
    assert time.time() + 60 <= identity.expires_at <= time.time() + 66


def test_admin_claim_is_carried() -> None:
    assert verifier().verify(mint_token(SECRET, subject="root", admin=True)).admin is True


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-10, True), (-29, True), (-31, False), (-3600, False)],
)
def test_exp_is_checked_with_the_leeway(offset: int, accepted: bool) -> None:
    token = hs256({"sub": "a", "exp": int(time.time()) + offset})
    if accepted:
        assert verifier(leeway=30).verify(token).subject == "a"
    else:
        with pytest.raises(TokenRejected, match="the token has expired") as info:
            verifier(leeway=30).verify(token)
        assert info.value.subject == "a"


@pytest.mark.parametrize(("offset", "accepted"), [(10, True), (29, True), (31, False)])
def test_nbf_in_the_future_is_tolerated_only_within_the_leeway(offset: int, accepted: bool) -> None:
    now = int(time.time())
    token = hs256({"sub": "a", "exp": now + 600, "nbf": now + offset})
    if accepted:
        assert verifier(leeway=30).verify(token).subject == "a"
    else:
        with pytest.raises(TokenRejected, match="not valid yet"):
            verifier(leeway=30).verify(token)


def test_without_leeway_a_just_expired_token_is_refused() -> None:
    token = hs256({"sub": "a", "exp": int(time.time()) - 2})
    with pytest.raises(TokenRejected, match="expired"):
        verifier(leeway=0).verify(token)


def test_an_accepted_token_in_its_leeway_expires_at_exp_plus_leeway() -> None:
    exp = int(time.time()) - 5
    identity = verifier(leeway=30).verify(hs256({"sub": "a", "exp": exp}))
    assert identity.expires_at == exp + 30


@pytest.mark.parametrize(
    ("token_of", "reason"),
    [
        (lambda: hs256({"sub": "a", "exp": int(time.time()) + 60}, OTHER_SECRET), "signature"),
        (lambda: hs256({"sub": "a"}), "lacks the claim 'exp'"),
        (lambda: hs256({"exp": int(time.time()) + 60}), "lacks the claim 'sub'"),
        (lambda: "not-a-token", "not a JWT"),
        (lambda: "x" * 9000, "longer than"),
        (
            lambda: jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, None, algorithm="none"),
            "'none'",
        ),
        (
            lambda: hs256({"sub": "a", "exp": int(time.time()) + 60, "fame_serve": "chat"}),
            "must be a list",
        ),
        (
            lambda: hs256({"sub": "a", "exp": int(time.time()) + 60, "fame_call": ["a b"]}),
            "fame_call",
        ),
        (
            lambda: hs256({"sub": "a", "exp": int(time.time()) + 60, "fame_admin": "yes"}),
            "true or false",
        ),
        (lambda: hs256({"sub": "a\nb", "exp": int(time.time()) + 60}), "subject is not valid"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(token_of: Any, reason: str) -> None:
    token = token_of()
    with pytest.raises(TokenRejected) as info:
        verifier().verify(token)
    assert reason in info.value.reason
    assert token not in str(info.value)


def test_audience_and_issuer_are_required_when_configured() -> None:
    v = verifier(audience="fabric-a", issuer="issuer-a")
    exp = int(time.time()) + 60
    good = hs256({"sub": "a", "exp": exp, "aud": "fabric-a", "iss": "issuer-a"})
    assert v.verify(good).subject == "a"
    with pytest.raises(TokenRejected, match="another audience"):
        v.verify(hs256({"sub": "a", "exp": exp, "aud": "fabric-b", "iss": "issuer-a"}))
    with pytest.raises(TokenRejected, match="untrusted issuer"):
        v.verify(hs256({"sub": "a", "exp": exp, "aud": "fabric-a", "iss": "issuer-b"}))
    with pytest.raises(TokenRejected, match="'aud'"):
        v.verify(hs256({"sub": "a", "exp": exp, "iss": "issuer-a"}))


def test_a_token_meant_for_an_audience_is_refused_where_none_is_configured() -> None:
    token = hs256({"sub": "a", "exp": int(time.time()) + 60, "aud": "elsewhere"})
    with pytest.raises(TokenRejected, match="another audience"):
        verifier().verify(token)


def test_short_secrets_and_unknown_algorithms_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        TokenVerifier(secret=b"short")
    with pytest.raises(ConfigurationError, match="at least 32"):
        mint_token(b"short", subject="a")
    with pytest.raises(ConfigurationError, match="HS256 is implied"):
        TokenVerifier(secret=SECRET, algorithm="HS256")
    with pytest.raises(ConfigurationError, match="needs a shared secret or a JWKS URL"):
        TokenVerifier()


def test_from_env_reads_the_secret_or_nothing(tmp_path: Any) -> None:
    assert TokenVerifier.from_env({}) is None
    with pytest.raises(ConfigurationError, match="FAME_JWT_AUDIENCE is set but no token"):
        TokenVerifier.from_env({"FAME_JWT_AUDIENCE": "x"})
    with pytest.raises(ConfigurationError, match="FAME_AUTH_SECRET is 5 bytes") as info:
        TokenVerifier.from_env({"FAME_AUTH_SECRET": "short"})
    assert "short" not in str(info.value).replace("FAME_AUTH_SECRET is 5 bytes", "")
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    v = TokenVerifier.from_env({}, secret_file=str(path))
    assert v is not None and v.verify(mint_token(SECRET, subject="f")).subject == "f"
    with pytest.raises(ConfigurationError, match="cannot read the auth secret file"):
        TokenVerifier.from_env({}, secret_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="not valid: expected an https"):
        TokenVerifier.from_env({"FAME_JWKS_URL": "http://idp.example/jwks.json"})


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_provider_tokens_are_verified_with_fetched_keys(algorithm: str) -> None:
    with running_provider(algorithm) as idp:
        v = TokenVerifier.from_env(
            {
                "FAME_JWKS_URL": idp.jwks_url,
                "FAME_JWT_ALGORITHM": algorithm,
                "FAME_JWT_TRUSTED_ISSUER": idp.issuer,
                "FAME_JWT_AUDIENCE": idp.audience,
            }
        )
        assert v is not None
        for n in range(5):
            identity = v.verify(idp.sign({"sub": f"svc{n}", "fame_serve": ["a@b.c"]}))
            assert identity.subject == f"svc{n}" and identity.may_serve("a@b.c")
        assert idp.jwks_fetches == 1  # cached
        with pytest.raises(TokenRejected, match="another audience"):
            v.verify(idp.sign({"sub": "x", "aud": "other"}))
        with pytest.raises(TokenRejected, match="signature"):
            forged = jwt.encode(
                {"sub": "x", "iss": idp.issuer, "aud": idp.audience, "exp": int(time.time()) + 60},
                other_key(algorithm),
                algorithm=algorithm,
                headers={"kid": idp.kid},
            )
            v.verify(forged)


def other_key(algorithm: str) -> Any:
    if algorithm.startswith("ES"):
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def hs256_by_hand(claims: dict[str, Any], key: bytes) -> str:
    """HS256 without PyJWT's guard against asymmetric keys used as secrets."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + b"."
        + b64(json.dumps(claims).encode())
    )
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def test_a_hs256_token_cannot_pass_as_a_provider_token() -> None:
    with running_provider() as idp:
        v = TokenVerifier(jwks=JwksKeys(idp.jwks_url), issuer=idp.issuer)
        # Signed with the provider's *public* key as an HMAC secret: the classic confusion.
        public_pem = idp.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        token = hs256_by_hand({"sub": "x", "exp": int(time.time()) + 60}, public_pem)
        with pytest.raises(TokenRejected, match="does not accept"):
            v.verify(token)


def test_rotated_keys_are_fetched_but_unknown_key_ids_do_not_hammer_the_provider() -> None:
    clock = [1000.0]
    with running_provider() as idp:
        keys = JwksKeys(idp.jwks_url, lifespan=300, min_refresh=10, clock=lambda: clock[0])
        v = TokenVerifier(jwks=keys, issuer=idp.issuer, audience=idp.audience)
        assert v.verify(idp.sign({"sub": "a"})).subject == "a"
        assert idp.jwks_fetches == 1
        for _ in range(20):
            with pytest.raises(TokenRejected, match="does not hold"):
                v.verify(idp.sign({"sub": "a"}, kid="forged-kid"))
        assert idp.jwks_fetches == 1  # unknown ids within min_refresh: no refetch
        idp.rotate("key-2")
        clock[0] += 11
        assert v.verify(idp.sign({"sub": "b"})).subject == "b"
        assert idp.jwks_fetches == 2
        clock[0] += 301
        assert v.verify(idp.sign({"sub": "c"})).subject == "c"
        assert idp.jwks_fetches == 3  # lifespan over: refreshed


def test_an_unreachable_key_set_is_an_unavailable_refusal() -> None:
    with running_provider() as idp:
        url = idp.jwks_url
        token = idp.sign({"sub": "a"})
    v = TokenVerifier(jwks=JwksKeys(url))
    with pytest.raises(TokenRejected, match="cannot be fetched") as info:
        v.verify(token)
    assert info.value.unavailable is True
