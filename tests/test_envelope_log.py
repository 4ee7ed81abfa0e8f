"""The envelope trace: one line per envelope by default, the whole JSON on request."""

from __future__ import annotations

import io

import pytest

from famefabric.envelope_log import PREVIEW_CHARS, EnvelopePrinter

ENVELOPE = {
    "version": "1.0",
    "id": "env0001",
    "to": "echo@fame.fabric",
    "corrId": "call0001",
    "frame": {
        "type": "Data",
        "payload": {"jsonrpc": "2.0", "method": "echo", "params": {"text": "x" * 500}},
    },
    "replyTo": None,
}


def test_one_line_per_envelope_with_type_destination_id_size_and_a_short_preview() -> None:
    stream = io.StringIO()
    EnvelopePrinter(stream=stream, colour=False, label="client01", full=False).show(
        "sent", ENVELOPE, peer="sentinel"
    )
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert (
        "[client01] sent envelope to sentinel: Data → echo@fame.fabric id=env0001 corr=call0001 "
        in text
    )
    assert ' B {"payload":{"jsonrpc":"2.0","method":"echo"' in text
    preview = text.split(" B ", 1)[1].rstrip("\n")
    assert len(preview) == PREVIEW_CHARS and preview.endswith("…")


def test_full_format_adds_the_envelope_as_json() -> None:
    stream = io.StringIO()
    EnvelopePrinter(stream=stream, colour=False, full=True).show("received", ENVELOPE)
    text = stream.getvalue()
    assert text.splitlines()[0].endswith(text.splitlines()[0].split(": ", 1)[1])
    assert '"method": "echo"' in text and "replyTo" not in text
    assert len(text.splitlines()) > 10


@pytest.mark.parametrize(("value", "full"), [("json", True), ("line", False), ("", False)])
def test_fame_envelope_format_chooses(
    monkeypatch: pytest.MonkeyPatch, value: str, full: bool
) -> None:
    monkeypatch.setenv("FAME_ENVELOPE_FORMAT", value)
    stream = io.StringIO()
    EnvelopePrinter(stream=stream, colour=False).show("sent", ENVELOPE)
    assert ('"method": "echo"' in stream.getvalue()) is full


def test_a_message_that_is_not_json_is_shown_shortened() -> None:
    stream = io.StringIO()
    EnvelopePrinter(stream=stream, colour=False, full=False).show("received", b"\xff" + b"y" * 300)
    line = stream.getvalue()
    assert "(not an envelope) 301 B" in line and line.count("\n") == 1
