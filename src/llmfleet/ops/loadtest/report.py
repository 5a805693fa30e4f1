"""The run's report: one self-contained HTML file (inline SVG plots, no scripts, nothing fetched)."""

from __future__ import annotations

import html as escape
import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np

from llmfleet.ops.loadtest.server import GPU_ONLY
from llmfleet.ops.loadtest.summary import tpot

if TYPE_CHECKING:
    from llmfleet.ops.loadtest.summary import Step

BIN_S = 5  # seconds per point on the time plots, as Prometheus scrapes


def html(summary: dict[str, Any], steps: list[Step], server: dict[str, list[tuple[float, float]]]) -> str:
    samples = [s for step in steps for s in step.samples]
    t0 = min((s["t"] for s in samples), default=0.0)
    sections = [
        _table("Figures", _figures(summary)),
        _table("SLO gates", [(g["name"], _gate(g)) for g in summary["gates"]]),
        _section("Latency and throughput over time", _over_time(samples, t0)),
        _section("Distributions", _distributions(samples)),
    ]
    if "sweep" in summary:
        sections.append(_section("Sweep: throughput against latency", _sweep(summary)))
        sections.append(_table("Sweep steps", [(str(r["users"]) + " users", _row(r)) for r in summary["sweep"]]))
    if server:
        sections.append(_section("Server side (Prometheus), same timeline", _server(server, t0)))
    sections.append(_table("Load generator and server", _generator(summary)))
    title = f"llmfleet load test: {summary['scenario']}, {summary['users']} users"
    when = datetime.fromtimestamp(summary["start"] or 0, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape.escape(title)}</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.miss{color:#b00;font-weight:bold}"
        ".met{color:#070}svg{max-width:100%;height:auto}</style></head><body>"
        f"<h1>{escape.escape(title)}</h1><p>Started {when}; model {escape.escape(str(summary['model']))}; "
        f"{summary['max_tokens']} output tokens; {'streamed' if summary['stream'] else 'whole'} answers.</p>"
        + "".join(sections)
        + "</body></html>\n"
    )


def _figures(summary: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("requests", f"{summary['requests']} ({summary['failures']} failed, error rate {summary['error_rate']})"),
        ("failures by reason", ", ".join(f"{k}: {v}" for k, v in summary["failures_by_reason"].items()) or "none"),
        ("throughput", f"{summary['requests_per_s']} requests/s, {summary['output_tokens_per_s']} output tokens/s"),
        ("goodput (requests meeting every SLO)", f"{summary['goodput_requests_per_s']} requests/s"),
    ]
    for key, label in (("ttft_ms", "time to first token"), ("itl_ms", "inter-token latency"),
                       ("tpot_ms", "time per output token"), ("e2e_ms", "end to end")):  # fmt: skip
        d = summary[key]
        rows.append((label + " (ms)", ", ".join(f"{k} {v}" for k, v in d.items())))
    d = summary["tokens_per_s_per_user"]
    rows.append(("tokens/s per user", ", ".join(f"{k} {v}" for k, v in d.items())))
    return rows


def _gate(gate: dict[str, Any]) -> str:
    value = "no data" if gate["value"] is None else f"{gate['value']:g}"
    css, verdict = ("met", "met") if gate["passed"] else ("miss", "MISSED")
    return f"{value} against at most {gate['threshold']:g} {gate['unit']}: <span class='{css}'>{verdict}</span>"


def _row(row: dict[str, Any]) -> str:
    keys = ("requests_per_s", "output_tokens_per_s", "goodput_requests_per_s", "ttft_p95_ms", "itl_p95_ms",
            "error_rate", "meets_slos")  # fmt: skip
    return ", ".join(f"{k} {row[k]}" for k in keys)


