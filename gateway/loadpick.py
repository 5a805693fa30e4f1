"""The choice behind the gateway's load-aware routing (loadaware.py), without LiteLLM: read a vLLM server's load
from its /metrics page, and of two candidates keep the less loaded. Pure functions, tested directly
(tests/test_load_aware_routing.py); loadaware.py is the thin adapter LiteLLM calls.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

REFRESH_S = 1.0
READ_TIMEOUT_S = 2.5  # a busy CPU server takes seconds to render /metrics; a GPU server's API process far less
# A reading older than this is not trusted (the server is gone: its port refuses). Generous, because a frozen or
# swamped server is not stale: its timeouts mark it slow, and a starved host delays the polls themselves.
STALE_S = 10.0
WAITING_WEIGHT = 2.0  # a queued request costs more than a running one: it has not even started prefill
SLOW_PENALTY = 100.0  # a server too busy (or frozen) to render /metrics in time is avoided while another answers
METRICS = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache",
}

METRIC_LINES = tuple(METRICS) + tuple(f"# {kind} {name} " for name in METRICS for kind in ("HELP", "TYPE"))


@dataclass
class Load:
    running: float = 0.0
    waiting: float = 0.0
    kv_cache: float = 0.0  # 0..1
    read_at: float = 0.0  # monotonic seconds; 0 = never read
    sent_since: int = 0  # requests this worker routed to it since the reading, and not yet finished
    slow: bool = False  # its last /metrics did not come in time

    def score(self) -> float:
        load = self.running + self.sent_since + WAITING_WEIGHT * self.waiting + self.kv_cache
        return load + (SLOW_PENALTY if self.slow else 0.0)

    def fresh(self, now: float) -> bool:
        return now - self.read_at <= STALE_S


def parse_load(text: str) -> Load:
    """vLLM's Prometheus text, summed over its label sets (one per model and engine)."""
    # Only our three gauges' lines go to the parser: the whole page (~650 lines) took 9.4 ms of the event loop
    # per read, twice a second with two servers; these few lines take ~0.2 ms (benchmarks/gateway.md, profile).
    wanted = "\n".join(line for line in text.splitlines() if line.startswith(METRIC_LINES))
    load = Load()
    for family in text_string_to_metric_families(wanted):
        field = METRICS.get(family.name)
        if field:
            setattr(load, field, sum(s.value for s in family.samples if s.name == family.name))
    return load


def metrics_url(deployment: dict) -> str | None:
    """http://vllm-cpu0:8000/v1 -> http://vllm-cpu0:8000/metrics"""
    api_base = (deployment.get("litellm_params") or {}).get("api_base")
    if not api_base:
        return None
    url = httpx.URL(api_base)
    return str(url.copy_with(path="/metrics", query=None))


def choose(candidates: list[str], loads: dict[str, Load], now: float, rng: random.Random) -> str | None:
    """Of two candidates drawn at random, the one with the lower load; None when a reading is missing or stale."""
    if any(c not in loads or not loads[c].fresh(now) for c in candidates):
        return None
    a, b = rng.sample(candidates, 2) if len(candidates) > 1 else (candidates[0], candidates[0])
    return a if loads[a].score() <= loads[b].score() else b
