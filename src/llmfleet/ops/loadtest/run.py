"""`llmfleet loadtest`: locust, headless, against the gateway; one run or a sweep of concurrencies; figures, SLO
gates and a report. Locust runs in its own process so its CPU use can be watched: a saturated load generator
measures itself, not the servers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from llmfleet import output
from llmfleet.errors import FleetError
from llmfleet.ops.loadtest import report
from llmfleet.ops.loadtest.scenarios import LANGUAGES, Scenario
from llmfleet.ops.loadtest.server import Prometheus
from llmfleet.ops.loadtest.summary import Slo, Step, missed, read_samples, summarize, tpot

SATURATED_CPU_PERCENT = 90  # of one core: locust is one process


@dataclass(frozen=True)
class Options:
    users: int
    spawn_rate: float
    duration_s: int
    out: Path
    gateway: str
    prometheus: str
    slo: Slo
    model: str = ""
    scenario: str = "short"
    language: str = "both"
    max_tokens: int = 64
    stream: bool = True
    ignore_eos: bool = True
    sweep: tuple[int, ...] = ()


def parse_duration(text: str) -> int:
    """`30s`, `2m`, `1h` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except (ValueError, IndexError):
        raise FleetError(f"duration {text!r} is not understood.", "write it as 30s, 2m or 1h.", "--duration") from None


def parse_sweep(text: str | None) -> tuple[int, ...]:
    return rising_counts(text, "--sweep", "user counts")


def rising_counts(text: str | None, flag: str, what: str) -> tuple[int, ...]:
    """`1,2,4,8`: whole numbers of 1 or more, each above the last; () for nothing."""
    if not text:
        return ()
    try:
        steps = tuple(int(x) for x in text.split(","))
    except ValueError:
        steps = ()
    if not steps or any(s < 1 for s in steps) or list(steps) != sorted(set(steps)):
        raise FleetError(f"{flag.lstrip('-')} {text!r} is not a rising list of {what}.", "write it as 1,2,4,8.", flag)
    return steps


def loadtest(options: Options, key: str, root: Path) -> dict[str, Any]:
    """Run, write summary.json, requests.csv and report.html into `options.out`, and return the summary.

    `judge` then says whether it met the SLO gates.
    """
    languages = LANGUAGES if options.language == "both" else (options.language,)
    Scenario(root / "loadtest" / "scenarios.yaml", options.scenario, languages)  # refuse a bad name before loading
    options.out.mkdir(parents=True, exist_ok=True)
    steps = []
    for users in options.sweep or (options.users,):
        output.info(
            f"Load: {users} users, {options.duration_s} s, scenario {options.scenario}, {options.max_tokens} tokens"
        )
        steps.append(_run_step(options, users, key, root))
    prometheus = Prometheus(options.prometheus)
    start = min((s.summary["start"] for s in steps if s.samples), default=time.time())
    end = max((s.summary["end"] for s in steps if s.samples), default=time.time())
    summary = _combine(options, steps, prometheus)
    _write_csv(options.out / "requests.csv", steps)
    (options.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    server_series = prometheus.series(start - 5, end + 5) if summary["server"]["prometheus"] else {}
    (options.out / "report.html").write_text(report.html(summary, steps, server_series), encoding="utf-8")
    return summary


def _run_step(options: Options, users: int, key: str, root: Path) -> Step:
    folder = options.out if not options.sweep else options.out / f"users-{users:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    samples_file = folder / "samples.jsonl"
    samples_file.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "locust", "-f", str(root / "loadtest" / "locustfile.py"), "--headless",
        "--host", options.gateway, "-u", str(users), "-r", str(options.spawn_rate), "-t", f"{options.duration_s}s",
        "--stop-timeout", "120", "--csv", str(folder / "locust"), "--html", str(folder / "locust.html"),
        "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
        "--scenario", options.scenario, "--language", options.language, "--max-tokens", str(options.max_tokens),
        "--samples-file", str(samples_file),
        *(["--model", options.model] if options.model else []),
        *([] if options.stream else ["--no-stream"]), *([] if options.ignore_eos else ["--no-ignore-eos"]),
    ]  # fmt: skip
    log = (folder / "locust.log").open("w")
    with log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LITELLM_MASTER_KEY": key}
        )
        cpu = _watch_cpu(process)
    if process.returncode not in (0, 1):
        raise FleetError(
            f"locust exited with code {process.returncode}; the end of its log:\n"
            + "\n".join("  | " + line for line in (folder / "locust.log").read_text().splitlines()[-15:]),
            "fix the cause shown, then run the load test again.",
            str(folder / "locust.log"),
        )
    step = Step(users, read_samples(samples_file), cpu)
    if not step.samples:
        raise FleetError(
            f"no request was made in {options.duration_s} s at {users} users; the end of locust's log:\n"
            + "\n".join("  | " + line for line in (folder / "locust.log").read_text().splitlines()[-15:]),
            "check that the gateway answers (`llmfleet status`) and that the model exists (`--model`).",
            str(folder / "locust.log"),
        )
    step.summary = summarize(step.samples, options.slo, users)
    step.summary["load_generator"] = _cpu_figures(cpu)
    return step


def _watch_cpu(process: subprocess.Popen[bytes]) -> list[tuple[float, float]]:
    """Sample the load generator's CPU use each second until it exits."""
    watched = psutil.Process(process.pid)
    watched.cpu_percent(None)  # the first reading only starts the clock
    samples = []
    while process.poll() is None:
        time.sleep(1)
        try:
            samples.append((time.time(), watched.cpu_percent(None)))
        except psutil.NoSuchProcess:
            break
    process.wait()
    return samples


