"""The sentinel: the router nodes attach to over WebSocket (PROTOCOL.md §16.2)."""

from famefabric.sentinel.runner import run_sentinel, serve_sentinel
from famefabric.sentinel.server import Sentinel
from famefabric.sentinel.system_ids import default_sentinel_id

__all__ = ["Sentinel", "default_sentinel_id", "run_sentinel", "serve_sentinel"]
