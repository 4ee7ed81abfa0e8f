"""``/metrics`` of a real sentinel and chat-agent process, scraped over HTTP around a known workload."""

from __future__ import annotations

import asyncio
import sys
import urllib.error
import urllib.request
from http import HTTPStatus
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.pool import ProcessPool
from support.sentinels import OurSentinel

from famefabric import FameFabric
from famefabric.errors import NoRoute
from famefabric.observability.metrics import check_access, is_loopback
from famefabric.testing import OpenAIStubServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

FAME = str(Path(sys.executable).with_name("fame"))
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class TokenSentinel(OurSentinel):
    """Our sentinel with ``FAME_METRICS_TOKEN`` set."""

    def _env(self) -> dict[str, str]:
        return {"FAME_METRICS_TOKEN": "s3cret-scrape-token"}


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def scrape(port: int, token: str | None = None) -> Samples:
    """Every sample of ``/metrics`` on ``port``, parsed by prometheus_client's parser."""
    status, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics", token)
    assert status == HTTPStatus.OK, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_move_by_exactly_the_workload(
    processes: ProcessPool, openai_stub: OpenAIStubServer
) -> None:
    sentinel = await processes.our_sentinel(node_id="metricsSentinel1")
    env = sentinel.node_env(
        {
            "OPENAI_BASE_URL": openai_stub.url,
            "OPENAI_API_KEY": "test",
            "MODEL_NAME": "test",
            "CHAT_STORE": "memory://",
        }
    )
    # The flag form of FAME_METRICS_PORT (port 0: the agent reports the port it got).
    agent = processes.spawn("chat-agent", [FAME, "agent", "chat", "--metrics-port", "0"], env=env)
    serving = await agent.wait_for_line(
        r"metrics on http://\S+:(\d+)/metrics", stream="stderr", what="the port of its /metrics"
    )
    agent_port = int(serving.group(1))
    await sentinel.wait_health(
        lambda health: health.get("addresses", 0) >= 1, what="the chat agent binds", within=20
    )
    async with FameFabric.create(admission_url=sentinel.admission_url) as fabric:
        await fabric.node.call("chat@fame.fabric", "list_conversations", {})  # warm up
        sentinel_before = await scrape(sentinel.port)
        agent_before = await scrape(agent_port)
        calls = 5
        for _ in range(calls):
            assert await fabric.node.call("chat@fame.fabric", "list_conversations", {}) == []
        with pytest.raises(NoRoute):
            await fabric.node.call("nobody@fame.fabric", "anything", {})
        sentinel_after = await scrape(sentinel.port)
        agent_after = await scrape(agent_port)

    def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Each call is one request in and one reply in; the refused one is a request alone.
    data = "fame_sentinel_envelopes_received_total"
    assert moved(sentinel_before, sentinel_after, data, frame="Data") == 2 * calls + 1
    nacks = "fame_sentinel_nacks_total"
    assert moved(sentinel_before, sentinel_after, nacks, code="NO_ROUTE") == 1
    assert moved(sentinel_before, sentinel_after, nacks, code="FORBIDDEN") == 0
    assert moved(sentinel_before, sentinel_after, "fame_sentinel_forward_seconds_count") >= (
        2 * calls + 1
    )
    assert value(sentinel_after, "fame_sentinel_bindings") >= 1
    assert value(sentinel_after, "fame_sentinel_connections") == 2
    assert value(sentinel_after, "fame_sentinel_connections_accepted_total") >= 2
    calls_ok = {"operation": "list_conversations", "outcome": "ok"}
    assert moved(agent_before, agent_after, "fame_agent_calls_total", **calls_ok) == calls
    histogram = "fame_agent_handler_seconds_count"
    assert moved(agent_before, agent_after, histogram, operation="list_conversations") == calls
    assert value(agent_after, "fame_agent_handlers_running") == 0


async def test_a_metrics_token_is_required_when_set(processes: ProcessPool) -> None:
    sentinel = TokenSentinel(
        node_id="metricsSentinel2", name="token-sentinel", log_dir=processes.log_dir
    )
    processes.processes.append(sentinel.process)
    await sentinel.start()
    url = f"http://127.0.0.1:{sentinel.port}/metrics"
    status, body = await asyncio.to_thread(_get, url)
    assert status == HTTPStatus.UNAUTHORIZED and "Bearer" in body
    status, body = await asyncio.to_thread(_get, url, "wrong-token")
    assert status == HTTPStatus.UNAUTHORIZED and "not valid" in body
    assert "s3cret" not in body
    samples = await scrape(sentinel.port, "s3cret-scrape-token")
    assert ("fame_sentinel_connections", ()) in samples
    assert "s3cret" not in sentinel.process.stderr()


def test_without_a_token_only_loopback_clients_are_served() -> None:
    assert check_access("127.0.0.1", None, None) is None
    assert check_access("::1", None, None) is None
    assert check_access("::ffff:127.0.0.1", None, None) is None
    refused = check_access("192.0.2.10", None, None)
    assert refused is not None and refused[0] == HTTPStatus.FORBIDDEN
    assert "FAME_METRICS_TOKEN" in refused[1]
    # A token opens it to other hosts, and then every client needs it, loopback too.
    assert check_access("192.0.2.10", "Bearer t0k", "t0k") is None
    assert check_access("127.0.0.1", None, "t0k") is not None
    assert check_access("127.0.0.1", "Basic t0k", "t0k") is not None
    assert not is_loopback("not an address")
    assert not is_loopback(None)
