"""The gateway's settings, read once from the environment (``FAME_GATEWAY_*``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from famefabric.errors import ConfigurationError, ProtocolError
from famefabric.protocol.address import parse_address
from famefabric.settings import env_float, env_int

DEFAULT_GATEWAY_PORT = 8080
DEFAULT_MODEL = "chat@fame.fabric"
DEFAULT_ALIASES = {"chat": DEFAULT_MODEL, "fame-chat": DEFAULT_MODEL}
AUTH_VARIABLES = ("FAME_AUTH_SECRET", "FAME_AUTH_SECRET_FILE", "FAME_JWKS_URL")
"""Any of these set means the fabric runs with tokens, and so does the gateway."""


def _parse_aliases(raw: str) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for entry in raw.split(","):
        if not entry.strip():
            continue
        name, sep, address = entry.partition("=")
        name, address = name.strip(), address.strip()
        if not sep or not name or "@" in name:
            raise ConfigurationError(
                f"FAME_GATEWAY_ALIASES entry {entry!r} is not NAME=ADDRESS (NAME without '@')"
            )
        aliases[name] = _check_address("FAME_GATEWAY_ALIASES", address)
    return aliases


def _check_address(key: str, address: str) -> str:
    try:
        parse_address(address)
    except ProtocolError as exc:
        raise ConfigurationError(f"{key}: {address!r} is not an address: {exc}") from None
    return address


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """What ``fame gateway`` runs with.

    Attributes:
        host: ``FAME_GATEWAY_HOST``; default 127.0.0.1, or 0.0.0.0 when auth is on.
        port: ``FAME_GATEWAY_PORT`` (default 8080; 0 picks a free one).
        auth: whether callers must present a fame token (``Authorization: Bearer``);
            on when the fabric's auth is configured (``FAME_AUTH_SECRET``,
            ``FAME_AUTH_SECRET_FILE`` or ``FAME_JWKS_URL``).
        default_model: ``FAME_GATEWAY_DEFAULT_MODEL``, the address used when a
            request names no model (default ``chat@fame.fabric``).
        aliases: ``FAME_GATEWAY_ALIASES`` (``name=address,...``), model names that
            stand for an address; ``chat`` and ``fame-chat`` name the chat agent.
        max_body_bytes: ``FAME_GATEWAY_MAX_BODY_BYTES``, the largest request body (1 MiB).
        max_streams: ``FAME_GATEWAY_MAX_STREAMS``, streamed responses open at once (256).
        max_streams_per_user: ``FAME_GATEWAY_MAX_STREAMS_PER_USER`` (16).
        max_links: ``FAME_GATEWAY_MAX_LINKS``, fabric links held for users at once (256).
        link_idle_seconds: ``FAME_GATEWAY_LINK_IDLE_SECONDS``, an unused link closes after (300).
        call_timeout: ``FAME_GATEWAY_CALL_TIMEOUT``, seconds a whole reply (or the
            silence between two streamed pieces) may take (120).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_GATEWAY_PORT
    auth: bool = False
    default_model: str = DEFAULT_MODEL
    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    max_body_bytes: int = 1 << 20
    max_streams: int = 256
    max_streams_per_user: int = 16
    max_links: int = 256
    link_idle_seconds: float = 300.0
    call_timeout: float = 120.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        """Read the settings from ``env`` (default: the process environment).

        Raises:
            ConfigurationError: a variable has an invalid value; the message names it.
        """
        env = os.environ if env is None else env
        auth = any(env.get(name) for name in AUTH_VARIABLES)
        aliases = dict(DEFAULT_ALIASES)
        aliases.update(_parse_aliases(env.get("FAME_GATEWAY_ALIASES", "")))
        default_model = env.get("FAME_GATEWAY_DEFAULT_MODEL") or DEFAULT_MODEL
        return cls(
            host=env.get("FAME_GATEWAY_HOST") or ("0.0.0.0" if auth else "127.0.0.1"),
            port=env_int(env, "FAME_GATEWAY_PORT", DEFAULT_GATEWAY_PORT, minimum=0),
            auth=auth,
            default_model=_check_address("FAME_GATEWAY_DEFAULT_MODEL", default_model),
            aliases=aliases,
            max_body_bytes=env_int(env, "FAME_GATEWAY_MAX_BODY_BYTES", 1 << 20, minimum=1024),
            max_streams=env_int(env, "FAME_GATEWAY_MAX_STREAMS", 256, minimum=1),
            max_streams_per_user=env_int(env, "FAME_GATEWAY_MAX_STREAMS_PER_USER", 16, minimum=1),
            max_links=env_int(env, "FAME_GATEWAY_MAX_LINKS", 256, minimum=1),
            link_idle_seconds=env_float(env, "FAME_GATEWAY_LINK_IDLE_SECONDS", 300.0, minimum=1.0),
            call_timeout=env_float(env, "FAME_GATEWAY_CALL_TIMEOUT", 120.0, minimum=0.1),
        )

    @property
    def models(self) -> list[str]:
        """The addresses ``GET /v1/models`` lists: the default and every alias's target."""
        seen = [self.default_model]
        for address in self.aliases.values():
            if address not in seen:
                seen.append(address)
        return seen

    def resolve_model(self, model: str | None) -> str | None:
        """Return the address ``model`` names (an address or an alias), or None if neither."""
        if not model:
            return self.default_model
        if model in self.aliases:
            return self.aliases[model]
        try:
            parse_address(model)
        except ProtocolError:
            return None
        return model if "@" in model else None
