"""Transports: how envelopes move between a node and its sentinel."""

from famefabric.transport.base import Transport
from famefabric.transport.memory import MemoryTransport, memory_pair

__all__ = ["MemoryTransport", "Transport", "memory_pair"]
