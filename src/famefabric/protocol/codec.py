"""Envelopes to bytes and back (PROTOCOL.md §2.3, §3).

``encode`` writes compact UTF-8 JSON with camelCase keys and without null
members (as the reference does); ``decode`` accepts bytes or text, explicit
nulls and missing optional keys alike, ignores unknown keys, and raises
:class:`RemoteProtocolError` for anything it cannot turn into an envelope,
never another exception.

Two lower-level helpers serve the sentinel's forwarding path, which reads
only the routing fields and re-serializes the parsed object it received:
:func:`parse_object` and :func:`dump_object`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson

from famefabric.errors import ProtocolError, RemoteProtocolError
from famefabric.protocol.frames import (
    FRAME_TYPES,
    IGNORED_FRAME_TYPES,
    Envelope,
    Frame,
    IgnoredFrame,
)

_ENVELOPE_KEYS = (
    "version",
    "id",
    "sid",
    "trace_id",
    "to",
    "reply_to",
    "capabilities",
    "rtype",
    "corr_id",
    "flow_id",
    "seq_id",
    "flow_flags",
    "ts",
    "meta",
)


def camel(name: str) -> str:
    """Return the wire spelling of a Python field name: ``reply_to`` -> ``replyTo``."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_ENVELOPE_FIELDS = tuple((name, camel(name)) for name in _ENVELOPE_KEYS)
_TUPLE_FIELDS = frozenset({"capabilities", "accepted_logicals", "callback_grants"})
_STRING_ENVELOPE_FIELDS = frozenset(
    {"id", "sid", "trace_id", "to", "reply_to", "corr_id", "flow_id", "ts", "version"}
)
_INT_ENVELOPE_FIELDS = frozenset({"rtype", "seq_id", "flow_flags"})


_FIELDS: dict[type[Frame], tuple[tuple[str, str, bool], ...]] = {}


def _frame_fields(cls: type[Frame]) -> tuple[tuple[str, str, bool], ...]:
    """(python name, wire name, required) for each field of a frame class."""
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = _compute_fields(cls)
    return fields


def _compute_fields(cls: type[Frame]) -> tuple[tuple[str, str, bool], ...]:
    return tuple(
        (
            f.name,
            camel(f.name),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    )


def frame_to_dict(frame: Frame) -> dict[str, Any]:
    """Return the wire object of a frame, without null members."""
    if isinstance(frame, IgnoredFrame):
        return {"type": frame.name, **frame.fields}
    out: dict[str, Any] = {"type": frame.type}
    for name, key, _ in _frame_fields(type(frame)):
        value = getattr(frame, name)
        if value is not None:
            out[key] = list(value) if type(value) is tuple else value
    return out


def envelope_to_dict(envelope: Envelope) -> dict[str, Any]:
    """Return the wire object of an envelope, without null members."""
    out: dict[str, Any] = {}
    for name, key in _ENVELOPE_FIELDS:
        value = getattr(envelope, name)
        if value is not None:
            out[key] = list(value) if type(value) is tuple else value
    out["frame"] = frame_to_dict(envelope.frame)
    return out


def encode(envelope: Envelope) -> bytes:
    """Serialize an envelope to UTF-8 JSON bytes (sent as a binary message, §2.3)."""
    return orjson.dumps(envelope_to_dict(envelope))


def dump_object(obj: dict[str, Any]) -> bytes:
    """Serialize an already-built wire object (used when forwarding)."""
    return orjson.dumps(obj)


def parse_object(data: bytes | str) -> dict[str, Any]:
    """Parse one message into its JSON object, checking only that it is one.

    Raises:
        RemoteProtocolError: not UTF-8 JSON, or not an object with a ``frame`` object.
    """
    try:
        obj = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise RemoteProtocolError(f"message is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"envelope must be a JSON object, got {type(obj).__name__}")
    frame = obj.get("frame")
    if not isinstance(frame, dict):
        raise RemoteProtocolError("envelope has no 'frame' object")
    if not isinstance(frame.get("type"), str):
        raise RemoteProtocolError("frame has no 'type' string")
    return obj


def nested_deeper_than(data: bytes | str, obj: object, limit: int) -> bool:
    """Tell whether the parsed message ``obj`` nests arrays and objects more than ``limit`` deep.

    ``data`` is the message ``obj`` was parsed from: when it holds no more
    than ``limit`` brackets, nothing can nest deeper, and the walk is skipped.
    """
    if isinstance(data, str):
        brackets = data.count("{") + data.count("[")
    else:
        brackets = data.count(b"{") + data.count(b"[")
    if brackets <= limit:
        return False
    if not isinstance(obj, dict | list):
        return False
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        for child in value.values() if type(value) is dict else value:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))  # type: ignore[arg-type]
    return False


