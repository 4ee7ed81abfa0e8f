"""A small real identity provider on loopback, for the token and interop tests.

It serves its public keys at ``/jwks.json`` and issues tokens with the OAuth2
client-credentials grant at ``/token`` (HTTP Basic client authentication),
signed RS256 or ES256 with keys it generates. It runs
:class:`http.server.ThreadingHTTPServer` in a thread and counts requests.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


class IdentityProvider:
    """Keys, registered clients and counters of the provider."""

    def __init__(self, algorithm: str = "RS256") -> None:
        self.algorithm = algorithm
        self.kid = "key-1"
        self._private: Any = self._new_key()
        self.clients: dict[str, tuple[str, dict[str, Any]]] = {}
        self.token_lifetime = 300
        self.jwks_fetches = 0
        self.token_requests = 0
        self.audiences_requested: list[str] = []
        self.issuer = "https://idp.example"
        self.audience = "famefabric"
        self.port = 0

    def _new_key(self) -> Any:
        if self.algorithm.startswith("ES"):
            return ec.generate_private_key(ec.SECP256R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def rotate(self, kid: str) -> None:
        """Use a new key with id ``kid`` from now on (the old one is dropped)."""
        self._private = self._new_key()
        self.kid = kid

    def public_key(self) -> Any:
        return self._private.public_key()

    def jwks(self) -> dict[str, Any]:
        algo = ECAlgorithm if self.algorithm.startswith("ES") else RSAAlgorithm
        jwk = json.loads(algo.to_jwk(self._private.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": self.algorithm})
        return {"keys": [jwk]}

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        """Sign ``claims`` (adding iss, aud, exp defaults) with the current key."""
        now = int(time.time())
        body = {"iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + 300}
        body.update(claims)
        return jwt.encode(
            body, self._private, algorithm=self.algorithm, headers={"kid": kid or self.kid}
        )

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"


def _handler(provider: IdentityProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path in ("/jwks.json", "/.well-known/jwks.json"):
                provider.jwks_fetches += 1
                self._json(200, provider.jwks())
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            if self.path != "/token":
                self._json(404, {"error": "not_found"})
                return
            provider.token_requests += 1
            if form.get("grant_type") != ["client_credentials"]:
                self._json(400, {"error": "unsupported_grant_type"})
                return
            scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
            if scheme == "Basic":  # client_secret_basic
                try:
                    pair = base64.b64decode(encoded).decode()
                except ValueError:
                    pair = ""
                client_id, _, secret = pair.partition(":")
                client_id = urllib.parse.unquote(client_id)
                secret = urllib.parse.unquote(secret)
            else:  # client_secret_post
                client_id = (form.get("client_id") or [""])[0]
                secret = (form.get("client_secret") or [""])[0]
            provider.audiences_requested.append((form.get("audience") or [""])[0])
            known = provider.clients.get(client_id)
            if known is None or known[0] != secret:
                self._json(401, {"error": "invalid_client"})
                return
            now = int(time.time())
            claims = {"sub": client_id, "exp": now + provider.token_lifetime, **known[1]}
            self._json(
                200,
                {
                    "access_token": provider.sign(claims),
                    "token_type": "Bearer",
                    "expires_in": provider.token_lifetime,
                },
            )

    return Handler


@contextmanager
def running_provider(algorithm: str = "RS256") -> Iterator[IdentityProvider]:
    """Run an :class:`IdentityProvider` on 127.0.0.1 (a free port) until the block ends."""
    provider = IdentityProvider(algorithm)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="identity-provider", daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
