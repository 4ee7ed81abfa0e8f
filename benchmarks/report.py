"""Turn raw results into figures, targets and tables (Markdown, readable in a terminal).

A :class:`Figure` holds one value per repeat and, when it has one, its
baseline per repeat. Comparisons (ratio, speed-up, difference) are taken
within a repeat — the floor and famefabric of repeat 2 ran one after the
other — and then summarized: median, and the spread min-max.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MB = 1024 * 1024


@dataclass
class Figure:
    """One reported number, its baseline and its target."""

    key: str
    label: str
    unit: str
    values: list[float]
    baseline_label: str = ""
    baseline: list[float] = field(default_factory=list)
    compare: str | None = None
    """``ratio`` (value/baseline), ``speedup`` (baseline/value), ``diff`` (value-baseline), or None."""
    target: tuple[str, float] | None = None
    """(``<=`` or ``>=``, threshold) on the comparison, or on the value when there is none."""
    target_text: str = ""
    note: str = ""

    def compared(self) -> list[float]:
        """The comparison per repeat (paired by repeat when the counts match)."""
        if self.compare is None or not self.baseline or not self.values:
            return []
        if len(self.baseline) == len(self.values):
            pairs = list(zip(self.values, self.baseline, strict=True))
        else:
            middle = statistics.median(self.baseline)
            pairs = [(value, middle) for value in self.values]
        ops: dict[str, Callable[[float, float], float]] = {
            "ratio": lambda v, b: v / b if b else math.nan,
            "speedup": lambda v, b: b / v if v else math.nan,
            "diff": lambda v, b: v - b,
        }
        return [ops[self.compare](v, b) for v, b in pairs]

    def checked(self) -> float | None:
        """The median of what the target applies to."""
        series = self.compared() if self.compare else self.values
        return statistics.median(series) if series else None

    def verdict(self) -> str:
        """PASS, FAIL, or empty when there is no target or no data."""
        measured = self.checked()
        if self.target is None or measured is None or math.isnan(measured):
            return ""
        op, threshold = self.target
        ok = measured <= threshold if op == "<=" else measured >= threshold
        return "PASS" if ok else "FAIL"

    def margin(self) -> str:
        """How far from the threshold: headroom (+) or shortfall (-)."""
        measured = self.checked()
        if self.target is None or measured is None or math.isnan(measured):
            return ""
        op, threshold = self.target
        if self.compare == "diff" or threshold == 0:
            delta = threshold - measured if op == "<=" else measured - threshold
            return f"{delta:+.2f} {self.unit}"
        delta = (
            (threshold - measured) / threshold if op == "<=" else (measured - threshold) / threshold
        )
        return f"{delta * 100:+.0f}%"

    def to_json(self) -> dict[str, Any]:
        """The figure with its summaries."""
        compared = self.compared()
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "values": self.values,
            "median": _median(self.values),
            "baseline_label": self.baseline_label,
            "baseline": self.baseline,
            "baseline_median": _median(self.baseline),
            "compare": self.compare,
            "compared": compared,
            "compared_median": _median(compared),
            "target": self.target_text,
            "verdict": self.verdict(),
            "margin": self.margin(),
            "note": self.note,
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit in ("calls/s", "turns/s"):
        return f"{value:,.0f}"
    if unit == "MB":
        return f"{value:.1f}"
    if unit == "s":
        return f"{value:.2f}"
    if unit == "ms":
        return f"{value:.3f}" if value < 10 else f"{value:.2f}"
    return f"{value:.3g}"


def spread(values: list[float], unit: str) -> str:
    """``median (min-max)`` of the repeats, or one value."""
    if not values:
        return "—"
    middle = _fmt(statistics.median(values), unit)
    if len(values) == 1:
        return middle
    return f"{middle} ({_fmt(min(values), unit)}-{_fmt(max(values), unit)})"


def _compare_text(figure: Figure) -> str:
    compared = figure.compared()
    if not compared:
        return "—"
    if figure.compare == "diff":
        middle, low, high = statistics.median(compared), min(compared), max(compared)
        return f"{middle:+.2f} ms ({low:+.2f}…{high:+.2f})"
    symbol = "x"
    middle, low, high = statistics.median(compared), min(compared), max(compared)
    return f"{middle:.2f}{symbol} ({low:.2f}-{high:.2f})"


# -- building the figures ---------------------------------------------------------------


def _get(path: list[Any], data: Any) -> Any:
    for key in path:
        if data is None:
            return None
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _series(items: list[dict[str, Any]] | None, *path: str) -> list[float]:
    out: list[float] = []
    for item in items or []:
        value = _get(list(path), item)
        if isinstance(value, int | float):
            out.append(float(value))
    return out


def gateway_figures(gateway: dict[str, Any]) -> list[Figure]:
    """The HTTP gateway's rows: SSE time to first token, and concurrent streams held."""
    out: list[Figure] = []
    ttft = gateway.get("ttft", [])
    if ttft:
        out.append(
            Figure(
                "gateway.ttft",
                "Time to first token p50 — gateway SSE (openai SDK) vs direct stream=True",
                "ms",
                _series(ttft, "gateway", "first_piece", "p50_ms"),
                "direct",
                _series(ttft, "direct", "first_piece", "p50_ms"),
                "diff",
                ("<=", 3.0),
                "≤ direct + 3 ms",
            )
        )
        out.append(
            Figure(
                "gateway.ttft_http",
                "Time to first token p50 — gateway SSE vs stream_turn over the fabric (HTTP's own cost)",
                "ms",
                _series(ttft, "gateway", "first_piece", "p50_ms"),
                "fabric",
                _series(ttft, "fabric", "first_piece", "p50_ms"),
                "diff",
            )
        )
    create = gateway.get("create")
    if isinstance(create, dict) and _get(["seeded", "p50_ms"], create) is not None:
        out.append(
            Figure(
                "gateway.create_seeded",
                "conversations.create p50 — 16 metadata pairs + 20 items vs a bare create",
                "ms",
                [float(create["seeded"]["p50_ms"])],
                "bare",
                [float(create["bare"]["p50_ms"])],
                "ratio",
                note="includes the openai SDK's own transform of the parameters",
            )
        )
    if isinstance(create, dict) and _get(["seeded_http", "p50_ms"], create) is not None:
        out.append(
            Figure(
                "gateway.create_seeded_http",
                "POST /v1/conversations p50 (plain JSON) — 16 metadata pairs + 20 items vs bare",
                "ms",
                [float(create["seeded_http"]["p50_ms"])],
                "bare",
                [float(create["bare_http"]["p50_ms"])],
                "ratio",
            )
        )
    streams = gateway.get("streams")
    if isinstance(streams, dict) and streams.get("count"):
        out.append(
            Figure(
                "gateway.streams",
                f"Concurrent SSE streams through the gateway, completed whole of "
                f"{streams['count']} (peak open {streams.get('peak_open', 0)})",
                "streams",
                [float(streams.get("completed", 0))],
                "opened",
                [float(streams["count"])],
                "ratio",
                (">=", 1.0),
                "all hold",
            )
        )
    return out