def _generator(summary: dict[str, Any]) -> list[tuple[str, str]]:
    lg = summary["load_generator"]
    cpu = f"mean {lg['cpu_percent_mean']}, p90 {lg['cpu_percent_p90']}"
    if lg["saturated"]:
        cpu += " <span class='miss'>saturated: client timings inflated</span>"
    rows = [("load generator CPU (% of one core)", cpu)]
    server = summary["server"]
    if server.get("prometheus"):
        rows.append(("vLLM's own TTFT (ms, from its histogram)", str(server["vllm_ttft_ms"])))
        rows.append(
            ("client p50 minus vLLM p50 (gateway, network, client)", f"{server['client_minus_vllm_ttft_p50_ms']} ms")
        )
    else:
        rows.append(("server side", "Prometheus did not answer"))
    return rows


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{escape.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<h2>{escape.escape(title)}</h2><table>{body}</table>"


def _section(title: str, svg: str) -> str:
    return f"<h2>{escape.escape(title)}</h2>{svg}"


def _svg(fig: plt.Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _bins(samples: list[dict[str, Any]], t0: float) -> dict[int, list[dict[str, Any]]]:
    bins: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        bins.setdefault(int((s["t"] + s["e2e"] - t0) // BIN_S), []).append(s)
    return dict(sorted(bins.items()))


def _over_time(samples: list[dict[str, Any]], t0: float) -> str:
    fig, (latency, throughput) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    bins = _bins(samples, t0)
    x = [b * BIN_S for b in bins]
    for key, label in (("ttft", "TTFT"), ("e2e", "end to end")):
        for q, style in ((50, "-"), (95, "--")):
            y = [_pct([s[key] for s in group if s["ok"] and s[key] is not None], q) for group in bins.values()]
            latency.plot(x, y, style, label=f"{label} p{q}")
    latency.set_ylabel("ms")
    latency.legend(loc="upper left", fontsize=8)
    throughput.plot(x, [sum(s["tokens"] for s in g if s["ok"]) / BIN_S for g in bins.values()], label="output tokens/s")
    throughput.plot(x, [sum(s["ok"] for s in g) / BIN_S for g in bins.values()], label="requests/s")
    throughput.plot(x, [sum(not s["ok"] for s in g) / BIN_S for g in bins.values()], label="failures/s")
    throughput.set_xlabel("seconds since the start")
    throughput.legend(loc="upper left", fontsize=8)
    return _svg(fig)


def _pct(values: list[float], q: int) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def _distributions(samples: list[dict[str, Any]]) -> str:
    fig, (ttft, itl) = plt.subplots(1, 2, figsize=(10, 3.5))
    ttfts = [s["ttft"] * 1000 for s in samples if s["ok"] and s["ttft"] is not None]
    gaps = [g * 1000 for s in samples if s["ok"] for g in s["gaps"]]
    tpots = [t * 1000 for s in samples if s["ok"] and (t := tpot(s)) is not None]
    ttft.hist(ttfts or [0], bins=40)
    ttft.set_title("time to first token (ms)")
    itl.hist(gaps or [0], bins=40, alpha=0.7, label="every gap")
    itl.hist(tpots or [0], bins=40, alpha=0.7, label="per request (TPOT)")
    itl.set_title("inter-token latency (ms)")
    itl.legend(fontsize=8)
    return _svg(fig)


def _sweep(summary: dict[str, Any]) -> str:
    rows = summary["sweep"]
    fig, axis = plt.subplots(figsize=(10, 4))
    x = [r["output_tokens_per_s"] for r in rows]
    axis.plot(x, [r["ttft_p95_ms"] for r in rows], "o-", label="TTFT p95 (ms)")
    axis.plot(x, [r["itl_p95_ms"] for r in rows], "s-", label="ITL p95 (ms)")
    for r, xi in zip(rows, x, strict=True):
        axis.annotate(f"{r['users']} users", (xi, r["ttft_p95_ms"] or 0), fontsize=8)
    axis.axhline(summary["slo"]["ttft_p95_ms"], color="red", linestyle=":", label="TTFT SLO")
    if summary.get("knee"):
        axis.axvline(summary["knee"]["output_tokens_per_s"], color="green", linestyle=":", label="knee")
    axis.set_xlabel("output tokens/s")
    axis.set_ylabel("ms")
    axis.legend(fontsize=8)
    return _svg(fig)


def _server(series: dict[str, list[tuple[float, float]]], t0: float) -> str:
    shown = {name: points for name, points in series.items() if points}
    missing = [name for name in series if not series[name]]
    fig, axes = plt.subplots(max(len(shown), 1), 1, figsize=(10, 2.2 * max(len(shown), 1)), sharex=True, squeeze=False)
    for axis, (name, points) in zip(axes[:, 0], shown.items(), strict=False):
        axis.plot([t - t0 for t, _ in points], [v for _, v in points])
        axis.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("seconds since the start")
    note = ""
    if missing:
        gpu = [m for m in missing if m in GPU_ONLY]
        note = f"<p>No data for: {', '.join(missing)}" + (" (GPU-only series)" if gpu else "") + ".</p>"
    return _svg(fig) + note
