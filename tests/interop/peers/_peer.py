"""Small helpers shared by the Naylence peer scripts.

The peer scripts run only in the interop virtualenv (``.venv-interop``), where
the Naylence reference SDK is installed; they are test peers, not part of
``famefabric``.

Conventions shared by every peer:

* configuration comes from the environment, as for any Naylence process
  (``FAME_DIRECT_ADMISSION_URL``, ``FAME_LISTENER_PORT``, ``FAME_NODE_ID``,
  ``FAME_SHOW_ENVELOPES``, ``FAME_LOG_LEVEL`` ...);
* a long-running peer prints exactly one line starting with ``READY `` to
  stdout once it can serve, then runs until SIGINT or SIGTERM;
* nodes get a random system id unless ``FAME_NODE_ID`` is set or
  ``FAME_PEER_ID_MODE=fingerprint`` asks for the reference default (a
  fingerprint of host and script path, shared by every copy of the script).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from naylence.fame.core import generate_id

READY_PREFIX = "READY"


def choose_node_id() -> str | None:
    """Fix this process's system id through ``FAME_NODE_ID`` before the node starts.

    Returns:
        The id that the node will use, or None when the reference fingerprint
        applies (``FAME_PEER_ID_MODE=fingerprint`` and no ``FAME_NODE_ID``).
    """
    configured = os.environ.get("FAME_NODE_ID", "").strip()
    if configured:
        return configured
    if os.environ.get("FAME_PEER_ID_MODE", "random").strip().lower() == "fingerprint":
        return None
    node_id = generate_id()
    os.environ["FAME_NODE_ID"] = node_id
    return node_id


def require_admission_url(role: str) -> str:
    """Return ``FAME_DIRECT_ADMISSION_URL`` or exit with a message naming it.

    Args:
        role: the peer's role, used in the error message.
    """
    url = os.environ.get("FAME_DIRECT_ADMISSION_URL", "").strip()
    if not url:
        print(
            f"{role}: FAME_DIRECT_ADMISSION_URL is not set; expected e.g. "
            "ws://127.0.0.1:8000/fame/v1/attach/ws/downstream",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return url


def stop_event() -> asyncio.Event:
    """Return an event that is set on SIGINT or SIGTERM (call inside the loop)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, event.set)
    return event


def announce(role: str, **fields: object) -> None:
    """Print the ready line ``READY <role> key=value ...`` and flush stdout."""
    details = " ".join(f"{key}={value}" for key, value in fields.items())
    print(f"{READY_PREFIX} {role} {details}".rstrip(), flush=True)
