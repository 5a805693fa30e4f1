"""What the servers saw during a run, from Prometheus: queue, KV cache, GPU memory, and vLLM's own TTFT."""

from __future__ import annotations

import math

import httpx

# Raw metrics, not recording rules: a load test must work against any Prometheus scraping vLLM.
SERIES = {
    "requests waiting": "sum(vllm:num_requests_waiting)",
    "requests running": "sum(vllm:num_requests_running)",
    "KV cache usage %": "100 * max(vllm:kv_cache_usage_perc)",
    "GPU memory used GiB": "sum(llmfleet_gpu_memory_used_bytes) / 2^30",
}
GPU_ONLY = {"GPU memory used GiB"}


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=10)

    def reachable(self) -> bool:
        try:
            return self.client.get(f"{self.url}/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def range(self, query: str, start: float, end: float, step: float = 5) -> list[tuple[float, float]]:
        response = self.client.get(
            f"{self.url}/api/v1/query_range", params={"query": query, "start": start, "end": end, "step": step}
        )
        result = response.json().get("data", {}).get("result", [])
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []

    def instant(self, query: str, at: float) -> float | None:
        response = self.client.get(f"{self.url}/api/v1/query", params={"query": query, "time": at})
        result = response.json().get("data", {}).get("result", [])
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def series(self, start: float, end: float) -> dict[str, list[tuple[float, float]]]:
        return {name: self.range(query, start, end) for name, query in SERIES.items()}

    def vllm_ttft_ms(self, start: float, end: float) -> dict[str, float | None]:
        """vLLM's own TTFT percentiles over the run (from its histogram, so as coarse as its buckets)."""
        window = max(math.ceil(end - start), 10)
        result = {}
        for name, q in (("p50", 0.5), ("p95", 0.95)):
            query = (
                f"histogram_quantile({q}, sum by (le) (increase(vllm:time_to_first_token_seconds_bucket[{window}s])))"
            )
            value = self.instant(query, end)
            result[name] = None if value is None else round(value * 1000, 3)
        return result
