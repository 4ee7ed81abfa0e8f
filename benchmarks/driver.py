"""The client side of every benchmark: a command loop and two measurements.

A *driver* is a client process (a floor client, a famefabric client, a
Naylence client, the chat client) that the orchestrator starts once and then
commands over stdin/stdout, one JSON object per line:

* the driver prints ``READY {...}`` once it is connected;
* the orchestrator writes ``{"op": ..., ...}``; the driver answers
  ``RESULT {...}`` or ``ERROR {"error": ...}``; ``{"op": "quit"}`` ends it.

Anything else the process writes to stdout (an SDK printing envelopes, say)
is diverted to stderr, so the protocol lines stay clean.

Standard library only: the Naylence scripts run this module under the
interop virtualenv's Python.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TextIO

Call = Callable[[], Awaitable[object]]
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Setup = Callable[[], AbstractAsyncContextManager[tuple[dict[str, Handler], dict[str, Any]]]]

READY = "READY"
RESULT = "RESULT"
ERROR = "ERROR"


def percentile(ordered: list[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of sorted values, by linear interpolation."""
    if not ordered:
        return math.nan
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(seconds: list[float]) -> dict[str, float]:
    """Return count, mean, p50, p90, p99 and max of latencies, in milliseconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {"count": 0}
    ms = 1000.0
    return {
        "count": len(ordered),
        "mean_ms": sum(ordered) / len(ordered) * ms,
        "p50_ms": percentile(ordered, 0.50) * ms,
        "p90_ms": percentile(ordered, 0.90) * ms,
        "p99_ms": percentile(ordered, 0.99) * ms,
        "max_ms": ordered[-1] * ms,
    }


async def measure_latency(
    call: Call, *, duration: float, warmup: int = 50, max_samples: int = 200_000
) -> dict[str, Any]:
    """Make sequential calls for ``duration`` seconds; return their latency summary."""
    for _ in range(warmup):
        await call()
    samples: list[float] = []
    clock = time.perf_counter
    end = clock() + duration
    while len(samples) < max_samples:
        started = clock()
        if started >= end:
            break
        await call()
        samples.append(clock() - started)
    return summarize(samples)


async def measure_throughput(
    call: Call, *, inflight: int, duration: float, warmup: float = 0.2
) -> dict[str, Any]:
    """Keep ``inflight`` calls outstanding for ``duration`` seconds; return calls/s.

    Each of ``inflight`` workers calls again as soon as its previous call
    returns. The rate counts calls completed until the last worker stops.
    A short warm-up at the same concurrency comes first and is not counted.
    """
    clock = time.perf_counter
    errors: list[str] = []

    async def worker(stop_at: float, latencies: list[float] | None) -> int:
        done = 0
        while True:
            started = clock()
            if started >= stop_at:
                return done
            try:
                await call()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if len(errors) > 100:
                    raise
                continue
            done += 1
            if latencies is not None:
                latencies.append(clock() - started)

    if warmup > 0:
        stop = clock() + warmup
        await asyncio.gather(*(worker(stop, None) for _ in range(inflight)))
    latencies: list[float] = []
    started = clock()
    counts = await asyncio.gather(*(worker(started + duration, latencies) for _ in range(inflight)))
    elapsed = clock() - started
    calls = sum(counts)
    result: dict[str, Any] = {
        "inflight": inflight,
        "calls": calls,
        "secs": elapsed,
        "rate": calls / elapsed if elapsed > 0 else 0.0,
        "latency": summarize(latencies),
    }
    if errors:
        result["errors"] = len(errors)
        result["first_error"] = errors[0]
    return result


def echo_handlers(call: Call) -> dict[str, Handler]:
    """Return the ``latency`` and ``throughput`` handlers for one echo call."""

    async def latency(command: dict[str, Any]) -> dict[str, Any]:
        return await measure_latency(
            call, duration=float(command["duration"]), warmup=int(command.get("warmup", 50))
        )

    async def throughput(command: dict[str, Any]) -> dict[str, Any]:
        return await measure_throughput(
            call,
            inflight=int(command["inflight"]),
            duration=float(command["duration"]),
            warmup=float(command.get("warmup", 0.2)),
        )

    return {"latency": latency, "throughput": throughput}


def _protocol_stream() -> TextIO:
    """Keep the real stdout for protocol lines; send fd 1 to stderr from now on."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def _emit(out: TextIO, kind: str, body: dict[str, Any]) -> None:
    out.write(f"{kind} {json.dumps(body, default=str)}\n")
    out.flush()


async def _lines() -> AsyncIterator[str]:
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        line = line.strip()
        if line:
            yield line


async def serve(setup: Setup) -> int:
    """Run a driver: set up, print ``READY``, answer commands until ``quit`` or EOF."""
    out = _protocol_stream()
    try:
        async with setup() as (handlers, info):
            _emit(out, READY, info)
            async for line in _lines():
                command = json.loads(line)
                op = command.get("op")
                if op == "quit":
                    break
                handler = handlers.get(str(op))
                if handler is None:
                    _emit(out, ERROR, {"error": f"unknown op {op!r}; known: {sorted(handlers)}"})
                    continue
                try:
                    _emit(out, RESULT, await handler(command))
                except Exception as exc:
                    _emit(out, ERROR, {"error": f"{type(exc).__name__}: {exc}"})
    except Exception as exc:
        _emit(out, ERROR, {"error": f"setup failed: {type(exc).__name__}: {exc}"})
        return 1
    return 0
