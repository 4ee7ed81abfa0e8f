"""Routing, free of I/O: the sentinel's table and pure decisions over it."""

from famefabric.routing.decisions import (
    CHILD_UNREACHABLE,
    MESSAGE_TOO_LARGE,
    NO_ROUTE,
    ROUTE_CONNECTOR_CLOSED,
    Decision,
    Deliver,
    Drop,
    Reject,
    affinity_key,
    is_nackable,
    rendezvous,
    route,
)
from famefabric.routing.table import NodeRoutes, RoutingTable

__all__ = [
    "CHILD_UNREACHABLE",
    "MESSAGE_TOO_LARGE",
    "NO_ROUTE",
    "ROUTE_CONNECTOR_CLOSED",
    "Decision",
    "Deliver",
    "Drop",
    "NodeRoutes",
    "Reject",
    "RoutingTable",
    "affinity_key",
    "is_nackable",
    "rendezvous",
    "route",
]
