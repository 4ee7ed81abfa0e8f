"""Where a node gets the token it presents when attaching.

A :class:`TokenProvider` answers :meth:`~TokenProvider.token` before every
connection attempt; the node sends the answer as the WebSocket subprotocol
pair ``bearer, <token>`` (PROTOCOL.md §17). :func:`token_provider_from_env`
reads, in this order:

- ``FAME_TOKEN``: the token itself (:class:`StaticToken`);
- ``FAME_TOKEN_FILE``: a file holding it, read again at every attempt, so a
  rotated file is picked up on reconnect (:class:`FileToken`);
- ``FAME_ADMISSION_TOKEN_URL`` with ``FAME_ADMISSION_CLIENT_ID`` and
  ``FAME_ADMISSION_CLIENT_SECRET``: an OAuth2 client-credentials grant
  (:class:`~famefabric.security.oauth.ClientCredentials`).

Tokens never go on a command line: ``ps`` shows every process's arguments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from famefabric.errors import ConfigurationError
from famefabric.security.oauth import ClientCredentials
from famefabric.security.tokens import MAX_TOKEN_CHARS, check_token_text


@runtime_checkable
class TokenProvider(Protocol):
    """Supplies the bearer token of the next connection attempt."""

    async def token(self) -> str:
        """Return the token to present now (fetching or refreshing it if needed).

        Raises:
            ConfigurationError: the token cannot be obtained (the message says why).
        """
        ...

    def can_renew(self) -> bool:
        """Tell whether the next :meth:`token` may differ from the last one.

        After a 401, a node retries only if this is True.
        """
        ...


class StaticToken:
    """One fixed token (``FAME_TOKEN``)."""

    def __init__(self, token: str, *, where: str = "FAME_TOKEN") -> None:
        self._token = check_token_text(token, where=where)

    async def token(self) -> str:
        """Return the token."""
        return self._token

    def can_renew(self) -> bool:
        """A fixed token never changes."""
        return False


class FileToken:
    """A token read from a file at every connection attempt (``FAME_TOKEN_FILE``).

    Raises:
        ConfigurationError: (from :meth:`token`) the file cannot be read or holds no token.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._last: str | None = None

    def _read(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as file:
                text = file.read(MAX_TOKEN_CHARS + 64)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read the token file {self.path} (FAME_TOKEN_FILE): "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
        return check_token_text(text, where=self.path)

    async def token(self) -> str:
        """Read the file and return its token."""
        self._last = self._read()
        return self._last

    def can_renew(self) -> bool:
        """Tell whether the file now holds another token than the one last presented."""
        try:
            return self._read() != self._last
        except ConfigurationError:
            return False


def token_provider_from_env(env: Mapping[str, str] | None = None) -> TokenProvider | None:
    """Return the token provider the environment configures; None for an anonymous node.

    Raises:
        ConfigurationError: more than one source is set, or one is incomplete.
    """
    env = os.environ if env is None else env
    sources = [
        key for key in ("FAME_TOKEN", "FAME_TOKEN_FILE", "FAME_ADMISSION_TOKEN_URL") if env.get(key)
    ]
    if len(sources) > 1:
        raise ConfigurationError(
            f"{' and '.join(sources)} are all set: set only one way to obtain the node's token"
        )
    if not sources:
        return None
    if sources[0] == "FAME_TOKEN":
        return StaticToken(env["FAME_TOKEN"])
    if sources[0] == "FAME_TOKEN_FILE":
        return FileToken(env["FAME_TOKEN_FILE"])
    return ClientCredentials.from_env(env)
