"""The HTTP gateway: time to first token through its SSE stream, the cost of a seeded
conversation create (metadata + initial items), and 100 streams at once.

Processes: two OpenAI stub servers (one answering at once, one writing a
token every 20 ms so that streams overlap), ``fame sentinel``, two chat agents
(``chat@fame.fabric`` on the fast stub, ``chatslow@fame.fabric`` on the slow
one), ``fame gateway`` and the driver (:mod:`benchmarks.gateway_client`).
"""

from __future__ import annotations

from typing import Any

from benchmarks.chat import chat_agent_argv, chat_agent_env
from benchmarks.common import FAME, PYTHON, Bench, admission_env, wait_http_ok
from benchmarks.procs import free_port, wait_port

CHAT_ADDRESS = "chat@fame.fabric"
SLOW_ADDRESS = "chatslow@fame.fabric"
STREAMS = 100


async def _stub(bench: Bench, name: str, token_delay: float) -> str:
    port = free_port()
    stub = await bench.supervisor.spawn(
        name,
        [
            PYTHON,
            "-m",
            "famefabric.testing.openai_server",
            "--port",
            str(port),
            "--token-delay",
            str(token_delay),
        ],
        pipe_stdout=False,
    )
    await wait_port(port, 20.0, stub)
    return f"http://127.0.0.1:{port}/v1"


async def run(bench: Bench) -> None:
    """Section: gateway TTFT vs a direct streamed call; 100 concurrent SSE streams."""
    cfg = bench.config
    results: dict[str, Any] = bench.results.setdefault("gateway", {})
    sup = bench.supervisor
    fast_url = await _stub(bench, "openai-stub-fast", 0.0)
    slow_url = await _stub(bench, "openai-stub-slow", 0.02)
    _, port = await bench.start_sentinel("gateway-sentinel", node_id="benchGateway")
    await sup.spawn(
        "gateway-chat-agent",
        chat_agent_argv(CHAT_ADDRESS, "memory://"),
        env=chat_agent_env(port, fast_url),
        pipe_stdout=False,
    )
    slow_env = chat_agent_env(port, slow_url)
    slow_env["FAME_AGENT_MAX_CONCURRENCY"] = str(2 * STREAMS)
    await sup.spawn(
        "gateway-chat-agent-slow",
        chat_agent_argv(SLOW_ADDRESS, "memory://"),
        env=slow_env,
        pipe_stdout=False,
    )
    gateway_port = free_port()
    gateway = await sup.spawn(
        "gateway",
        [FAME, "gateway", "--port", str(gateway_port), "--log-level", "warning"],
        env=admission_env(port, FAME_GATEWAY_MAX_STREAMS_PER_USER=str(2 * STREAMS)),
        pipe_stdout=False,
    )
    await wait_http_ok(gateway_port, "/healthz", 20.0, gateway)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    client, _ = await bench.start_driver(
        "gateway-client",
        [
            PYTHON,
            "-m",
            "benchmarks.gateway_client",
            "--gateway-url",
            gateway_url,
            "--stub-url",
            fast_url,
        ],
        admission_env(port),
        limit=90.0,
    )
    timeout = cfg.chat_duration * 4 + 60.0
    for rep in range(cfg.latency_repeats):
        bench.say(f"gateway: repeat {rep + 1}/{cfg.latency_repeats}")
        results.setdefault("ttft", []).append(
            await client.request("ttft", timeout, duration=cfg.chat_duration)
        )
    bench.say("gateway: conversations created bare and with metadata + 20 items")
    results["create"] = await client.request("create", timeout, count=20 if cfg.quick else 100)
    bench.say(f"gateway: {STREAMS} concurrent streams")
    results["streams"] = await client.request("streams", 120.0, count=STREAMS, model=SLOW_ADDRESS)
    await sup.stop_all()