def figures(results: dict[str, Any]) -> list[Figure]:
    """Every figure the results allow, targets first within each section."""
    out: list[Figure] = []
    echo = results.get("echo", {})
    relay = echo.get("ws_relay", {})
    fabric = echo.get("fabric", {})
    naylence = echo.get("naylence", {})
    relay_p50 = _series(relay.get("latency"), "p50_ms")
    fabric_p50 = _series(fabric.get("latency"), "p50_ms")
    ref_p50 = _series(naylence.get("latency"), "p50_ms")
    if fabric_p50:
        out.append(
            Figure(
                "echo.p50_vs_relay",
                "Echo RPC sequential p50 — famefabric vs 2-hop relay floor",
                "ms",
                fabric_p50,
                "relay floor",
                relay_p50,
                "ratio",
                ("<=", 1.5),
                "≤ 1.5x floor",
            )
        )
        if ref_p50:
            out.append(
                Figure(
                    "echo.p50_vs_naylence",
                    "Echo RPC sequential p50 — famefabric vs Naylence reference",
                    "ms",
                    fabric_p50,
                    "Naylence",
                    ref_p50,
                    "speedup",
                    (">=", 10.0),
                    "≥ 10x faster",
                )
            )
        out.append(
            Figure(
                "echo.p99_vs_relay",
                "Echo RPC sequential p99 — famefabric vs relay floor",
                "ms",
                _series(fabric.get("latency"), "p99_ms"),
                "relay floor",
                _series(relay.get("latency"), "p99_ms"),
                "ratio",
            )
        )
        for inflight in ("64", "16", "1"):
            ours = _series(fabric.get("throughput", {}).get(inflight), "rate")
            floor = _series(relay.get("throughput", {}).get(inflight), "rate")
            target = (">=", 0.6) if inflight == "64" else None
            out.append(
                Figure(
                    f"echo.tp{inflight}_vs_relay",
                    f"Echo RPC throughput, {inflight} in flight — famefabric vs relay floor",
                    "calls/s",
                    ours,
                    "relay floor",
                    floor,
                    "ratio",
                    target,
                    "≥ 0.6x floor" if target else "",
                )
            )
            theirs = _series(naylence.get("throughput", {}).get(inflight), "rate")
            if theirs:
                target = (">=", 30.0) if inflight == "64" else None
                out.append(
                    Figure(
                        f"echo.tp{inflight}_vs_naylence",
                        f"Echo RPC throughput, {inflight} in flight — famefabric vs Naylence",
                        "calls/s",
                        ours,
                        "Naylence",
                        theirs,
                        "ratio",
                        target,
                        "≥ 30x reference" if target else "",
                    )
                )
    for system, what, p50_limit, tp_limit in (
        ("fabric_auth", "tokens on", 1.05, 0.95),
        ("fabric_tls", "TLS on", 1.25, 0.8),
        ("fabric_trace1", "tracing on at 1 %", 1.05, 0.95),
        ("fabric_trace100", "tracing on at 100 %", None, None),
    ):
        secured = echo.get(system, {})
        if not secured.get("latency") or not fabric_p50:
            continue
        out.append(
            Figure(
                f"echo.p50_{system.removeprefix('fabric_')}_vs_plain",
                f"Echo RPC sequential p50 — famefabric with {what} vs without",
                "ms",
                _series(secured.get("latency"), "p50_ms"),
                "plain famefabric",
                fabric_p50,
                "ratio",
                ("<=", p50_limit) if p50_limit is not None else None,
                f"≤ {p50_limit:g}x plain" if p50_limit is not None else "",
            )
        )
        out.append(
            Figure(
                f"echo.tp64_{system.removeprefix('fabric_')}_vs_plain",
                f"Echo RPC throughput, 64 in flight — famefabric with {what} vs without",
                "calls/s",
                _series(secured.get("throughput", {}).get("64"), "rate"),
                "plain famefabric",
                _series(fabric.get("throughput", {}).get("64"), "rate"),
                "ratio",
                (">=", tp_limit) if tp_limit is not None else None,
                f"≥ {tp_limit:g}x plain" if tp_limit is not None else "",
            )
        )
    uv = echo.get("fabric_uvloop", {})
    if uv.get("latency"):
        out.append(
            Figure(
                "echo.uvloop_p50_vs_relay",
                "Echo RPC sequential p50 — famefabric, nodes on uvloop, vs relay floor",
                "ms",
                _series(uv.get("latency"), "p50_ms"),
                "relay floor",
                relay_p50,
                "ratio",
            )
        )
        out.append(
            Figure(
                "echo.uvloop_tp64_vs_relay",
                "Echo RPC throughput, 64 in flight — famefabric, nodes on uvloop, vs relay floor",
                "calls/s",
                _series(uv.get("throughput", {}).get("64"), "rate"),
                "relay floor",
                _series(relay.get("throughput", {}).get("64"), "rate"),
                "ratio",
            )
        )
    chat = results.get("chat", {})
    if chat.get("turn_latency"):
        lat = chat["turn_latency"]
        out.append(
            Figure(
                "chat.p50",
                "Chat turn p50 — through the fabric vs direct openai call",
                "ms",
                _series(lat, "fabric", "p50_ms"),
                "direct",
                _series(lat, "direct", "p50_ms"),
                "diff",
                ("<=", 1.0),
                "≤ direct + 1 ms",
            )
        )
        out.append(
            Figure(
                "chat.p99",
                "Chat turn p99 — fabric vs direct",
                "ms",
                _series(lat, "fabric", "p99_ms"),
                "direct",
                _series(lat, "direct", "p99_ms"),
                "diff",
            )
        )
        tp = chat.get("turn_throughput", [])
        out.append(
            Figure(
                "chat.tp16",
                "Chat, 16 concurrent conversations — fabric vs direct",
                "turns/s",
                _series(tp, "fabric", "rate"),
                "direct",
                _series(tp, "direct", "rate"),
                "ratio",
                (">=", 0.8),
                "≥ 0.8x direct",
            )
        )
        ttft = chat.get("ttft", [])
        out.append(
            Figure(
                "chat.ttft",
                "Streaming time to first token p50 — stream_turn vs direct stream=True",
                "ms",
                _series(ttft, "fabric", "first_piece", "p50_ms"),
                "direct",
                _series(ttft, "direct", "first_piece", "p50_ms"),
                "diff",
                ("<=", 1.0),
                "≤ direct + 1 ms",
            )
        )
        sqlite = chat.get("fabric_sqlite_turn_latency")
        if sqlite:
            out.append(
                Figure(
                    "chat.p50_sqlite",
                    "Chat turn p50, SQLite store — fabric vs direct",
                    "ms",
                    _series(sqlite, "fabric", "p50_ms"),
                    "direct",
                    _series(sqlite, "direct", "p50_ms"),
                    "diff",
                )
            )
    out.extend(gateway_figures(results.get("gateway", {})))
    memory = results.get("memory", {})
    for store, label in (("memory", "in-memory"), ("sqlite", "SQLite")):
        runs = memory.get(store) or []
        if not runs:
            continue
        count = int(runs[0].get("conversations", 0))
        growth = [r["rss_growth_bytes"] / MB for r in runs]
        raw = [r["raw_text_bytes"] / MB for r in runs]
        if store == "memory":
            out.append(
                Figure(
                    "memory.memory",
                    f"Agent RSS growth, {count:,} conversations x 20 messages, {label} store",
                    "MB",
                    growth,
                    "raw text",
                    raw,
                    "ratio",
                    ("<=", 2.5),
                    "≤ 2.5x raw text",
                )
            )
        else:
            out.append(
                Figure(
                    "memory.sqlite",
                    f"Agent RSS growth, {count:,} conversations x 20 messages, {label} store",
                    "MB",
                    growth,
                    "raw text",
                    raw,
                    None,
                    ("<=", 50.0),
                    "≤ 50 MB",
                )
            )
    swarm = results.get("swarm", {})
    reps = swarm.get("repeats") or []
    if reps:
        nodes = int(swarm.get("nodes", 0))
        out.append(
            Figure(
                "swarm.attach",
                f"{nodes:,} nodes: total attach time",
                "s",
                _series(reps, "attach_secs"),
                target=("<=", 10.0),
                target_text="≤ 10 s",
            )
        )
        out.append(
            Figure(
                "swarm.rss",
                f"{nodes:,} nodes: sentinel RSS",
                "MB",
                [r["sentinel_rss_after_bytes"] / MB for r in reps],
                "RSS with 2 nodes",
                [r["sentinel_rss_before_bytes"] / MB for r in reps],
                None,
                ("<=", 150.0),
                "≤ 150 MB",
            )
        )
        after = _series(reps, "echo_after", "p50_ms")
        floor_now = _series(reps, "relay_floor", "p50_ms")
        if floor_now or relay_p50:
            out.append(
                Figure(
                    "swarm.echo_vs_relay",
                    f"{nodes:,} nodes: echo p50 — vs relay floor measured right after",
                    "ms",
                    after,
                    "relay floor",
                    floor_now or relay_p50,
                    "ratio",
                    ("<=", 1.5),
                    "≤ 1.5x floor",
                )
            )
        out.append(
            Figure(
                "swarm.echo_vs_idle",
                f"{nodes:,} nodes: echo p50 — vs same sentinel before they attached",
                "ms",
                after,
                "2 nodes",
                _series(reps, "echo_before", "p50_ms"),
                "ratio",
            )
        )
    cold = results.get("coldstart", {}).get("repeats") or []
    if cold:
        out.append(
            Figure(
                "coldstart",
                "Cold start: sentinel + chat agent started → first answered turn",
                "s",
                _series(cold, "total_secs"),
                target=("<=", 2.0),
                target_text="≤ 2 s",
            )
        )
    return out


