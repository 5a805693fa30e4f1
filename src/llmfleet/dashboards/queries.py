"""Every PromQL a dashboard panel shows, by name. The dashboards (generate.py) take their queries from here and
tests/test_monitoring_live.py runs each one against the real stack's Prometheus, so a panel cannot query a series
that does not exist.

Panels read the names recorded in monitoring/prometheus/rules/, never vLLM's or LiteLLM's own: a renamed metric
is fixed in one rule. `gpu_only` marks what needs our GPU exporter, which a CPU plan does not run: the live test
checks those for syntax only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    gpu_only: bool = False


@dataclass(frozen=True)
class Variable:
    """A dashboard variable: the values of `label` on the series `selector` selects."""

    name: str
    label: str
    selector: str

    @property
    def query(self) -> str:
        return f"label_values({self.selector}, {self.label})"


# Multi-value variables with "All" = `.*`, so panels select with `=~`.
MODEL_GROUP = Variable("model_group", "model_group", 'up{job="vllm"}')
SERVER = Variable("server", "server", 'up{job="vllm", model_group=~"$model_group"}')
VARIABLES = (MODEL_GROUP, SERVER)

_G = '{model_group=~"$model_group"}'
_S = '{server=~"$server"}'
_CARD = "gpu, gpu_name, server, model_group"  # one row per card in the GPU table


def _per_card(series: str) -> str:
    """A server's series on each of its cards: the join of engine and GPU on `server`."""
    return f"max by ({_CARD}) (0 * llmfleet_gpu_memory_used_bytes{_G} + on (server) group_left () {series})"


