"""Admission: who a WebSocket handshake is, decided before anything else (PROTOCOL.md §17).

With a :class:`~famefabric.security.TokenVerifier` (auth on), every attach
must carry a bearer token, in the subprotocol pair ``bearer, <token>`` or an
``Authorization: Bearer`` header. A missing, malformed, forged, expired or
wrong-audience token is answered with HTTP 401 and a one-line reason; the
refusal is logged at WARNING with the subject when the token names one,
never with the token. Nothing a refused connection sends is read: the
WebSocket is never opened.

Without a verifier (open mode) every connection is anonymous, and each
anonymous attach is logged.
"""

from __future__ import annotations

import ipaddress
import logging
import weakref
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from famefabric.errors import ConfigurationError, TokenRejected
from famefabric.routing.permissions import Identity
from famefabric.security import TokenVerifier, bearer_token

log = logging.getLogger("famefabric.sentinel.admission")


def refusal(connection: ServerConnection, status: HTTPStatus, reason: str) -> Response:
    """Return an HTTP refusal whose body is ``reason`` on one line."""
    response = connection.respond(status, reason.replace("\n", " ") + "\n")
    if status is HTTPStatus.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="famefabric"'
    return response


class Admission:
    """Verifies attach handshakes and remembers each admitted connection's identity.

    Args:
        verifier: checks tokens; None for open mode (every connection anonymous).
    """

    def __init__(self, verifier: TokenVerifier | None) -> None:
        self._verifier = verifier
        self._identities: weakref.WeakKeyDictionary[ServerConnection, Identity] = (
            weakref.WeakKeyDictionary()
        )
        self.refused = 0
        """How many handshakes were refused."""

    @property
    def is_open(self) -> bool:
        """Tell whether connections are admitted without a token."""
        return self._verifier is None

    def describe(self) -> str:
        """Say how attaches are authenticated, for the start-up log."""
        if self._verifier is None:
            return "open mode: attaches are anonymous and may bind and call any address"
        return f"tokens required, verified {self._verifier.describe()}"

    async def admit(
        self, connection: ServerConnection, request: Request, child: str
    ) -> Response | None:
        """Verify the handshake of ``child``; return a refusal, or None to go on.

        The identity of an admitted connection is kept for :meth:`identity_of`.
        """
        if self._verifier is None:
            return None
        headers = request.headers
        token = bearer_token(
            headers.get_all("Sec-WebSocket-Protocol"), headers.get("Authorization")
        )
        peer = _peer(connection)
        if token is None:
            return self._refuse(
                connection,
                TokenRejected(
                    "no token: send 'bearer, <token>' as Sec-WebSocket-Protocol "
                    "or an 'Authorization: Bearer' header"
                ),
                child,
                peer,
            )
        try:
            identity = await self._verifier.verify_async(token)
        except TokenRejected as exc:
            return self._refuse(connection, exc, child, peer)
        self._identities[connection] = identity
        return None

    def identity_of(self, connection: ServerConnection) -> Identity | None:
        """Return (and forget) the identity admitted for ``connection``; None in open mode."""
        return self._identities.pop(connection, None)

    def _refuse(
        self, connection: ServerConnection, exc: TokenRejected, child: str, peer: str
    ) -> Response:
        self.refused += 1
        who = f" (subject {exc.subject!r})" if exc.subject else ""
        log.warning("refused the attach of %s from %s%s: %s", child, peer, who, exc.reason)
        status = HTTPStatus.SERVICE_UNAVAILABLE if exc.unavailable else HTTPStatus.UNAUTHORIZED
        return refusal(connection, status, exc.reason)


def _peer(connection: ServerConnection) -> str:
    remote = connection.remote_address
    return f"{remote[0]}:{remote[1]}" if isinstance(remote, tuple) else str(remote)


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` is a loopback interface (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_host(host: str | None, *, authenticated: bool, insecure: bool = False) -> str:
    """Choose the interface to listen on, safely (README "Security").

    Without authentication the sentinel listens on 127.0.0.1 only: any other
    interface would let whoever reaches the port bind any address and read
    every conversation. ``insecure`` allows it anyway, with a warning at
    every start.

    Args:
        host: the interface asked for (``--host``); None for the default,
            ``0.0.0.0`` with authentication and ``127.0.0.1`` without.
        authenticated: tokens are verified.
        insecure: ``--insecure`` was given.

    Raises:
        ConfigurationError: a non-loopback interface without authentication
            and without ``insecure``.
    """
    if host is None:
        return "0.0.0.0" if authenticated else "127.0.0.1"
    if authenticated or is_loopback(host):
        return host
    if not insecure:
        raise ConfigurationError(
            f"refusing to listen on {host} without authentication: anyone who can reach the "
            "port could bind any address and read every conversation. Set FAME_AUTH_SECRET "
            "(or --auth-secret-file, or FAME_JWKS_URL), listen on 127.0.0.1, or pass "
            "--insecure to accept the risk"
        )
    log.warning(
        "INSECURE: listening on %s without authentication (--insecure): anyone who can reach "
        "this port can bind any address and call any agent as anyone",
        host,
    )
    return host
