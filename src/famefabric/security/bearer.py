"""Finding the bearer token in a WebSocket handshake or HTTP request (PROTOCOL.md §17).

Browsers cannot set headers on a WebSocket, so the token travels as the
subprotocol pair ``Sec-WebSocket-Protocol: bearer, <token>`` (the server
selects ``bearer``); other clients may send ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

from collections.abc import Iterable

SUBPROTOCOL = "bearer"


def subprotocols_for(token: str) -> list[str]:
    """Return the subprotocols a client offers to present ``token``."""
    return [SUBPROTOCOL, token]


def bearer_token(protocol_headers: Iterable[str], authorization: str | None) -> str | None:
    """Return the token of a request, or None when it carries none.

    Args:
        protocol_headers: every ``Sec-WebSocket-Protocol`` header value.
        authorization: the ``Authorization`` header, if any.

    The subprotocol pair wins when both are present. ``bearer`` must be the
    first subprotocol offered and the token the second.
    """
    offered = [
        item.strip() for value in protocol_headers for item in value.split(",") if item.strip()
    ]
    if len(offered) >= 2 and offered[0] == SUBPROTOCOL:
        return offered[1]
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None
