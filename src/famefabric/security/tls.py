"""TLS for the fabric's links: the sentinel's certificate, and what nodes trust (§17.6).

The sentinel listens with TLS when given a certificate and its key
(``FAME_TLS_CERT`` / ``FAME_TLS_KEY``, or ``--tls-cert`` / ``--tls-key``);
nodes then dial ``wss://`` URLs and verify it against the system's trust
store plus ``FAME_TLS_CA`` (a PEM file of extra CA certificates, e.g. a
private CA's). Host names are always checked.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

from famefabric.errors import ConfigurationError


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """Return the sentinel's TLS context (TLS 1.2 or newer).

    Raises:
        ConfigurationError: a file cannot be read or the key does not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot use the TLS certificate {cert_file} with key {key_file} "
            f"(FAME_TLS_CERT / FAME_TLS_KEY): {getattr(exc, 'strerror', None) or exc}"
        ) from None
    return context


def server_context_from_env(
    env: Mapping[str, str] | None = None,
    *,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> ssl.SSLContext | None:
    """Return the sentinel's TLS context from flags or ``FAME_TLS_CERT``/``FAME_TLS_KEY``; None without.

    Raises:
        ConfigurationError: only one of certificate and key is given, or they cannot be used.
    """
    env = os.environ if env is None else env
    cert = cert_file or env.get("FAME_TLS_CERT") or None
    key = key_file or env.get("FAME_TLS_KEY") or None
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigurationError(
            "TLS needs both a certificate and its key: set FAME_TLS_CERT and FAME_TLS_KEY "
            "(or --tls-cert and --tls-key)"
        )
    return server_context(cert, key)


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Return a node's TLS context: the system's trust store, plus ``ca_file`` if given.

    Raises:
        ConfigurationError: ``ca_file`` cannot be read or holds no certificate.
    """
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load FAME_TLS_CA={ca_file}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
    return context


def client_context_from_env(env: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """Return the context for ``wss://`` links when ``FAME_TLS_CA`` is set; None for the defaults.

    Raises:
        ConfigurationError: ``FAME_TLS_CA`` cannot be loaded.
    """
    env = os.environ if env is None else env
    ca = env.get("FAME_TLS_CA") or None
    return client_context(ca) if ca else None
