"""The node runtime: a process attached to a sentinel, and its RPC client.

:class:`Node` connects, attaches, heartbeats and reconnects (PROTOCOL.md §5),
serves the addresses bound to it and calls others with JSON-RPC (§8, §10).
"""

from famefabric.errors import AttachRefused
from famefabric.node.backoff import backoff_delays, is_retryable
from famefabric.node.dispatch import Handler
from famefabric.node.node import Node
from famefabric.node.rpc import Stream
from famefabric.node.state import LinkState
from famefabric.node.supervisor import NodeEvent

__all__ = [
    "AttachRefused",
    "Handler",
    "LinkState",
    "Node",
    "NodeEvent",
    "Stream",
    "backoff_delays",
    "is_retryable",
]
