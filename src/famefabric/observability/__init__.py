"""What the fabric does, seen from outside: traces, metrics and structured logs.

- :mod:`~famefabric.observability.tracing`: OpenTelemetry spans across every
  hop, off unless ``OTEL_*`` configuration (or ``FAME_TRACING``) turns it on;
- :mod:`~famefabric.observability.metrics`: Prometheus counters, histograms
  and gauges, served at ``/metrics`` (:mod:`~famefabric.observability.endpoint`);
- :mod:`~famefabric.observability.logs`: text or JSON log lines with trace
  and conversation ids.
"""
