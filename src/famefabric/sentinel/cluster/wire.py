"""The cluster's subjects and message formats on NATS (docs/CLUSTER.md, "On the wire").

``<prefix>.s.<sentinel>``
    envelopes for the children of ``<sentinel>``: one header line
    ``<from sentinel> TAB <from node> TAB <chosen child> LF``, then the
    envelope's JSON exactly as a node would send it. Empty fields are the
    sentinel itself (from node) and "route it yourself" (chosen child).
``<prefix>.view``
    heartbeats, JSON ``{"id", "instance", "version", "bye"?}``.
``<prefix>.snap.<sentinel>``
    request/reply: the routes of ``<sentinel>``'s children (a snapshot).

Sentinel and node ids are letters, digits, ``.``, ``_`` and ``-``: never a
tab or a newline, so the header needs no escaping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from famefabric.errors import ProtocolError

MAX_HEADER = 512
"""The longest header line accepted."""
_ID = re.compile(r"[A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class Subjects:
    """The NATS subjects of one cluster (one prefix)."""

    prefix: str

    def inbox(self, sentinel_id: str) -> str:
        """Where envelopes for ``sentinel_id``'s children are published."""
        return f"{self.prefix}.s.{sentinel_id}"

    @property
    def view(self) -> str:
        """Where heartbeats are published."""
        return f"{self.prefix}.view"

    def snapshot(self, sentinel_id: str) -> str:
        """Where ``sentinel_id`` answers requests for its routes."""
        return f"{self.prefix}.snap.{sentinel_id}"


@dataclass(frozen=True, slots=True)
class Hop:
    """One envelope between sentinels, as read from ``<prefix>.s.<sentinel>``."""

    sentinel: str
    node: str
    target: str
    envelope: bytes


def encode_hop(sentinel: str, node: str | None, target: str | None, envelope: bytes) -> bytes:
    """Frame an envelope for another sentinel."""
    return f"{sentinel}\t{node or ''}\t{target or ''}\n".encode() + envelope


def decode_hop(data: bytes) -> Hop:
    """Read a framed envelope.

    Raises:
        ProtocolError: the header line is missing or malformed.
    """
    end = data.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        raise ProtocolError("cluster message without a header line")
    fields = data[:end].decode("ascii", "replace").split("\t")
    if len(fields) != 3 or not all(_ID.fullmatch(f) for f in fields) or not fields[0]:
        raise ProtocolError("cluster message with a malformed header line")
    return Hop(fields[0], fields[1], fields[2], data[end + 1 :])


def heartbeat(sentinel: str, instance: str, version: int, *, bye: bool = False) -> bytes:
    """A heartbeat (or, with ``bye``, a goodbye) of this sentinel."""
    body: dict[str, Any] = {"id": sentinel, "instance": instance, "version": version}
    if bye:
        body["bye"] = True
    return orjson.dumps(body)


def read_heartbeat(data: bytes) -> tuple[str, str, int, bool]:
    """Return (id, instance, version, bye) of a heartbeat.

    Raises:
        ProtocolError: it is not a heartbeat.
    """
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"heartbeat is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("heartbeat is not a JSON object")
    sentinel, instance, version = body.get("id"), body.get("instance"), body.get("version")
    if (
        type(sentinel) is not str
        or not sentinel
        or not _ID.fullmatch(sentinel)
        or type(instance) is not str
        or type(version) is not int
    ):
        raise ProtocolError("heartbeat needs string 'id' and 'instance' and an integer 'version'")
    return sentinel, instance, version, body.get("bye") is True
