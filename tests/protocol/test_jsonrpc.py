"""JSON-RPC payload helpers (PROTOCOL.md §8.3, §10)."""

from __future__ import annotations

import pytest

from famefabric.protocol import jsonrpc


def test_null_result_omits_the_result_key() -> None:
    assert jsonrpc.make_result("1", None) == {"jsonrpc": "2.0", "id": "1"}
    assert jsonrpc.make_result("1", 0) == {"jsonrpc": "2.0", "id": "1", "result": 0}


def test_end_marker_is_recognised_with_or_without_explicit_null() -> None:
    for payload in ({"jsonrpc": "2.0", "id": "1"}, {"jsonrpc": "2.0", "id": "1", "result": None}):
        response = jsonrpc.parse_response(payload)
        assert response is not None and response.is_end_marker


def test_error_response_is_not_an_end_marker() -> None:
    response = jsonrpc.parse_response(jsonrpc.make_error("1", -32603, "kaboom"))
    assert response is not None and not response.is_end_marker
    assert response.error == {"code": -32603, "message": "kaboom"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"args": ["a"], "kwargs": {"b": 1}}, (["a"], {"b": 1})),
        ({"args": [], "kwargs": {}}, ([], {})),
        ({"text": "plain"}, ([], {"text": "plain"})),
        (["x", 2], (["x", 2], {})),
        (None, ([], {})),
    ],
)
def test_split_params_reads_every_accepted_shape(
    params: object, expected: tuple[list[object], dict[str, object]]
) -> None:
    assert jsonrpc.split_params(params) == expected


def test_split_params_rejects_a_scalar() -> None:
    with pytest.raises(ValueError, match="params must be an object or a list, got int"):
        jsonrpc.split_params(3)


def test_requests_without_a_method_are_not_requests() -> None:
    assert jsonrpc.parse_request("hello") is None
    assert jsonrpc.parse_request({"jsonrpc": "2.0", "id": "1", "result": 1}) is None
    request = jsonrpc.parse_request({"jsonrpc": "2.0", "id": 7, "method": "echo"})
    assert request == jsonrpc.Request(method="echo", params=None, id="7")
