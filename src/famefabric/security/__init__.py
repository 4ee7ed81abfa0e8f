"""Security of the fabric: admission tokens, their verification, and node credentials.

The public API, for the sentinel, the nodes and any other server of the
fabric (e.g. an HTTP gateway that accepts the same tokens):

- :class:`TokenVerifier` (``TokenVerifier.from_env()``; ``verify`` /
  ``verify_async``): a bearer token string to an
  :class:`~famefabric.routing.permissions.Identity`, or :class:`TokenRejected`;
- :func:`bearer_token`: the token a request carries, from the ``bearer``
  subprotocol pair or an ``Authorization: Bearer`` header;
- :class:`TokenProvider` and :func:`token_provider_from_env`: what a node
  presents (``FAME_TOKEN``, ``FAME_TOKEN_FILE`` or OAuth2 client credentials);
- :func:`mint_token`: sign an HS256 token (``fame token create``).

See docs/PROTOCOL.md §17 and the README's "Security" section.
"""

from famefabric.errors import TokenRejected
from famefabric.routing.permissions import Identity
from famefabric.security.bearer import bearer_token
from famefabric.security.oauth import ClientCredentials
from famefabric.security.providers import (
    FileToken,
    StaticToken,
    TokenProvider,
    token_provider_from_env,
)
from famefabric.security.tokens import mint_token, read_secret_file, secret_from_env
from famefabric.security.verifier import TokenVerifier

__all__ = [
    "ClientCredentials",
    "FileToken",
    "Identity",
    "StaticToken",
    "TokenProvider",
    "TokenRejected",
    "TokenVerifier",
    "bearer_token",
    "mint_token",
    "read_secret_file",
    "secret_from_env",
    "token_provider_from_env",
]
