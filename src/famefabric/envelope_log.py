"""Printing envelopes as they travel, for ``FAME_SHOW_ENVELOPES=true``.

Each envelope a process sends or receives is written to stderr (so that a
program's own output stays clean) as one line: the UTC time, who prints, the
direction and the peer, then the frame type, the destination address, the
envelope id, its size and a short preview of the frame. With
``FAME_ENVELOPE_FORMAT=json`` the line is followed by the whole envelope as
indented JSON without null members. Colour is used only when stderr is a
terminal.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, TextIO

import orjson

from famefabric.clock import timestamp

_COLOURS = {"received": "\033[36m", "sent": "\033[32m", "forwarded": "\033[33m"}
_RESET = "\033[0m"
PREVIEW_CHARS = 80
FORMATS = ("line", "json")


class EnvelopePrinter:
    """Writes envelopes to a text stream, one block each.

    Args:
        stream: where to write (stderr by default).
        colour: use ANSI colours; by default only when the stream is a terminal.
        label: who is printing, e.g. the node's system id.
        full: follow each line with the whole envelope as JSON; by default
            when ``FAME_ENVELOPE_FORMAT=json``.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        colour: bool | None = None,
        label: str = "",
        full: bool | None = None,
    ) -> None:
        if full is None:
            full = os.environ.get("FAME_ENVELOPE_FORMAT", "line").strip().lower() == "json"
        self._full = full
        self._stream = stream or sys.stderr
        self._colour = self._stream.isatty() if colour is None else colour
        self.label = label
        self._lock = threading.Lock()

    def show(
        self, direction: str, envelope: dict[str, Any] | bytes | str, *, peer: str = ""
    ) -> None:
        """Print one envelope.

        Args:
            direction: ``received``, ``sent`` or ``forwarded``.
            envelope: the wire object, or the raw message when it was not JSON.
            peer: the other end (a route, a connection), shown in the header.
        """
        now = timestamp()
        if peer.startswith(("ws://", "wss://")):
            peer = peer.split("/")[2]  # the sentinel's host:port; the path is the same each time
        where = f" {'to' if direction != 'received' else 'from'} {peer}" if peer else ""
        who = f"[{self.label}] " if self.label else ""
        header = f"{now} {who}{direction} envelope{where}"
        if isinstance(envelope, dict):
            summary = summarize(envelope)
            body = (
                orjson.dumps(_without_nulls(envelope), option=orjson.OPT_INDENT_2).decode() + "\n"
                if self._full
                else ""
            )
        else:
            raw = envelope.decode(errors="replace") if isinstance(envelope, bytes) else envelope
            summary = f"(not an envelope) {len(raw)} B {_preview(raw)}"
            body = raw + "\n" if self._full else ""
        if self._colour:
            header = f"{_COLOURS.get(direction, '')}{header}{_RESET}"
        with self._lock:
            self._stream.write(f"{header}: {summary}\n{body}")
            self._stream.flush()


def summarize(envelope: dict[str, Any]) -> str:
    """One line about an envelope: frame type, destination, id, size and a preview."""
    frame = envelope.get("frame")
    frame = frame if isinstance(frame, dict) else {}
    kind = frame.get("type", "?")
    parts = [str(kind)]
    if envelope.get("to"):
        parts.append(f"→ {envelope['to']}")
    if envelope.get("id"):
        parts.append(f"id={envelope['id']}")
    if envelope.get("corrId"):
        parts.append(f"corr={envelope['corrId']}")
    parts.append(f"{len(orjson.dumps(envelope))} B")
    detail = {k: v for k, v in frame.items() if k != "type" and v is not None}
    if detail:
        parts.append(_preview(orjson.dumps(detail).decode()))
    return " ".join(parts)


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _without_nulls(obj: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if value is not None}
