"""Every limit the sentinel enforces, in one place, with its environment variable.

================================  ==============================================  ==========
Field                             Environment variable                            Default
================================  ==============================================  ==========
``outbound_max_bytes``            ``FAME_SENTINEL_OUTBOUND_MAX_BYTES``            16 MiB
``outbound_max_messages``         ``FAME_SENTINEL_OUTBOUND_MAX_MESSAGES``         8192
``write_deadline``                ``FAME_SENTINEL_WRITE_DEADLINE``                10 s
``max_envelope_bytes``            ``FAME_SENTINEL_MAX_ENVELOPE_BYTES``            256 KiB
``max_inflight_per_node``         ``FAME_SENTINEL_MAX_INFLIGHT_PER_NODE``         10000
``max_inflight_per_destination``  ``FAME_SENTINEL_MAX_INFLIGHT_PER_DESTINATION``  10000
``max_json_depth``                ``FAME_SENTINEL_MAX_JSON_DEPTH``                64
``pending_max_messages``          ``FAME_SENTINEL_PENDING_MAX_MESSAGES``          256
``pending_max_bytes``             ``FAME_SENTINEL_PENDING_MAX_BYTES``             1 MiB
``attach_deadline``               ``FAME_SENTINEL_ATTACH_DEADLINE``               10 s
``max_bindings_per_node``         ``FAME_SENTINEL_MAX_BINDINGS_PER_NODE``         1000
``max_capabilities_per_node``     ``FAME_SENTINEL_MAX_CAPABILITIES_PER_NODE``     1000
``max_route_bytes_per_node``      ``FAME_SENTINEL_MAX_ROUTE_BYTES_PER_NODE``      1 MiB
``max_route_refusals``            ``FAME_SENTINEL_MAX_ROUTE_REFUSALS``            10
================================  ==============================================  ==========

- The outbound queue of a connection holds what the sentinel has yet to write
  to it. A request to a connection whose queue is full is NACKed at once with
  ``DESTINATION_BUSY``; a reply or stream item that does not fit, or a queue
  that could not be written for ``write_deadline`` seconds, makes the
  connection a slow consumer: it is closed (1008, ``slow consumer: …``) and
  the requests it had not answered are NACKed ``CHILD_UNREACHABLE`` at once.
- ``max_envelope_bytes``: a larger envelope is NACKed ``MESSAGE_TOO_LARGE``.
- ``max_inflight_per_node``: requests a node may have awaiting replies at
  once; a further request is NACKed ``TOO_MANY_REQUESTS`` at once. While a
  node is at this limit the sentinel holds back its credit grants (§9); a
  node that sends more than 64 envelopes on a flow past its last grant is
  NACKed ``CREDITS_EXCEEDED`` and its connection closed (1008).
- ``max_inflight_per_destination``: requests awaiting the replies of one
  node; a further request to it is NACKed ``DESTINATION_BUSY``.
- ``max_json_depth``: the deepest nesting of arrays and objects in an
  envelope; a deeper one is NACKed ``INVALID_ENVELOPE`` naming the limit.
- ``pending_*``: envelopes kept from before a connection's ``NodeAttach``;
  an envelope beyond either bound closes the connection (1008, the reason
  names the setting). A connection that has not attached within
  ``attach_deadline`` is closed (1008).
- ``max_bindings_per_node``, ``max_capabilities_per_node`` and
  ``max_route_bytes_per_node`` (the characters of its addresses and
  capabilities together) bound what one node adds to the routing table; a
  bind or advertise beyond them gets a negative ack naming the limit. A node
  refused that way more than ``max_route_refusals`` times on one connection
  is closed (1008, the reason names the limit it kept crossing).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from famefabric.errors import ConfigurationError
from famefabric.protocol.frames import MAX_ENVELOPE_BYTES

ENV_PREFIX = "FAME_SENTINEL_"


@dataclass(frozen=True, slots=True)
class SentinelLimits:
    """The sentinel's limits; see the module docstring for their meaning."""

    outbound_max_bytes: int = 16 * 1024 * 1024
    outbound_max_messages: int = 8192
    write_deadline: float = 10.0
    max_envelope_bytes: int = MAX_ENVELOPE_BYTES
    max_inflight_per_node: int = 10_000
    max_inflight_per_destination: int = 10_000
    max_json_depth: int = 64
    pending_max_messages: int = 256
    pending_max_bytes: int = 1024 * 1024
    attach_deadline: float = 10.0
    max_bindings_per_node: int = 1000
    max_capabilities_per_node: int = 1000
    max_route_bytes_per_node: int = 1024 * 1024
    max_route_refusals: int = 10

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(
                    f"sentinel limit {field.name} must be a positive number, got {value!r}"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SentinelLimits:
        """Read every ``FAME_SENTINEL_<FIELD>`` that is set; the rest keep their defaults.

        Raises:
            ConfigurationError: a value is not a positive number.
        """
        env = os.environ if environ is None else environ
        values: dict[str, int | float] = {}
        for field in fields(cls):
            name = ENV_PREFIX + field.name.upper()
            text = env.get(name)
            if text is None or not text.strip():
                continue
            kind = float if field.type in (float, "float") else int
            try:
                values[field.name] = kind(text)
            except ValueError:
                raise ConfigurationError(
                    f"{name}={text!r} is not a valid {kind.__name__}; unset it for the default"
                ) from None
        return cls(**values)  # type: ignore[arg-type]
