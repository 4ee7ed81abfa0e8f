"""The cost of tracing on echo calls: the famefabric trio exporting spans, sampled at 1 % and 100 %.

``fabric_trace1``: every process has ``OTEL_EXPORTER_OTLP_ENDPOINT`` set and
samples 1 % of the traces (``parentbased_traceidratio``, ratio 0.01), so
the other 99 % of calls only carry and check the trace context.
``fabric_trace100``: every call is traced and exported. Both export to an
OTLP/HTTP sink in this process that answers 200 and drops the data. The
plain ``fabric`` system is tracing off: OpenTelemetry is not even imported
there (tests/observability/test_tracing.py checks that).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks.common import Bench
from benchmarks.procs import Proc
from benchmarks.security import _trio

_sink: ThreadingHTTPServer | None = None


class _Drop(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _endpoint() -> str:
    global _sink
    if _sink is None:
        _sink = ThreadingHTTPServer(("127.0.0.1", 0), _Drop)
        threading.Thread(target=_sink.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{_sink.server_address[1]}"


async def tracing_systems(bench: Bench, procs: list[Proc]) -> dict[str, dict[str, Proc]]:
    """Start the ``fabric_trace1`` and ``fabric_trace100`` trios (processes go into ``procs``)."""
    systems = {}
    for name, sampler, ratio in (
        ("fabric_trace1", "parentbased_traceidratio", "0.01"),
        ("fabric_trace100", "parentbased_always_on", "1"),
    ):
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": _endpoint(),
            "OTEL_TRACES_SAMPLER": sampler,
            "OTEL_TRACES_SAMPLER_ARG": ratio,
        }
        systems[name] = await _trio(
            bench,
            name,
            procs,
            sentinel_args=[],
            sentinel_env=env,
            node_env=env,
            url="ws://127.0.0.1:{port}/fame/v1/attach/ws/downstream",
        )
    return systems
