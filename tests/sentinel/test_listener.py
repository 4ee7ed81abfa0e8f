"""The sentinel's port: attach paths, handshake refusals, subprotocols, health endpoints."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from famefabric.sentinel import Sentinel
from famefabric.sentinel.listener import attach_target
from famefabric.sentinel.system_ids import is_valid_system_id

S = "listenerSentinel"


@pytest.mark.parametrize(
    ("path", "child"),
    [
        ("/fame/v1/attach/ws/downstream/abc", "abc"),
        ("/fame/v1/attach/ws/downstream/a.b_c-D9?token=x", "a.b_c-D9"),
        ("/fame/v1/attach/ws/downstream", None),
        ("/fame/v1/attach/ws/downstream/", None),
        ("/fame/v1/attach/ws/downstream/abc/extra", None),
        ("/fame/v1/attach/ws/sideways/abc", None),
        ("/fame/v1/attach/ws/peer/abc", None),
        (f"/fame/v1/attach/ws/downstream/{S}", None),
        ("/fame/v1/attach/ws/downstream/a%20b", None),
        ("/fame/v1/attach/ws/downstream/..", None),
        ("/elsewhere/downstream/abc", None),
    ],
)
def test_attach_target_accepts_only_downstream_with_one_valid_foreign_id(
    path: str, child: str | None
) -> None:
    assert attach_target(path, S) == child


def test_system_ids_are_single_path_segments() -> None:
    assert is_valid_system_id("K8Kb3WylQODnk0IQ")
    assert not is_valid_system_id("")
    assert not is_valid_system_id("a/b")
    assert not is_valid_system_id("a b")


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """Send a plain HTTP GET and return status, headers and body."""
    async with asyncio.timeout(2.0):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode().split("\r\n")
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        finally:
            writer.close()
            await writer.wait_closed()
    return int(status_line.split()[1]), headers, body


async def test_health_endpoints_answer_json() -> None:
    async with Sentinel(system_id=S, host="127.0.0.1", port=0) as sentinel:
        status, headers, body = await http_get(sentinel.port, "/fame/v1/attach/health")
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert orjson.loads(body) == {
            "status": "healthy",
            "nodes": 0,
            "addresses": 0,
            "systemId": S,
        }
        status, _, body = await http_get(sentinel.port, "/fame/v1/ingress/health")
        assert (status, orjson.loads(body)) == (200, {"status": "healthy"})


@pytest.mark.parametrize("path", ["/", "/health", "/docs", "/fame/v1/attach/ws/downstream/abc"])
async def test_other_http_requests_get_the_reference_404(path: str) -> None:
    async with Sentinel(system_id=S, host="127.0.0.1", port=0) as sentinel:
        status, headers, body = await http_get(sentinel.port, path)
        assert status == 404
        assert headers["content-type"] == "application/json"
        assert orjson.loads(body) == {"detail": "Not Found"}


@pytest.mark.parametrize(
    "path",
    [
        "/fame/v1/attach/ws/downstream",
        "/fame/v1/attach/ws/downstream/",
        "/fame/v1/attach/ws/downstream/abc/extra",
        "/fame/v1/attach/ws/sideways/abc",
        f"/fame/v1/attach/ws/downstream/{S}",
    ],
)
async def test_bad_attach_paths_are_refused_with_an_empty_403(path: str) -> None:
    async with Sentinel(system_id=S, host="127.0.0.1", port=0) as sentinel:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{sentinel.port}{path}", open_timeout=2)
        assert refused.value.response.status_code == 403
        assert refused.value.response.body == b""


@pytest.mark.parametrize(
    ("offered", "selected"),
    [(None, None), (["bearer", "tok123"], "bearer"), (["json"], None), (["json", "bearer"], None)],
)
async def test_bearer_is_selected_only_when_offered_first(
    offered: list[str] | None, selected: str | None
) -> None:
    async with Sentinel(system_id=S, host="127.0.0.1", port=0) as sentinel:
        url = f"ws://127.0.0.1:{sentinel.port}/fame/v1/attach/ws/downstream/abc"
        ws = await connect(url, subprotocols=offered, open_timeout=2)  # type: ignore[arg-type]
        assert ws.subprotocol == selected
        await ws.close()


async def test_health_reports_attached_nodes_and_bound_addresses() -> None:
    async with Sentinel(system_id=S, host="127.0.0.1", port=0) as sentinel:
        sentinel.table.add_node("n1")
        sentinel.table.bind("n1", "echo@fame.fabric")
        _, _, body = await http_get(sentinel.port, "/fame/v1/attach/health")
        assert orjson.loads(body)["nodes"] == 1
        assert orjson.loads(body)["addresses"] == 1
        sentinel.table.remove_node("n1")