def salvage_object(data: bytes | str) -> dict[str, Any] | None:
    """Read a message :func:`parse_object` refused, to answer it with a NACK.

    The standard library's parser accepts what orjson refuses (``NaN``, lone
    surrogates); use it only on bad input. Returns None when even this cannot
    read an envelope with a ``frame`` object.
    """
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError, TypeError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("frame"), dict):
        return None
    return obj


def frame_from_dict(obj: dict[str, Any]) -> Frame:
    """Build a frame from its wire object.

    Raises:
        RemoteProtocolError: unknown type, or a required field missing or mistyped.
    """
    name = obj.get("type")
    cls = FRAME_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        if name in IGNORED_FRAME_TYPES:
            return IgnoredFrame(
                name=str(name), fields={k: v for k, v in obj.items() if k != "type"}
            )
        expected = ", ".join(FRAME_TYPES)
        raise RemoteProtocolError(f"unknown frame type {name!r}; expected one of {expected}")
    kwargs: dict[str, Any] = {}
    for attr, key, required in _frame_fields(cls):
        value = obj.get(key)
        if value is None:
            if required:
                raise RemoteProtocolError(f"{name} frame is missing required field {key!r}")
            continue
        if attr in _TUPLE_FIELDS:
            if not isinstance(value, list):
                raise RemoteProtocolError(f"{name}.{key} must be a list, got {value!r}")
            value = tuple(value)
        kwargs[attr] = value
    try:
        return cls(**kwargs)
    except (ProtocolError, TypeError, ValueError) as exc:
        raise RemoteProtocolError(f"invalid {name} frame: {exc}") from exc


def envelope_from_dict(obj: dict[str, Any]) -> Envelope:
    """Build an envelope from its wire object.

    Raises:
        RemoteProtocolError: the object is not a valid envelope; the message says why.
    """
    frame_obj = obj.get("frame")
    if not isinstance(frame_obj, dict):
        raise RemoteProtocolError("envelope has no 'frame' object")
    kwargs: dict[str, Any] = {"frame": frame_from_dict(frame_obj)}
    for attr, key in _ENVELOPE_FIELDS:
        value = obj.get(key)
        if value is None:
            continue
        if attr in _STRING_ENVELOPE_FIELDS and not isinstance(value, str):
            raise RemoteProtocolError(f"envelope {key!r} must be a string, got {value!r}")
        if attr in _INT_ENVELOPE_FIELDS and (not isinstance(value, int) or isinstance(value, bool)):
            raise RemoteProtocolError(f"envelope {key!r} must be an integer, got {value!r}")
        if attr == "meta" and not isinstance(value, dict):
            raise RemoteProtocolError(f"envelope 'meta' must be an object, got {value!r}")
        if attr == "capabilities":
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise RemoteProtocolError(
                    f"envelope 'capabilities' must be a list of strings, got {value!r}"
                )
            value = tuple(value)
        kwargs[attr] = value
    try:
        return Envelope(**kwargs)
    except ProtocolError as exc:
        raise RemoteProtocolError(str(exc)) from exc


def decode(data: bytes | str) -> Envelope:
    """Parse one WebSocket message into an envelope.

    Raises:
        RemoteProtocolError: for any input that is not a valid envelope.
    """
    return envelope_from_dict(parse_object(data))
