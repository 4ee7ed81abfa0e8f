"""Prometheus metrics of the sentinel, agents and the chat agent, and the ``/metrics`` endpoint.

Every metric lives in :data:`REGISTRY` and has a bounded label set: frame
types, NACK codes and error codes outside the known ones are counted as
``other``; an agent's operation label is one of its own operations, else
``unknown``. Gauges of live state (connections, bindings, in-flight
requests, queue depths, running handlers) are read when scraped, from the
objects registered with :func:`watch_sentinel` and :func:`watch_agent`, so the
hot paths only increment counters.

``/metrics`` is served on the sentinel's listener port and, for an agent
process, on ``FAME_METRICS_PORT`` (unset: not served). Without
``FAME_METRICS_TOKEN`` it answers loopback clients only; with it, any client
that presents ``Authorization: Bearer <token>``, and nobody else.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import weakref
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from famefabric.errors import ConfigurationError

PORT_SETTING = "FAME_METRICS_PORT"
TOKEN_SETTING = "FAME_METRICS_TOKEN"
METRICS_PATH = "/metrics"

REGISTRY = CollectorRegistry(auto_describe=True)
"""Where every famefabric metric is registered (not prometheus_client's global one)."""

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Seconds, for the sentinel's forwarding: most envelopes take well under a millisecond."""
CALL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds, for handlers, turns and LLM calls."""

FRAME_TYPES = frozenset(
    {
        "NodeAttach",
        "NodeAttachAck",
        "AddressBind",
        "AddressBindAck",
        "AddressUnbind",
        "AddressUnbindAck",
        "CapabilityAdvertise",
        "CapabilityAdvertiseAck",
        "CapabilityWithdraw",
        "CapabilityWithdrawAck",
        "NodeHeartbeat",
        "NodeHeartbeatAck",
        "Data",
        "DeliveryAck",
        "CreditUpdate",
    }
)
NACK_CODES = frozenset(
    {
        "NO_ROUTE",
        "CHILD_UNREACHABLE",
        "MESSAGE_TOO_LARGE",
        "FORBIDDEN",
        "DESTINATION_BUSY",
        "TOO_MANY_REQUESTS",
        "INVALID_ENVELOPE",
        "CANCELLED",
    }
)

# Sentinel ----------------------------------------------------------------------------------

CONNECTIONS_ACCEPTED = Counter(
    "fame_sentinel_connections_accepted",
    "WebSocket connections the sentinel accepted",
    registry=REGISTRY,
)
CONNECTIONS_REFUSED = Counter(
    "fame_sentinel_connections_refused",
    "Connection attempts the sentinel refused, by reason",
    ["reason"],
    registry=REGISTRY,
)
ENVELOPES_IN = Counter(
    "fame_sentinel_envelopes_received",
    "Envelopes received from nodes, by frame type",
    ["frame"],
    registry=REGISTRY,
)
BYTES_IN = Counter(
    "fame_sentinel_received_bytes", "Bytes of envelopes received from nodes", registry=REGISTRY
)
ENVELOPES_OUT = Counter(
    "fame_sentinel_envelopes_sent", "Envelopes queued for nodes", registry=REGISTRY
)
BYTES_OUT = Counter("fame_sentinel_sent_bytes", "Bytes queued for nodes", registry=REGISTRY)
NACKS = Counter(
    "fame_sentinel_nacks", "NACKs the sentinel sent, by code", ["code"], registry=REGISTRY
)
FORWARD_SECONDS = Histogram(
    "fame_sentinel_forward_seconds",
    "Time the sentinel spends on one received envelope (parse, route, queue)",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
SLOW_CONSUMERS = Counter(
    "fame_sentinel_slow_consumer_disconnects",
    "Connections closed because their node read too slowly",
    registry=REGISTRY,
)

# Agents ------------------------------------------------------------------------------------

AGENT_CALLS = Counter(
    "fame_agent_calls",
    "Requests an agent handled, by operation and outcome (ok, error, busy, cancelled)",
    ["operation", "outcome"],
    registry=REGISTRY,
)
AGENT_SECONDS = Histogram(
    "fame_agent_handler_seconds",
    "Time from a request's arrival at the agent to its last answer, by operation",
    ["operation"],
    buckets=CALL_BUCKETS,
    registry=REGISTRY,
)

# Chat agent --------------------------------------------------------------------------------

CHAT_TURNS = Counter(
    "fame_chat_turns",
    "Chat turns, by outcome (ok, error, cancelled)",
    ["outcome"],
    registry=REGISTRY,
)
CHAT_TURN_SECONDS = Histogram(
    "fame_chat_turn_seconds",
    "Time of one chat turn, from its start to the committed reply",
    ["mode"],
    buckets=CALL_BUCKETS,
    registry=REGISTRY,
)
CHAT_FIRST_TOKEN_SECONDS = Histogram(
    "fame_chat_first_token_seconds",
    "Time from a streamed turn's start to the model's first piece of text",
    buckets=CALL_BUCKETS,
    registry=REGISTRY,
)
CHAT_LLM_ERRORS = Counter(
    "fame_chat_llm_errors", "LLM failures, by error code", ["code"], registry=REGISTRY
)
CHAT_TOKENS = Counter(
    "fame_chat_tokens",
    "Tokens the LLM reported, by kind (prompt, completion)",
    ["kind"],
    registry=REGISTRY,
)
CHAT_STORE_SECONDS = Histogram(
    "fame_chat_store_seconds",
    "Time of conversation store operations, by operation",
    ["operation"],
    buckets=CALL_BUCKETS,
    registry=REGISTRY,
)
CHAT_LIVE = Gauge(
    "fame_chat_active_conversations",
    "Conversations with a turn running or waiting in this process",
    registry=REGISTRY,
)


def frame_label(frame_type: object) -> str:
    """A frame type as a label value: a known type, else ``other``."""
    return frame_type if type(frame_type) is str and frame_type in FRAME_TYPES else "other"


def nack_label(code: str) -> str:
    """A NACK code as a label value: a known code, else ``other``."""
    return code if code in NACK_CODES else "other"


# Live state, read at scrape time -----------------------------------------------------------


class SentinelState(Protocol):
    """What the scrape reads of a sentinel."""

    def stats(self) -> dict[str, int]: ...

    def queue_depths(self) -> Iterable[tuple[int, int]]: ...


class AgentState(Protocol):
    """What the scrape reads of an agent server."""

    @property
    def running(self) -> int: ...

    @property
    def waiting(self) -> int: ...


_sentinels: weakref.WeakSet[Any] = weakref.WeakSet()
_agents: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_sentinel(sentinel: SentinelState) -> None:
    """Report ``sentinel``'s live state in the scrape while it exists."""
    _sentinels.add(sentinel)


def watch_agent(server: AgentState) -> None:
    """Report an agent server's running and waiting handlers while it exists."""
    _agents.add(server)


class _LiveState(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        totals: dict[str, int] = {}
        queued = queued_bytes = deepest = 0
        for sentinel in list(_sentinels):
            for key, value in sentinel.stats().items():
                totals[key] = totals.get(key, 0) + value
            for messages, size in sentinel.queue_depths():
                queued += messages
                queued_bytes += size
                deepest = max(deepest, messages)
        if _sentinels:
            for key, name, text in (
                ("connections", "connections", "Open connections"),
                ("nodes", "nodes", "Attached nodes"),
                ("addresses", "bindings", "Bound addresses"),
                ("inflight", "inflight_requests", "Forwarded requests awaiting their reply"),
            ):
                yield GaugeMetricFamily(f"fame_sentinel_{name}", text, value=totals.get(key, 0))
            yield GaugeMetricFamily(
                "fame_sentinel_outbound_queued_messages",
                "Envelopes waiting in outbound queues, all connections",
                value=queued,
            )
            yield GaugeMetricFamily(
                "fame_sentinel_outbound_queued_bytes",
                "Bytes waiting in outbound queues, all connections",
                value=queued_bytes,
            )
            yield GaugeMetricFamily(
                "fame_sentinel_outbound_queue_max_messages",
                "Envelopes waiting in the fullest outbound queue",
                value=deepest,
            )
        if _agents:
            servers = list(_agents)
            yield GaugeMetricFamily(
                "fame_agent_handlers_running",
                "Handlers running now",
                value=sum(server.running for server in servers),
            )
            yield GaugeMetricFamily(
                "fame_agent_requests_waiting",
                "Requests waiting for a free handler",
                value=sum(server.waiting for server in servers),
            )


REGISTRY.register(_LiveState())


# The endpoint ------------------------------------------------------------------------------


def exposition() -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def is_loopback(host: object) -> bool:
    """Tell whether a peer address is a loopback address (127.0.0.0/8, ::1)."""
    if not isinstance(host, str):
        return False
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def check_access(
    peer_host: object, authorization: str | None, token: str | None
) -> tuple[HTTPStatus, str] | None:
    """Decide whether a scrape may read the metrics; None if it may, else (status, why).

    Args:
        peer_host: the client's IP address.
        authorization: the request's ``Authorization`` header, if any.
        token: ``FAME_METRICS_TOKEN``; None or empty for loopback-only.
    """
    if not token:
        if is_loopback(peer_host):
            return None
        return (
            HTTPStatus.FORBIDDEN,
            f"metrics are served to loopback clients only; set {TOKEN_SETTING} on the server "
            "and scrape with 'Authorization: Bearer <token>' to read them from elsewhere",
        )
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return HTTPStatus.UNAUTHORIZED, "metrics need 'Authorization: Bearer <token>'"
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        return HTTPStatus.UNAUTHORIZED, "the metrics token is not valid"
    return None


def metrics_token(env: Mapping[str, str] | None = None) -> str | None:
    """``FAME_METRICS_TOKEN``, or None when unset or empty."""
    value = (env if env is not None else os.environ).get(TOKEN_SETTING, "").strip()
    return value or None


def metrics_port(env: Mapping[str, str] | None = None) -> int | None:
    """``FAME_METRICS_PORT`` (0 picks a free port), or None when unset.

    Raises:
        ConfigurationError: not a port number.
    """
    raw = (env if env is not None else os.environ).get(PORT_SETTING, "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise ConfigurationError(f"{PORT_SETTING}={raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"{PORT_SETTING}={raw!r} must be between 0 and 65535")
    return port
