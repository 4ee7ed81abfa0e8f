"""Printing envelopes as they travel, for ``FAME_SHOW_ENVELOPES=true``.

Each envelope a process sends or receives is written to stderr (so that a
program's own output stays clean) as a header line with the UTC time and the
direction, then the envelope as indented JSON without null members. Colour
is used only when stderr is a terminal.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

import orjson

from famefabric.clock import timestamp

_COLOURS = {"received": "\033[36m", "sent": "\033[32m", "forwarded": "\033[33m"}
_RESET = "\033[0m"


class EnvelopePrinter:
    """Writes envelopes to a text stream, one block each.

    Args:
        stream: where to write (stderr by default).
        colour: use ANSI colours; by default only when the stream is a terminal.
        label: who is printing, e.g. the node's system id.
    """

    def __init__(
        self, *, stream: TextIO | None = None, colour: bool | None = None, label: str = ""
    ) -> None:
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
        where = f" {'to' if direction != 'received' else 'from'} {peer}" if peer else ""
        who = f"[{self.label}] " if self.label else ""
        header = f"{now} {who}{direction} envelope{where}"
        if isinstance(envelope, dict):
            body = orjson.dumps(_without_nulls(envelope), option=orjson.OPT_INDENT_2).decode()
        else:
            body = envelope.decode(errors="replace") if isinstance(envelope, bytes) else envelope
        if self._colour:
            header = f"{_COLOURS.get(direction, '')}{header}{_RESET}"
        with self._lock:
            self._stream.write(f"{header}\n{body}\n")
            self._stream.flush()


def _without_nulls(obj: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if value is not None}
