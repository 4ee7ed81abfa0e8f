"""A free TCP port, for servers that cannot bind port 0 and report the port they got.

Prefer port 0: ``fame sentinel --port 0`` and ``python -m
famefabric.testing.openai_server --port 0`` bind a free port themselves and
print it, so nothing can take the port in between. Some servers cannot do
that (``redis-server --port 0`` disables TCP altogether); this function is for
them, and their callers must cope with the port being taken before they bind
it.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
