"""The figures of a load-test run, from its per-request records: percentiles, throughput, goodput and SLO gates."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

QUANTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}


@dataclass(frozen=True)
class Slo:
    ttft_p95_s: float
    itl_p95_s: float
    error_rate: float


@dataclass
class Step:
    """One load level of a run (a sweep has several): its requests' records and the load generator's CPU.
    Here, not in run.py, so the report (report.py) and the runner (run.py) both import it from below them."""

    users: int
    samples: list[dict[str, Any]]
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (time, load generator CPU % of one core)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Gate:
    name: str
    threshold: float
    value: float | None
    unit: str

    @property
    def passed(self) -> bool:
        return self.value is not None and self.value <= self.threshold

    def describe(self) -> str:
        value = "no data" if self.value is None else f"{self.value:g} {self.unit}"
        verdict = "met" if self.passed else "MISSED"
        return f"{self.name}: {value} against at most {self.threshold:g} {self.unit}: {verdict}"


def read_samples(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def distribution(values: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p90/p95/p99, mean and max, in milliseconds (values are seconds)."""
    if not values:
        return {**dict.fromkeys(QUANTILES), "mean": None, "max": None}
    array = np.asarray(values) * scale
    result = {name: round(float(np.percentile(array, q)), 3) for name, q in QUANTILES.items()}
    return {**result, "mean": round(float(array.mean()), 3), "max": round(float(array.max()), 3)}


def tpot(sample: dict[str, Any]) -> float | None:
    if sample["ttft"] is None or sample["tokens"] < 2:
        return None
    return (sample["e2e"] - sample["ttft"]) / (sample["tokens"] - 1)


def is_good(sample: dict[str, Any], slo: Slo) -> bool:
    """A request that met every SLO on its own: answered, first token in time, and tokens fast enough."""
    per_token = tpot(sample)
    return (
        sample["ok"]
        and sample["ttft"] is not None
        and sample["ttft"] <= slo.ttft_p95_s
        and (per_token is None or per_token <= slo.itl_p95_s)
    )


def summarize(samples: list[dict[str, Any]], slo: Slo, users: int, duration_s: float | None = None) -> dict[str, Any]:
    ok = [s for s in samples if s["ok"]]
    if samples:
        start = min(s["t"] for s in samples)
        end = max(s["t"] + s["e2e"] for s in samples)
        window = duration_s or max(end - start, 1e-9)
    else:
        start = end = 0.0
        window = duration_s or 1.0
    tokens = sum(s["tokens"] for s in ok)
    failures: dict[str, int] = {}
    for s in samples:
        if not s["ok"]:
            reason = (s["error"] or "unknown").split(":")[0]
            failures[reason] = failures.get(reason, 0) + 1
    summary = {
        "users": users,
        "start": start,
        "end": end,
        "duration_s": round(window, 3),
        "requests": len(samples),
        "failures": len(samples) - len(ok),
        "error_rate": round((len(samples) - len(ok)) / len(samples), 4) if samples else None,
        "failures_by_reason": failures,
        "requests_per_s": round(len(ok) / window, 3),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / window, 3),
        "goodput_requests_per_s": round(sum(is_good(s, slo) for s in samples) / window, 3),
        "ttft_ms": distribution([s["ttft"] for s in ok if s["ttft"] is not None]),
        "itl_ms": distribution([g for s in ok for g in s["gaps"]]),
        "tpot_ms": distribution([t for s in ok if (t := tpot(s)) is not None]),
        "e2e_ms": distribution([s["e2e"] for s in ok]),
        "tokens_per_s_per_user": distribution([1 / t for s in ok if (t := tpot(s))], scale=1.0),
    }
    summary["gates"] = [asdict(g) | {"passed": g.passed} for g in gates(summary, slo)]
    return summary


def gates(summary: dict[str, Any], slo: Slo) -> list[Gate]:
    return [
        Gate("TTFT p95", slo.ttft_p95_s * 1000, summary["ttft_ms"]["p95"], "ms"),
        Gate("ITL p95", slo.itl_p95_s * 1000, summary["itl_ms"]["p95"], "ms"),
        Gate("error rate", slo.error_rate, summary["error_rate"], ""),
    ]


def missed(summary: dict[str, Any]) -> list[str]:
    return [g["name"] for g in summary["gates"] if not g["passed"]]
