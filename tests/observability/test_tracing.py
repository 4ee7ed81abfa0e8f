"""One trace per turn across real client, sentinel and chat-agent processes.

Each process exports OTLP/HTTP to a receiver in this test, which decodes the
requests with ``opentelemetry-proto``. The client process
(``traced_client.py``) prints the trace id of each thing it did.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from support.pool import ProcessPool
from support.procs import wait_for
from support.sentinels import OurSentinel

from famefabric.observability import tracing
from famefabric.testing import OpenAIStubServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FAME = str(Path(sys.executable).with_name("fame"))
CLIENT = Path(__file__).with_name("traced_client.py")
ERROR = 2  # Status.STATUS_CODE_ERROR


@dataclass
class SpanRecord:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent: str
    kind: int
    status: int
    description: str
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1 that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest.FromString(body)
                receiver.add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                attributes = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                service = str(attributes.get("service.name"))
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append(
                            SpanRecord(
                                service=service,
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent=span.parent_span_id.hex(),
                                kind=span.kind,
                                status=span.status.code,
                                description=span.status.message,
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                events=[event.name for event in span.events],
                            )
                        )

    def trace(self, trace_id: str) -> list[SpanRecord]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def slow_llm() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer(token_delay=0.05) as server:
        yield server


def otel_env(receiver: Receiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}


def ancestors(span: SpanRecord, spans: list[SpanRecord]) -> list[SpanRecord]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent in by_id:
        span = by_id[span.parent]
        chain.append(span)
    return chain


def render(spans: list[SpanRecord]) -> str:
    """The trace as an indented tree: service, span name, duration-free (for messages)."""
    children: dict[str, list[SpanRecord]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        children.setdefault(span.parent if span.parent in ids else "", []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in children.get(parent, []):
            lines.append(f"{'  ' * depth}{span.name}  [{span.service}]")
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


def one(spans: list[SpanRecord], service: str, name: str) -> SpanRecord:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, (service, name, [(s.service, s.name) for s in spans])
    return found[0]


async def test_a_turn_is_one_trace_across_client_sentinel_agent_and_llm(
    processes: ProcessPool, receiver: Receiver, slow_llm: OpenAIStubServer
) -> None:
    env = otel_env(receiver)

    class TracedSentinel(OurSentinel):
        def _env(self) -> dict[str, str]:
            return env

    sentinel = TracedSentinel(node_id="tracedSentinel1", name="sentinel", log_dir=processes.log_dir)
    processes.processes.append(sentinel.process)
    await sentinel.start()
    agent = processes.spawn(
        "chat-agent",
        [FAME, "agent", "chat"],
        env=sentinel.node_env(
            {
                **env,
                "OPENAI_BASE_URL": slow_llm.url,
                "OPENAI_API_KEY": "sk-secret-test-key",
                "MODEL_NAME": "test",
                "CHAT_STORE": "memory://",
                "FAME_LOG_FORMAT": "json",
                "FAME_LOG_LEVEL": "info",
            }
        ),
    )
    await sentinel.wait_health(lambda h: h.get("addresses", 0) >= 1, what="agent binds", within=20)
    client = processes.spawn(
        "client", [sys.executable, os.fspath(CLIENT)], env=sentinel.node_env(env)
    )
    assert await client.wait_exit(within=60) == 0, client.describe()
    traces = dict(
        line.split()[1:3] for line in client.stdout().splitlines() if line.startswith("TRACE ")
    )
    assert set(traces) == {"start", "unary", "stream", "cancel", "nack"}, client.stdout()

    def complete() -> bool:
        unary = receiver.trace(traces["unary"])
        cancelled = receiver.trace(traces["cancel"])
        return (
            {s.service for s in unary}
            >= {"famefabric-chat", "famefabric-sentinel", "famefabric-chat-agent"}
            and any(s.name == "chat test" for s in unary)
            and any(s.service == "famefabric-chat-agent" for s in cancelled)
            and any(s.name == "chat test" for s in receiver.trace(traces["stream"]))
        )

    assert await wait_for(complete, within=20), [(s.service, s.name) for s in receiver.spans]

    # The unary turn: client -> sentinel -> agent -> store and LLM, nested in that order.
    unary = receiver.trace(traces["unary"])
    print(render(unary))
    call = one(unary, "famefabric-chat", "run_turn")
    hop = one(unary, "famefabric-sentinel", "sentinel forward")
    handler = one(unary, "famefabric-chat-agent", "run_turn")
    llm = one(unary, "famefabric-chat-agent", "chat test")
    load = one(unary, "famefabric-chat-agent", "store load")
    commit = one(unary, "famefabric-chat-agent", "store commit_turn")
    assert hop.parent == call.span_id and handler.parent == hop.span_id
    assert {llm.parent, load.parent, commit.parent} == {handler.span_id}
    assert ancestors(llm, unary)[-1].name == "unary turn"
    assert hop.attributes["fame.to"] == "chat@fame.fabric"
    assert hop.attributes["rpc.method"] == "run_turn"
    assert hop.attributes["fame.route"] == "deliver"
    assert "fame.queue.messages" in hop.attributes
    assert llm.attributes["gen_ai.request.model"] == "test"
    assert llm.attributes["gen_ai.usage.input_tokens"] > 0
    assert llm.attributes["gen_ai.usage.output_tokens"] > 0
    assert all(s.status != ERROR for s in unary)

    # The streamed turn: first piece and end are events; the LLM call is timed to its first token.
    stream = receiver.trace(traces["stream"])
    streamed = one(stream, "famefabric-chat-agent", "stream_turn")
    assert streamed.events == ["first item", "end of stream"]
    assert one(stream, "famefabric-chat-agent", "chat test").events[0] == "first token"
    assert one(stream, "famefabric-chat", "stream_turn").status != ERROR

    # The abandoned stream: the client's span and the agent's handler say so.
    cancelled = receiver.trace(traces["cancel"])
    abandoned = one(cancelled, "famefabric-chat", "stream_turn")
    assert (abandoned.status, abandoned.description) == (ERROR, "cancelled")
    handler = one(cancelled, "famefabric-chat-agent", "stream_turn")
    assert (handler.status, handler.attributes["fame.outcome"]) == (ERROR, "cancelled")

    # The refused call: the NACK code on the client's span and on the sentinel's.
    refused = receiver.trace(traces["nack"])
    assert one(refused, "famefabric-chat", "anything").attributes["fame.nack.code"] == "NO_ROUTE"
    rejected = one(refused, "famefabric-sentinel", "sentinel forward")
    assert (rejected.status, rejected.attributes["fame.nack.code"]) == (ERROR, "NO_ROUTE")
    assert rejected.attributes["fame.route"] == "reject"

    # Nothing secret or said in the conversation went into a span.
    everything = json.dumps([s.attributes for s in receiver.spans])
    assert "sk-secret" not in everything and "hello" not in everything

    # The agent's JSON log lines parse, and the start of the conversation carries its trace id.
    await agent.stop()
    lines = [json.loads(line) for line in agent.stderr().splitlines() if line.strip()]
    started = [line for line in lines if "conversation tracedConv1 started" in line["message"]]
    assert len(started) == 1 and started[0]["trace_id"] == traces["start"]
    assert all("sk-secret" not in json.dumps(line) for line in lines)


async def test_tracing_off_imports_no_opentelemetry() -> None:
    code = (
        "import sys, famefabric, famefabric.cli, famefabric.sentinel.server, famefabric.chat.agent;"
        "from famefabric.observability import tracing;"
        "assert not tracing.setup('x', env={});"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0 and out.decode().strip() == "[]"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("00", True), ("02", True), ("fe", True), ("01", False), ("03", False), ("ff", False)],
)
def test_a_hop_reads_the_sampled_bit_of_the_trace_flags(flags: str, expected: bool) -> None:
    """Bit 0 says sampled; bit 1 (a random trace id, set by recent SDKs) says nothing of it."""
    assert tracing.unsampled({"traceparent": f"00-{'a' * 32}-{'b' * 16}-{flags}"}) is expected


@pytest.mark.parametrize(
    "meta",
    [
        None,
        {},
        {"traceparent": 7},
        {"traceparent": f"00-{'a' * 32}-{'b' * 16}-zz"},
        {"traceparent": f"00-{'a' * 32}-{'b' * 16}-0"},
        {"traceparent": f"00-{'a' * 32}-{'b' * 16}x00"},
    ],
)
def test_a_missing_or_malformed_trace_context_is_not_taken_as_unsampled(meta: object) -> None:
    assert tracing.unsampled(meta) is False


async def test_hops_skip_the_calls_the_sdk_did_not_sample_and_trace_the_ones_it_did() -> None:
    """What the real SDK puts in a request's meta at ratio 0 and at 1 is read right by a hop."""
    code = (
        "import json, sys;"
        "from famefabric.observability import tracing;"
        "from famefabric.node import call_spans;"
        "assert tracing.setup('x', force=True);"
        "requests = [{'meta': {}} for _ in range(50)];"
        "[call_spans.end(call_spans.start('m', 'a@fame.fabric', r, streaming=False)) "
        "for r in requests];"
        "print(json.dumps([tracing.unsampled(r['meta']) for r in requests]))"
    )
    answers = {}
    for sampler in ("parentbased_traceidratio", "parentbased_always_on"):
        env = {
            **os.environ,
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_TRACES_SAMPLER": sampler,
            "OTEL_TRACES_SAMPLER_ARG": "0",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, env=env
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0
        answers[sampler] = json.loads(out)
    assert answers == {
        "parentbased_traceidratio": [True] * 50,
        "parentbased_always_on": [False] * 50,
    }