def _cpu_figures(cpu: list[tuple[float, float]]) -> dict[str, Any]:
    values = sorted(v for _, v in cpu)
    if not values:
        return {"cpu_percent_mean": None, "cpu_percent_p90": None, "saturated": False}
    p90 = values[int(0.9 * (len(values) - 1))]
    return {
        "cpu_percent_mean": round(sum(values) / len(values), 1),
        "cpu_percent_p90": round(p90, 1),
        "saturated": p90 >= SATURATED_CPU_PERCENT,
    }


def _combine(options: Options, steps: list[Step], prometheus: Prometheus) -> dict[str, Any]:
    knee = None
    if options.sweep:
        passing = [s for s in steps if not missed(s.summary)]
        knee = max(passing, key=lambda s: s.summary["output_tokens_per_s"]) if passing else None
    main = knee or steps[-1]  # a sweep's headline figures are its knee's: the most it serves within the SLOs
    summary = {
        "model": options.model or "(first listed by the gateway)",
        "scenario": options.scenario,
        "language": options.language,
        "max_tokens": options.max_tokens,
        "stream": options.stream,
        "slo": {
            "ttft_p95_ms": options.slo.ttft_p95_s * 1000,
            "itl_p95_ms": options.slo.itl_p95_s * 1000,
            "error_rate": options.slo.error_rate,
        },
        **main.summary,
    }
    if options.sweep:
        summary["sweep"] = [_step_row(s) for s in steps]
        summary["knee"] = _step_row(knee) if knee else None
    saturated = [s.users for s in steps if s.summary["load_generator"]["saturated"]]
    if saturated:
        output.warn(f"the load generator used most of a core at {saturated} users: its own timings are inflated there.")
    # vLLM's TTFT over the same window as the client's figures it is compared with.
    summary["server"] = _server_view(prometheus, main.summary["start"], main.summary["end"], main.summary["ttft_ms"])
    return summary


def _step_row(step: Step) -> dict[str, Any]:
    s = step.summary
    return {
        "users": step.users,
        "requests_per_s": s["requests_per_s"],
        "output_tokens_per_s": s["output_tokens_per_s"],
        "goodput_requests_per_s": s["goodput_requests_per_s"],
        "ttft_p95_ms": s["ttft_ms"]["p95"],
        "itl_p95_ms": s["itl_ms"]["p95"],
        "e2e_p95_ms": s["e2e_ms"]["p95"],
        "error_rate": s["error_rate"],
        "meets_slos": not missed(s),
        "load_generator_cpu_p90": s["load_generator"]["cpu_percent_p90"],
    }


def _server_view(prometheus: Prometheus, start: float, end: float, client_ttft: dict[str, Any]) -> dict[str, Any]:
    if not prometheus.reachable():
        output.warn(f"Prometheus at {prometheus.url} does not answer: the report has no server-side series.")
        return {"prometheus": False}
    time.sleep(max(0.0, end + 6 - time.time()))  # one more scrape, so the last requests are in vLLM's histogram
    vllm = prometheus.vllm_ttft_ms(start, end)
    difference = None
    if vllm["p50"] is not None and client_ttft["p50"] is not None:
        difference = round(client_ttft["p50"] - vllm["p50"], 3)
    return {"prometheus": True, "vllm_ttft_ms": vllm, "client_minus_vllm_ttft_p50_ms": difference}


def _write_csv(path: Path, steps: list[Step]) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["start", "users", "kind", "language", "ok", "error", "ttft_ms", "e2e_ms", "output_tokens",
                      "tpot_ms", "mean_itl_ms"])  # fmt: skip
        for step in steps:
            for s in step.samples:
                per_token = tpot(s)
                out.writerow([
                    s["t"], step.users, s["kind"], s["lang"], s["ok"], s["error"] or "",
                    _ms(s["ttft"]), _ms(s["e2e"]), s["tokens"], _ms(per_token),
                    _ms(sum(s["gaps"]) / len(s["gaps"]) if s["gaps"] else None),
                ])  # fmt: skip


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.3f}"


def judge(summary: dict[str, Any]) -> None:
    """Raise FleetError naming every SLO gate the run missed (or, for a sweep, if no step met them all)."""
    if "sweep" in summary and summary["knee"] is None:
        raise FleetError(
            "no step of the sweep met every SLO gate; the report shows each step.",
            "sweep lower concurrencies, or relax the SLOs (SLO_* in .env) if they are stricter than your users need.",
            "--sweep",
        )
    failed = [g for g in summary["gates"] if not g["passed"]]
    if failed:
        lines = "; ".join(
            f"{g['name']} {'no data' if g['value'] is None else round(g['value'], 3)} > {g['threshold']:g} {g['unit']}"
            for g in failed
        )
        raise FleetError(
            f"the run missed {len(failed)} SLO gate(s): {lines}. The report is still written.",
            "lower the load, or change the SLO if it is stricter than your users need.",
            ".env: " + ", ".join(_SETTING[g["name"]] for g in failed),
        )


_SETTING = {"TTFT p95": "SLO_TTFT_P95_SECONDS", "ITL p95": "SLO_ITL_P95_SECONDS", "error rate": "SLO_ERROR_RATE"}
