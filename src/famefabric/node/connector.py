"""The default way a node opens its link: a WebSocket with its credentials (PROTOCOL.md §17).

Before every connection attempt the node asks its
:class:`~famefabric.security.TokenProvider` for the token to present (so a
rotated file or a refreshed OAuth2 token is used on reconnect) and dials
``wss://`` URLs with its TLS context.
"""

from __future__ import annotations

import ssl

from famefabric.node.link import Connector
from famefabric.security import TokenProvider
from famefabric.transport import websocket
from famefabric.transport.base import Transport


def websocket_connector(
    token: TokenProvider | None = None, tls: ssl.SSLContext | None = None
) -> Connector:
    """Return a connector that presents ``token``'s current token and trusts ``tls``.

    Errors of the provider propagate: :class:`~famefabric.errors.ConfigurationError`
    (the token cannot be read: final), :class:`~famefabric.errors.ConnectionClosed`
    (the token endpoint is unreachable: the node retries).
    """

    async def connect(url: str) -> Transport:
        bearer = await token.token() if token is not None else None
        return await websocket.connect(url, token=bearer, ssl=tls)

    return connect
