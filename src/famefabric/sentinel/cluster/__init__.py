"""Sentinels sharing one routing space over NATS (docs/CLUSTER.md).

:class:`ClusterSettings` says where the NATS servers are and how to log in;
:class:`ClusterMember` is a sentinel's part in the cluster: its heartbeats,
its view of the other sentinels (:mod:`.view`), the routing across them
(:mod:`.routes`) and the envelopes it exchanges with them (:mod:`.wire`).
"""

from famefabric.sentinel.cluster.member import ClusterMember
from famefabric.sentinel.cluster.settings import ClusterSettings

__all__ = ["ClusterMember", "ClusterSettings"]