SECTION_FIGURES: list[Callable[[dict[str, Any]], list[Figure]]] = []
"""Figures of sections that report for themselves (e.g. :func:`benchmarks.cluster.figures`)."""
SECTION_TABLES: list[Callable[[dict[str, Any]], str]] = []
"""Tables of those sections, printed after the built-in ones."""


def all_figures(results: dict[str, Any]) -> list[Figure]:
    """The built-in figures and those of the sections that report for themselves."""
    return figures(results) + [f for extra in SECTION_FIGURES for f in extra(results)]


def figures_json(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure as JSON, for ``latest.json``."""
    return [figure.to_json() for figure in all_figures(results)]


# -- tables -------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def main_table(results: dict[str, Any]) -> str:
    """The figures, their baselines, comparisons and targets."""
    rows = []
    for figure in all_figures(results):
        unit = f" {figure.unit}"
        rows.append(
            [
                figure.label,
                spread(figure.values, figure.unit) + unit,
                (f"{figure.baseline_label}: " + spread(figure.baseline, figure.unit) + unit)
                if figure.baseline
                else "—",
                _compare_text(figure),
                figure.target_text or "—",
                figure.verdict() or "info",
                figure.margin(),
            ]
        )
    return _table(
        [
            "figure",
            "measured: median (min-max)",
            "baseline",
            "ratio / Δ",
            "target",
            "result",
            "margin",
        ],
        rows,
    )


def echo_table(results: dict[str, Any]) -> str:
    """Each echo system side by side, with the CPU each process spends per call."""
    echo = results.get("echo", {})
    rows = []
    for name, title in (
        ("ws_direct", "websockets, direct (1 hop)"),
        ("ws_relay", "websockets, 2-hop relay"),
        ("fabric", "famefabric (fame sentinel)"),
        ("fabric_uvloop", "famefabric, agent + client on uvloop"),
        ("naylence", "Naylence reference"),
    ):
        data = echo.get(name)
        if not data:
            continue
        tp = data.get("throughput", {})
        cpu = {
            role: _series(tp.get("64"), "cpu_us_per_call", role)
            for role in ("client", "router", "server")
        }
        rows.append(
            [
                title,
                spread(_series(data.get("latency"), "p50_ms"), "ms"),
                spread(_series(data.get("latency"), "p99_ms"), "ms"),
                *(spread(_series(tp.get(n), "rate"), "calls/s") for n in ("1", "16", "64")),
                " / ".join(f"{statistics.median(v):.0f}" if v else "—" for v in cpu.values()),
            ]
        )
    sizes = echo.get("sizes", {})
    head = f"Echo call: request envelope {sizes.get('request_bytes', '?')} B, reply {sizes.get('reply_bytes', '?')} B (floor messages have the same sizes)."
    return (
        head
        + "\n\n"
        + _table(
            [
                "system",
                "p50 ms",
                "p99 ms",
                "calls/s @1",
                "calls/s @16",
                "calls/s @64",
                "CPU µs/call @64: client / router / server",
            ],
            rows,
        )
    )


def chat_table(results: dict[str, Any]) -> str:
    """Chat figures for both paths."""
    chat = results.get("chat", {})
    if not chat.get("turn_latency"):
        return ""
    rows = []
    for mode in ("direct", "fabric"):
        rows.append(
            [
                mode,
                spread(_series(chat["turn_latency"], mode, "p50_ms"), "ms"),
                spread(_series(chat["turn_latency"], mode, "p99_ms"), "ms"),
                spread(_series(chat.get("turn_throughput"), mode, "rate"), "turns/s"),
                spread(_series(chat.get("ttft"), mode, "first_piece", "p50_ms"), "ms"),
                spread(_series(chat.get("ttft"), mode, "whole_reply", "p50_ms"), "ms"),
            ]
        )
    sqlite = chat.get("fabric_sqlite_turn_latency")
    if sqlite:
        rows.append(
            [
                "fabric, SQLite store",
                spread(_series(sqlite, "fabric", "p50_ms"), "ms"),
                spread(_series(sqlite, "fabric", "p99_ms"), "ms"),
                "",
                "",
                "",
            ]
        )
    return _table(
        [
            "path",
            "turn p50 ms",
            "turn p99 ms",
            "turns/s, 16 conv.",
            "first token p50 ms",
            "whole streamed reply p50 ms",
        ],
        rows,
    )


def memory_table(results: dict[str, Any]) -> str:
    """Memory of the agent per store, and of the sentinel with many nodes."""
    memory = results.get("memory", {})
    rows = []
    for store in ("memory", "sqlite"):
        runs = memory.get(store) or []
        if not runs:
            continue
        rows.append(
            [
                store,
                f"{runs[0]['conversations']:,} x {runs[0]['messages_per_conversation']}",
                spread([r["raw_text_bytes"] / MB for r in runs], "MB"),
                spread([r["rss_before_bytes"] / MB for r in runs], "MB"),
                spread([r["rss_after_bytes"] / MB for r in runs], "MB"),
                spread([r["rss_growth_bytes"] / MB for r in runs], "MB"),
                spread([r["db_bytes"] / MB for r in runs], "MB") if store == "sqlite" else "—",
                spread([r["fill_secs"] for r in runs], "s"),
            ]
        )
    text = ""
    if rows:
        text = _table(
            [
                "store",
                "conversations x messages",
                "raw text MB",
                "RSS before MB",
                "RSS after MB",
                "growth MB",
                "DB file MB",
                "fill s",
            ],
            rows,
        )
    reps = results.get("swarm", {}).get("repeats") or []
    if reps:
        swarm_rows = [
            [
                f"{r['attached']}/{results['swarm']['nodes']}",
                f"{r['attach_secs']:.2f}",
                f"{r['attach_latency_p50_ms']:.0f} / {r['attach_latency_max_ms']:.0f}",
                f"{r['sentinel_rss_before_bytes'] / MB:.1f} → {r['sentinel_rss_after_bytes'] / MB:.1f}",
                f"{r['echo_before']['p50_ms']:.3f} → {r['echo_after']['p50_ms']:.3f}",
                f"{r['echo_after']['p99_ms']:.3f}",
                f"{r['echo_throughput64_after']['rate']:,.0f}",
            ]
            for r in reps
        ]
        text += "\n\n" + _table(
            [
                "attached",
                "attach total s",
                "attach p50 / max ms",
                "sentinel RSS MB",
                "echo p50 ms (before → with nodes)",
                "echo p99 ms with nodes",
                "calls/s @64 with nodes",
            ],
            swarm_rows,
        )
    return text


def coldstart_table(results: dict[str, Any]) -> str:
    """Cold-start timeline per repeat, and import times."""
    cold = results.get("coldstart", {})
    reps = cold.get("repeats") or []
    if not reps:
        return ""
    rows = [
        [
            str(i + 1),
            f"{r['sentinel_listening_secs']:.2f}",
            f"{r['agent_answered_secs']:.2f}",
            f"{r['first_turn_secs']:.3f}",
            f"{r['total_secs']:.2f}",
        ]
        for i, r in enumerate(reps)
    ]
    text = _table(
        ["repeat", "sentinel listening s", "agent answering s", "first turn s", "total s"], rows
    )
    imports = cold.get("imports") or {}
    if imports:
        lines = []
        for name, data in imports.items():
            top = ", ".join(
                f"{m['module']} {m['cumulative_ms']:.0f} ms" for m in data.get("top", [])[:6]
            )
            lines.append(
                f"- `{name}`: {data['total_ms']:.0f} ms to import ({data['what']}); largest: {top}"
            )
        text += "\n\nImport time (python -X importtime, median of runs):\n" + "\n".join(lines)
    return text


def profile_text(results: dict[str, Any], top: int = 12) -> str:
    """Top frames of every profiled process, and CPU per call by package."""
    profile = results.get("profile") or {}
    parts = []
    for section in ("echo", "relay", "chat"):
        data = profile.get(section) or {}
        load = data.get("load") or {}
        rate = load.get("rate") or (load.get("fabric") or {}).get("rate") or 0.0
        for name, proc in (data.get("processes") or {}).items():
            cpu = proc.get("cpu_share_measured", 0.0)
            per_call = cpu * 1e6 / rate if rate else 0.0
            lines = [
                f"### {name} ({section} load, {rate:,.0f} calls/s while sampled; CPU {cpu * 100:.0f}% of a core"
                + (f" = {per_call:.0f} µs per call" if per_call else "")
                + f"; {proc['samples']} busy samples)"
            ]
            packages = ", ".join(
                f"{p['frame']} {p['share'] * 100:.0f}%"
                + (f" ({p['share'] * per_call:.0f} µs)" if per_call else "")
                for p in proc.get("packages", [])[:6]
            )
            lines.append(f"by package: {packages}")
            lines.append("self time by deepest Python frame:")
            lines += [f"  {f['share'] * 100:5.1f}%  {f['frame']}" for f in proc["self"][:top]]
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def render(results: dict[str, Any]) -> str:
    """Everything, as one text."""
    machine = results.get("machine", {})
    config = results.get("config", {})
    load = results.get("machine_load", {})
    busy = ", ".join(
        f"{name} {v['cpu_busy_share'] * 100:.0f}% (load {v['loadavg_1m']:.1f})"
        for name, v in load.items()
    )
    head = (
        f"famefabric benchmarks ({results.get('mode', '?')} run) — {machine.get('nproc')} CPUs, "
        f"{machine.get('cpu_model')}, Python {machine.get('python')}.\n"
        f"Repeats: echo and chat {config.get('latency_repeats')}, memory {config.get('repeats')}, "
        f"nodes {config.get('swarm_repeats')}, cold start {config.get('coldstart_repeats')}; "
        "each cell is median (min-max) over repeats; ratios are taken within a repeat."
        + (f"\nWhole machine CPU busy per section (all tenants): {busy}." if busy else "")
    )
    parts = [
        head,
        main_table(results),
        echo_table(results) if results.get("echo") else "",
        chat_table(results),
        memory_table(results),
        coldstart_table(results),
        *(table(results) for table in SECTION_TABLES),
        profile_text(results),
    ]
    notes = results.get("notes") or []
    if notes:
        parts.append("Notes:\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(p for p in parts if p)
