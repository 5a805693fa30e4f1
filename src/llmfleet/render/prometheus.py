"""Prometheus' scrape config: every vLLM server (labelled with its GPU and model group), the gateway, the GPU
exporter and Prometheus itself. And the SLO thresholds from .env, as series the alerts and dashboards read."""

from __future__ import annotations

import re
from pathlib import Path

from llmfleet.plan.schema import Plan
from llmfleet.render import HEADER, Topology, rendered
from llmfleet.settings import Settings
from llmfleet.yamltext import to_yaml

SCRAPE_INTERVAL = "5s"  # short enough that a one-minute load test has a dozen samples per series
SLO_RULES = Path("monitoring/prometheus/rules/slo.rules.yaml")


def backend_labels(plan: Plan, i: int) -> dict[str, str]:
    """The labels that tie a vLLM server's series to its GPUs and model group (and so to the exporter's)."""
    name, server = plan.named_servers()[i]
    labels = {"server": name, "model_group": server.model}
    if server.gpus:
        labels["gpu"] = ",".join(str(g) for g in server.gpus)
        labels["gpu_name"] = plan.gpu(server.gpus[0]).name
    else:
        labels["gpu_name"] = "CPU"
    return labels


def gpu_relabels(plan: Plan) -> list[dict[str, object]]:
    """Give each card's exporter series the server and model group that use it, so a GPU's VRAM, power and
    temperature select and join on `server` like its engine's metrics (a tensor-parallel pair included)."""
    relabels: list[dict[str, object]] = []
    for name, server in plan.named_servers():
        for index in server.gpus:
            for label, value in (("server", name), ("model_group", server.model)):
                relabels.append(
                    {"source_labels": ["gpu"], "regex": str(index), "target_label": label, "replacement": value}
                )
    return relabels


def router_relabels(plan: Plan, topology: Topology) -> list[dict[str, object]]:
    """SMG names a backend by the URL it sends to (`worker`): give each the plan's server name, as the vLLM job's
    series have it, so the router's view and the engines' join on `server`."""
    names = topology.server_names or tuple(name for name, _ in plan.named_servers())
    return [
        {
            "source_labels": ["worker"],
            "regex": re.escape(f"http://{address}"),
            "target_label": "server",
            "replacement": name,
        }
        for name, address in zip(names, topology.backends, strict=True)
    ]


def config(plan: Plan, topology: Topology, rule_files: list[str]) -> str:
    vllm_targets = [
        {"targets": [address], "labels": backend_labels(plan, i)} for i, address in enumerate(topology.backends)
    ]
    jobs: list[dict[str, object]] = [
        {"job_name": "vllm", "static_configs": vllm_targets},
        {
            "job_name": "gateway",
            "metrics_path": "/metrics/",  # /metrics answers a redirect to /metrics/
            "authorization": {"type": "Bearer", "credentials_file": topology.gateway_key_file},
            "static_configs": [{"targets": [topology.gateway]}],
        },
        {"job_name": "prometheus", "static_configs": [{"targets": [topology.prometheus]}]},
    ]
    if topology.router_metrics:  # SMG's own smg_* series: the router lane's requests, latency and backends
        jobs.insert(
            2,
            {
                "job_name": "router",
                "static_configs": [{"targets": [topology.router_metrics]}],
                "metric_relabel_configs": router_relabels(plan, topology),
            },
        )
    if topology.gpu_exporter:
        gpu_job: dict[str, object] = {"job_name": "gpu", "static_configs": [{"targets": [topology.gpu_exporter]}]}
        if relabels := gpu_relabels(plan):
            gpu_job["metric_relabel_configs"] = relabels
        jobs.append(gpu_job)
    body = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": rule_files,
        "scrape_configs": jobs,
    }
    return rendered(body)


# record name -> the setting it comes from. The alerts in vllm.rules.yaml and gateway.rules.yaml compare against
# these series, and the dashboards draw them, so a threshold lives in .env alone.
SLO_SERIES = {
    "slo:vllm_time_to_first_token_seconds:p95": "SLO_TTFT_P95_SECONDS",
    "slo:vllm_inter_token_latency_seconds:p95": "SLO_ITL_P95_SECONDS",
    "slo:gateway_request_errors:ratio": "SLO_ERROR_RATE",
}


def slo_rules(settings: Settings) -> str:
    """The SLOs of .env as constant series: Prometheus rules cannot read the environment."""
    rules = [
        {"record": name, "expr": f"vector({getattr(settings, setting)!r})"} for name, setting in SLO_SERIES.items()
    ]
    body = {"groups": [{"name": "slo", "rules": rules}]}
    return (
        HEADER.format(source=".env")
        + "# One series per objective; alerts and dashboards compare against them.\n"
        + to_yaml(body)
    )
