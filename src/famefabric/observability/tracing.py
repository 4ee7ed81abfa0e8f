"""OpenTelemetry traces across every hop, off unless configured.

Tracing is on in a process when :func:`setup` finds it configured by the
standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or ``OTEL_TRACES_EXPORTER`` other than
``none``) or by ``FAME_TRACING=true`` (then OTLP/HTTP to ``localhost:4318``),
and ``OTEL_SDK_DISABLED`` is not true. Sampling follows ``OTEL_TRACES_SAMPLER``
and ``OTEL_TRACES_SAMPLER_ARG`` (default: parent-based, always on), the
service name ``OTEL_SERVICE_NAME`` (default: the process's role). Exporters:
``otlp`` (OTLP over HTTP/protobuf, ``OTEL_EXPORTER_OTLP_*``) and ``console``.

Off, this module imports nothing from OpenTelemetry, and hot paths pay one
module attribute read: they test :data:`ACTIVE` before calling anything here.

Trace context travels in envelopes (PROTOCOL.md §3.4): a traced request
carries ``meta.traceparent`` (and ``meta.tracestate``) in W3C Trace Context
form, and its ``traceId`` is the same trace id (32 hex digits), so a peer
that only copies ``traceId`` into its replies stays in the trace. Each hop
starts its own span as a child of the one in ``meta.traceparent`` and
passes its own on.

What spans hold: addresses, method names, node ids, codes, sizes and token
counts. Never message contents, parameters, results, credentials or ``meta``
values other than the trace context.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from famefabric.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

ACTIVE = False
"""True once :func:`setup` turned tracing on in this process."""

TRACING_SETTING = "FAME_TRACING"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_parent_based = True
_UNSAMPLED_FLAGS = frozenset(("00", "02"))  # the common ones, without parsing
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_otel: Any = None  # the OpenTelemetry modules, once imported


def configured(env: Mapping[str, str] | None = None) -> bool:
    """Tell whether the environment asks for traces.

    Raises:
        ConfigurationError: ``FAME_TRACING`` is not a boolean.
    """
    env = env if env is not None else os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    raw = env.get(TRACING_SETTING, "").strip().lower()
    if raw not in ("", "0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ConfigurationError(
            f"{TRACING_SETTING}={raw!r} is not a boolean: expected true or false"
        )
    if raw in ("1", "true", "yes", "on"):
        return True
    exporter = env.get("OTEL_TRACES_EXPORTER")
    if exporter is not None and exporter.strip():
        return exporter.strip().lower() != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def setup(service_name: str, *, env: Mapping[str, str] | None = None, force: bool = False) -> bool:
    """Turn tracing on for this process if configured (or ``force``); return whether it is on.

    Call it once at process start, before serving. Spans are exported in
    batches; :func:`shutdown` (also run at exit) flushes what is left.

    Args:
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` says otherwise.
        env: the environment (default ``os.environ``).
        force: turn it on even if the environment does not ask (a ``--trace`` flag).

    Raises:
        ConfigurationError: an unknown exporter in ``OTEL_TRACES_EXPORTER``.
    """
    global ACTIVE, _tracer, _provider, _otel, _parent_based
    env = env if env is not None else os.environ
    if ACTIVE:
        return True
    if not (force or configured(env)):
        return False
    # Imported here, not at the top: a process without tracing never loads the SDK.
    from opentelemetry import context, trace
    from opentelemetry.propagators.textmap import DefaultGetter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters: list[Any] = []
    for name in filter(None, names):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = None
            if not (
                env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            ):
                endpoint = "http://localhost:4318/v1/traces"
            exporters.append(OTLPSpanExporter(endpoint=endpoint))
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']!r}: {name!r} is not "
                "supported here: use otlp, console or none"
            )
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    class _Otel:
        pass

    otel = _Otel()
    otel.trace = trace  # type: ignore[attr-defined]
    otel.context = context  # type: ignore[attr-defined]
    otel.SpanKind = SpanKind  # type: ignore[attr-defined]
    otel.Status = Status  # type: ignore[attr-defined]
    otel.ERROR = StatusCode.ERROR  # type: ignore[attr-defined]
    otel.OK = StatusCode.OK  # type: ignore[attr-defined]
    otel.propagator = TraceContextTextMapPropagator()  # type: ignore[attr-defined]
    otel.getter = DefaultGetter()  # type: ignore[attr-defined]
    _otel = otel
    _provider = provider
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    _parent_based = not sampler or sampler.startswith("parentbased")
    _tracer = provider.get_tracer("famefabric")
    ACTIVE = True
    atexit.register(shutdown)
    log.info("tracing on: service %s", env.get("OTEL_SERVICE_NAME") or service_name)
    return True


def shutdown() -> None:
    """Export the spans still buffered and stop tracing; safe to call twice."""
    global ACTIVE, _tracer, _provider
    provider, _provider = _provider, None
    ACTIVE = False
    _tracer = None
    if provider is not None:
        provider.shutdown()


def flush(timeout_millis: int = 5000) -> bool:
    """Export the spans buffered so far (tests, short-lived processes)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


def unsampled(meta: object) -> bool:
    """Tell whether a request's ``meta.traceparent`` says its trace is not sampled.

    With a parent-based sampler (the default) no span of this process would
    be recorded for it, so the hop skips its span and passes the context on
    unchanged: at a 1 % sampling ratio, 99 % of the requests cost a dict
    lookup here. (A call such a handler makes then starts a trace of its own.)
    """
    if not _parent_based or type(meta) is not dict:
        return False
    traceparent = meta.get(TRACEPARENT)
    # version-traceid-parentid-flags; of the flags, bit 0 is "sampled" (bit 1,
    # "random trace id", is set by recent SDKs: "-02" is not sampled either).
    if type(traceparent) is not str or len(traceparent) != 55 or traceparent[52] != "-":
        return False
    flags = traceparent[53:]
    if flags in _UNSAMPLED_FLAGS:
        return True
    try:
        return not int(flags, 16) & 1
    except ValueError:
        return False


def _kind(name: str) -> Any:
    return getattr(_otel.SpanKind, name)


def _parent(meta: object) -> Context | None:
    """The context a request's ``meta.traceparent`` names, if any."""
    if not isinstance(meta, dict):
        return None
    traceparent = meta.get(TRACEPARENT)
    if type(traceparent) is not str:
        return None
    carrier = {TRACEPARENT: traceparent}
    tracestate = meta.get(TRACESTATE)
    if type(tracestate) is str:
        carrier[TRACESTATE] = tracestate
    context: Context = _otel.propagator.extract(carrier, getter=_otel.getter)
    return context


def start(
    name: str,
    *,
    kind: str = "INTERNAL",
    meta: object = None,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """Start a span; its parent is ``meta.traceparent`` if given, else the current span.

    Only call it when :data:`ACTIVE`.
    """
    assert _tracer is not None, "tracing.start called while tracing is off"
    context = _parent(meta) if meta is not None else None
    return _tracer.start_span(name, context=context, kind=_kind(kind), attributes=attributes)


def inject(span: Span, wire: MutableMapping[str, Any]) -> None:
    """Put ``span``'s context in an envelope: ``meta.traceparent`` and the ``traceId``."""
    carrier: dict[str, str] = {}
    _otel.propagator.inject(carrier, context=_otel.trace.set_span_in_context(span))
    if not carrier:
        return
    meta = wire.get("meta")
    if not isinstance(meta, dict):
        meta = wire["meta"] = {}
    else:
        meta = wire["meta"] = dict(meta)  # the caller's dict stays as it was
    meta.update(carrier)
    wire["traceId"] = format(span.get_span_context().trace_id, "032x")


@contextmanager
def current(span: Span) -> Iterator[None]:
    """Make ``span`` the current span inside the block (its children nest under it)."""
    token = _otel.context.attach(_otel.trace.set_span_in_context(span))
    try:
        yield
    finally:
        _otel.context.detach(token)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span | None]:
    """A child span of the current one around the block; nothing when tracing is off.

    An exception escaping the block marks the span as failed with its type.
    """
    if not ACTIVE:
        yield None
        return
    assert _tracer is not None
    opened = _tracer.start_span(name, attributes=attributes or None)
    token = _otel.context.attach(_otel.trace.set_span_in_context(opened))
    try:
        yield opened
    except BaseException as exc:
        fail(opened, type(exc).__name__)
        raise
    finally:
        _otel.context.detach(token)
        opened.end()


def fail(span: Span, description: str, **attributes: Any) -> None:
    """Mark ``span`` failed, with attributes (codes); the caller still ends it."""
    if attributes:
        span.set_attributes(attributes)
    span.set_status(_otel.Status(_otel.ERROR, description))


def current_ids() -> tuple[str, str] | None:
    """The (trace id, span id) of the current span as hex, or None."""
    if not ACTIVE:
        return None
    context = _otel.trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