QUERIES: dict[str, Query] = {
    # --- fleet overview, per model group ------------------------------------------------------------------
    "requests": Query(f"sum by (model_group) (model_group:gateway_requests:rate1m{_G})", "{{model_group}}"),
    "requests_by_status": Query(
        f"sum by (model_group, status_code) (model_group_status:gateway_requests:rate1m{_G})",
        "{{model_group}} {{status_code}}",
    ),
    "engine_requests": Query(f"model_group:vllm_requests:rate1m{_G}", "{{model_group}} finished in vLLM"),
    "error_ratio": Query(f"model_group:gateway_request_errors:ratio_rate1m{_G}", "{{model_group}}"),
    "error_ratio_5m": Query(f"model_group:gateway_request_errors:ratio_rate5m{_G}", "{{model_group}}"),
    "slo_error_ratio": Query("slo:gateway_request_errors:ratio", "SLO"),
    "ttft_p50": Query(f"model_group:vllm_time_to_first_token_seconds:p50_rate1m{_G}", "{{model_group}} p50"),
    "ttft_p95": Query(f"model_group:vllm_time_to_first_token_seconds:p95_rate1m{_G}", "{{model_group}} p95"),
    "ttft_p99": Query(f"model_group:vllm_time_to_first_token_seconds:p99_rate1m{_G}", "{{model_group}} p99"),
    "ttft_p95_5m": Query(f"model_group:vllm_time_to_first_token_seconds:p95_rate5m{_G}", "{{model_group}}"),
    "slo_ttft": Query("slo:vllm_time_to_first_token_seconds:p95", "SLO (p95)"),
    "itl_p50": Query(f"model_group:vllm_inter_token_latency_seconds:p50_rate1m{_G}", "{{model_group}} p50"),
    "itl_p95": Query(f"model_group:vllm_inter_token_latency_seconds:p95_rate1m{_G}", "{{model_group}} p95"),
    "itl_p99": Query(f"model_group:vllm_inter_token_latency_seconds:p99_rate1m{_G}", "{{model_group}} p99"),
    "itl_p95_5m": Query(f"model_group:vllm_inter_token_latency_seconds:p95_rate5m{_G}", "{{model_group}}"),
    "slo_itl": Query("slo:vllm_inter_token_latency_seconds:p95", "SLO (p95)"),
    "e2e_p50": Query(f"model_group:vllm_e2e_request_latency_seconds:p50_rate1m{_G}", "{{model_group}} p50"),
    "e2e_p95": Query(f"model_group:vllm_e2e_request_latency_seconds:p95_rate1m{_G}", "{{model_group}} p95"),
    "e2e_p99": Query(f"model_group:vllm_e2e_request_latency_seconds:p99_rate1m{_G}", "{{model_group}} p99"),
    "prompt_tokens": Query(f"model_group:vllm_prompt_tokens:rate1m{_G}", "{{model_group}} prompt"),
    "generation_tokens": Query(f"model_group:vllm_generation_tokens:rate1m{_G}", "{{model_group}} output"),
    "running": Query(f"model_group:vllm_num_requests_running:sum{_G}", "{{model_group}} running"),
    "waiting": Query(f"model_group:vllm_num_requests_waiting:sum{_G}", "{{model_group}} waiting"),
    "kv_fullest": Query(f"model_group:vllm_kv_cache_usage_ratio:max{_G}", "{{model_group}}"),
    "kv_by_server": Query(f"server:vllm_kv_cache_usage_ratio:max{_G}", "{{server}}"),
    "preemptions_by_server": Query(f"server:vllm_preemptions:rate5m{_G}", "{{server}}"),
    "prefix_hits_by_server": Query(f"server:vllm_prefix_cache_hits:ratio_rate5m{_G}", "{{server}}"),
    # --- one server and its cards ----------------------------------------------------------------------------
    "server_ttft_p50": Query(f"server:vllm_time_to_first_token_seconds:p50_rate1m{_S}", "p50"),
    "server_ttft_p95": Query(f"server:vllm_time_to_first_token_seconds:p95_rate1m{_S}", "p95"),
    "server_ttft_p99": Query(f"server:vllm_time_to_first_token_seconds:p99_rate1m{_S}", "p99"),
    "server_itl_p50": Query(f"server:vllm_inter_token_latency_seconds:p50_rate1m{_S}", "p50"),
    "server_itl_p95": Query(f"server:vllm_inter_token_latency_seconds:p95_rate1m{_S}", "p95"),
    "server_itl_p99": Query(f"server:vllm_inter_token_latency_seconds:p99_rate1m{_S}", "p99"),
    "server_e2e_p50": Query(f"server:vllm_e2e_request_latency_seconds:p50_rate1m{_S}", "p50"),
    "server_e2e_p95": Query(f"server:vllm_e2e_request_latency_seconds:p95_rate1m{_S}", "p95"),
    "server_e2e_p99": Query(f"server:vllm_e2e_request_latency_seconds:p99_rate1m{_S}", "p99"),
    "server_prompt_tokens": Query(f"server:vllm_prompt_tokens:rate1m{_S}", "prompt"),
    "server_generation_tokens": Query(f"server:vllm_generation_tokens:rate1m{_S}", "output"),
    "server_running": Query(f"server:vllm_num_requests_running:sum{_S}", "running"),
    "server_waiting": Query(f"server:vllm_num_requests_waiting:sum{_S}", "waiting"),
    "server_kv": Query(f"server:vllm_kv_cache_usage_ratio:max{_S}", "KV cache"),
    "gpu_memory_used": Query(f"llmfleet_gpu_memory_used_bytes{_S}", "GPU {{gpu}} used", gpu_only=True),
    "gpu_memory_total": Query(f"llmfleet_gpu_memory_total_bytes{_S}", "GPU {{gpu}} total", gpu_only=True),
    "gpu_utilization": Query(f"llmfleet_gpu_utilization_ratio{_S}", "GPU {{gpu}}", gpu_only=True),
    "gpu_power": Query(f"llmfleet_gpu_power_watts{_S}", "GPU {{gpu}}", gpu_only=True),
    "gpu_power_limit": Query(f"llmfleet_gpu_power_limit_watts{_S}", "GPU {{gpu}} limit", gpu_only=True),
    "gpu_temperature": Query(f"llmfleet_gpu_temperature_celsius{_S}", "GPU {{gpu}}", gpu_only=True),
    "gpu_temperature_slowdown": Query(
        f"llmfleet_gpu_temperature_slowdown_celsius{_S}", "GPU {{gpu}} slows down at", gpu_only=True
    ),
    "gpu_throttled": Query(f"llmfleet_gpu_throttled{_S}", "GPU {{gpu}}", gpu_only=True),
    "server_tokens_per_joule": Query(f"server:vllm_generation_tokens_per_joule:rate1m{_S}", "output", gpu_only=True),
    # The table of cards: one instant query per column, each by card, merged on the card's labels.
    "card_memory_used": Query(f"max by ({_CARD}) (llmfleet_gpu_memory_used_bytes{_G})", gpu_only=True),
    "card_memory_total": Query(f"max by ({_CARD}) (llmfleet_gpu_memory_total_bytes{_G})", gpu_only=True),
    "card_utilization": Query(f"max by ({_CARD}) (llmfleet_gpu_utilization_ratio{_G})", gpu_only=True),
    "card_power": Query(f"max by ({_CARD}) (llmfleet_gpu_power_watts{_G})", gpu_only=True),
    "card_temperature": Query(f"max by ({_CARD}) (llmfleet_gpu_temperature_celsius{_G})", gpu_only=True),
    "card_throttled": Query(f"max by ({_CARD}) (llmfleet_gpu_throttled{_G})", gpu_only=True),
    "card_kv": Query(_per_card("server:vllm_kv_cache_usage_ratio:max"), gpu_only=True),
    "card_ttft_p95": Query(_per_card("server:vllm_time_to_first_token_seconds:p95_rate1m"), gpu_only=True),
    "card_generation_tokens": Query(_per_card("server:vllm_generation_tokens:rate1m"), gpu_only=True),
    # --- the gateway ---------------------------------------------------------------------------------------
    "key_requests": Query("key:gateway_requests:rate5m", "{{key}}"),
    "key_prompt_tokens": Query("key:gateway_prompt_tokens:rate5m", "{{key}} prompt"),
    "key_completion_tokens": Query("key:gateway_completion_tokens:rate5m", "{{key}} output"),
    "gateway_in_flight": Query("job:gateway_in_flight_requests:sum", "in flight"),
    "gateway_latency_p50": Query(
        f"model_group:gateway_request_total_latency_seconds:p50_rate1m{_G}", "{{model_group}} p50"
    ),
    "gateway_latency_p95": Query(
        f"model_group:gateway_request_total_latency_seconds:p95_rate1m{_G}", "{{model_group}} p95"
    ),
    "gateway_latency_p99": Query(
        f"model_group:gateway_request_total_latency_seconds:p99_rate1m{_G}", "{{model_group}} p99"
    ),
    "gateway_mean_total": Query(
        f"model_group:gateway_request_total_latency_seconds:mean_rate1m{_G}", "{{model_group}} at the gateway"
    ),
    "gateway_mean_upstream": Query(
        f"model_group:gateway_upstream_latency_seconds:mean_rate1m{_G}", "{{model_group}} the gateway's call to vLLM"
    ),
    "engine_mean_e2e": Query(
        f"model_group:vllm_e2e_request_latency_seconds:mean_rate1m{_G}", "{{model_group}} in vLLM"
    ),
    "gateway_added": Query(
        f"model_group:gateway_added_latency_seconds:mean_rate1m{_G}", "{{model_group}} gateway (total - its call)"
    ),
    "gateway_added_over_engine": Query(
        f"model_group:gateway_request_total_latency_seconds:mean_rate1m{_G}"
        f" - model_group:vllm_e2e_request_latency_seconds:mean_rate1m{_G}",
        "{{model_group}} gateway and network (total - vLLM)",
    ),
    "gateway_overhead_p95": Query(f"model_group:gateway_overhead_latency_seconds:p95_rate1m{_G}", "{{model_group}}"),
    "gateway_upstream_ttft_p95": Query(
        f"model_group:gateway_upstream_time_to_first_token_seconds:p95_rate1m{_G}", "{{model_group}} the gateway's call"
    ),
    "engine_ttft_p95": Query(f"model_group:vllm_time_to_first_token_seconds:p95_rate1m{_G}", "{{model_group}} vLLM"),
    "backend_requests": Query(f"server:gateway_requests:rate1m{_G}", "{{server}}"),
    "backend_failures": Query(f"server:gateway_request_failures:rate1m{_G}", "{{server}}"),
    "backend_state": Query("server:gateway_deployment_state:max", "{{server}}"),
    # --- the router lane (SMG) -------------------------------------------------------------------------------
    "router_responses_by_status": Query("status:router_responses:rate1m", "{{status_code}}"),
    "router_requests": Query(f"model_group:router_requests:rate1m{_G}", "{{model_group}}"),
    "router_duration_p50": Query(f"model_group:router_request_duration_seconds:p50_rate1m{_G}", "{{model_group}} p50"),
    "router_duration_p95": Query(f"model_group:router_request_duration_seconds:p95_rate1m{_G}", "{{model_group}} p95"),
    "router_backend_requests": Query("server:router_requests:rate1m", "{{server}}"),
    "router_backend_active": Query("server:router_requests_active:sum", "{{server}}"),
    "router_backend_in_rotation": Query("server:router_backend_in_rotation:min", "{{server}}"),
}  # fmt: skip
