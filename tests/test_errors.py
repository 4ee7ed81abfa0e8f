"""One error model: every exception class in famefabric.errors, re-exported where users look."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import famefabric.errors as errors
from famefabric.errors import AttachRefused, ConnectionClosed, RemoteError, StreamOverflow
from famefabric.options import count, optional_positive_seconds, positive_seconds

SOURCE = Path(__file__).resolve().parents[1] / "src" / "famefabric"


def test_every_exception_class_is_defined_in_errors() -> None:
    elsewhere = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name == "errors.py" and path.parent == SOURCE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(base) for base in node.bases}
                if any(
                    name.endswith(("Error", "Exception", "Closed", "Refused")) for name in bases
                ):
                    elsewhere.append(f"{path.relative_to(SOURCE)}: {node.name}({', '.join(bases)})")
    # The chat model's errors are OperationErrors that answer callers with
    # their own JSON-RPC data; the test server's HttpError never leaves it.
    allowed = ("chat/model.py", "testing/_http.py")
    assert [line for line in elsewhere if not line.startswith(allowed)] == []


def test_old_import_paths_name_the_same_classes() -> None:
    from famefabric import AttachRefused as top
    from famefabric.chat.store import (
        ConversationExists,
        ConversationNotFound,
        StoreUnavailable,
        VersionConflict,
    )
    from famefabric.node import AttachRefused as from_node
    from famefabric.node.backoff import AttachRefused as from_backoff

    assert top is from_node is from_backoff is errors.AttachRefused
    assert ConversationExists is errors.ConversationExists
    assert ConversationNotFound is errors.ConversationNotFound
    assert StoreUnavailable is errors.StoreUnavailable
    assert VersionConflict is errors.VersionConflict
    for store_error in (ConversationExists, ConversationNotFound, StoreUnavailable):
        assert issubclass(store_error, errors.StoreError)


def test_attach_refused_carries_status_and_reason() -> None:
    refused = AttachRefused("cannot attach: HTTP 401", status=401, reason="token expired")
    assert isinstance(refused, ConnectionClosed)
    assert (refused.status, refused.reason, refused.code) == (401, "token expired", None)
    ack_refusal = AttachRefused("the sentinel refused: no", reason="no")
    assert ack_refusal.status is None


def test_stream_overflow_names_the_stream_and_the_limit() -> None:
    overflow = StreamOverflow("count@fame.fabric", "count", 1024)
    assert str(overflow) == (
        "stream from 'count@fame.fabric' (count) overflowed: the consumer fell 1024 items behind"
    )


def test_an_error_id_is_shown_only_when_it_is_a_plain_token() -> None:
    error = RemoteError(-32603, "boom", {"error_id": "AbC_12-x"})
    assert (str(error), error.error_id, error.message) == (
        "boom (error id AbC_12-x)",
        "AbC_12-x",
        "boom",
    )
    for hostile in ("x\n\x1b[31mred", "a" * 65, "", 7, None, ["id"]):
        shown = RemoteError(-32603, "boom", {"error_id": hostile})
        assert (str(shown), shown.error_id) == ("boom", None)
    assert RemoteError(-32603, "boom", "text data").error_id is None


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "5"])
def test_one_validator_refuses_bad_seconds_with_one_message(bad: object) -> None:
    with pytest.raises(errors.ConfigurationError, match="must be a positive number of seconds"):
        positive_seconds("idle_ttl", bad)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"idle_ttl=.* must be a positive number of seconds, or unset"
    ):
        optional_positive_seconds("idle_ttl", bad)  # type: ignore[arg-type]


def test_the_validator_accepts_good_values() -> None:
    assert positive_seconds("t", 2) == 2.0
    assert optional_positive_seconds("t", None) is None
    assert count("n", 0) == 0
    with pytest.raises(errors.ConfigurationError, match="n=0 must be at least 1"):
        count("n", 0, minimum=1)
    with pytest.raises(errors.ConfigurationError, match=r"n=1\.5 must be an integer"):
        count("n", 1.5)  # type: ignore[arg-type]


def test_stores_check_idle_ttl_with_the_same_validator() -> None:
    from famefabric.chat.stores import MemoryConversationStore, SQLiteConversationStore

    with pytest.raises(errors.ConfigurationError, match="idle_ttl=0 must be a positive"):
        MemoryConversationStore(idle_ttl=0)
    with pytest.raises(errors.ConfigurationError, match="idle_ttl=-1 must be a positive"):
        SQLiteConversationStore(":memory:", idle_ttl=-1)
