"""Every rule and every panel query on the real /metrics of the pinned vLLM and LiteLLM (captured from the CPU
stack, tests/data/metrics/), without starting anything: promtool loads them as input series, with the labels
prometheus.yml adds, runs every rule file, and each query must return numbers. A second scenario labels the same
engines as servers on GPUs and adds our exporter's series, so the GPU-only queries, which the live test can only
parse on a CPU stack, are shown to return data too. A vLLM or LiteLLM upgrade that renames a metric fails here once
the capture is refreshed; tests/test_monitoring_live.py proves the same on the running stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from monitoringtools import ROOT, RULES_DIR, Check, alerts, panel_checks, recorded, rule_checks, series_names
from prometheus_client.parser import text_string_to_metric_families

CAPTURES = ROOT / "tests" / "data" / "metrics"
VLLM_CAPTURE = CAPTURES / "vllm-0.32.0-cpu.prom"
LITELLM_CAPTURE = CAPTURES / "litellm-1.106.2.prom"
MINUTES = 10  # samples a minute apart; counters grow by their captured value each minute

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")

SCENARIOS = {
    # server -> the scrape labels prometheus.yml gives it (render/prometheus.py: backend_labels)
    "cpu": {
        "vllm-cpu0": {"model_group": "fleet-tiny", "gpu_name": "CPU"},
        "vllm-cpu1": {"model_group": "fleet-tiny", "gpu_name": "CPU"},
    },
    "gpu": {
        "vllm-gpu0": {"model_group": "fleet-tiny", "gpu": "0", "gpu_name": "NVIDIA GeForce RTX 3060"},
        "vllm-gpu1": {"model_group": "fleet-tiny", "gpu": "1", "gpu_name": "NVIDIA GeForce RTX 3060"},
    },
}
# What our exporter reports for a busy RTX 3060, labelled as the gpu job's metric_relabel_configs label it.
EXPORTER_VALUES = {
    "llmfleet_gpu_memory_used_bytes": 11.0e9,
    "llmfleet_gpu_memory_total_bytes": 12.0e9,
    "llmfleet_gpu_utilization_ratio": 0.5,
    "llmfleet_gpu_power_watts": 150,
    "llmfleet_gpu_power_limit_watts": 170,
    "llmfleet_gpu_temperature_celsius": 70,
    "llmfleet_gpu_temperature_slowdown_celsius": 93,
    "llmfleet_gpu_throttled": 0,
}


def _series(name: str, labels: dict[str, str]) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return name + "{" + ",".join(f"{k}={quoted(v)}" for k, v in sorted(labels.items())) + "}"


def _captured(path: Path, target: dict[str, str], rename: dict[str, str] | None = None) -> list[dict]:
    """The capture as promtool input series: gauges constant, counters and histograms growing."""
    found = []
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = {k: (rename or {}).get(v, v) for k, v in sample.labels.items()} | target
            growing = family.type in ("counter", "histogram", "summary") and sample.labels.get("quantile") is None
            value = float(sample.value)
            values = " ".join(repr(value * (1 + t) if growing else value) for t in range(MINUTES + 1))
            found.append({"series": _series(sample.name, labels), "values": values})
    return found


def input_series(scenario: str) -> list[dict]:
    servers = SCENARIOS[scenario]
    rename = {f"vllm-cpu{i}": name for i, name in enumerate(servers)}  # the gateway's model_id is the server
    series = []
    for i, (server, labels) in enumerate(servers.items()):
        target = {"job": "vllm", "instance": f"{server}:8000", "server": server, **labels}
        series += _captured(VLLM_CAPTURE, target)
        series.append({"series": _series("up", target), "values": f"1x{MINUTES}"})
        if scenario == "gpu":
            card = {"job": "gpu", "instance": "gpu-exporter:9835", "gpu": str(i), "gpu_name": labels["gpu_name"],
                    "uuid": f"GPU-{i}", "server": server, "model_group": labels["model_group"]}  # fmt: skip
            for name, value in EXPORTER_VALUES.items():
                series.append({"series": _series(name, card), "values": f"{value}x{MINUTES}"})
    gateway = {"job": "gateway", "instance": "gateway:4000"}
    series += _captured(LITELLM_CAPTURE, gateway, rename)
    series.append({"series": _series("up", gateway), "values": f"1x{MINUTES}"})
    itself = {"job": "prometheus", "instance": "localhost:9090"}
    series.append({"series": _series("up", itself), "values": f"1x{MINUTES}"})
    if scenario == "gpu":
        exporter = {"job": "gpu", "instance": "gpu-exporter:9835"}
        series.append({"series": _series("up", exporter), "values": f"1x{MINUTES}"})
        series.append({"series": _series("llmfleet_gpu_exporter_up", exporter), "values": f"1x{MINUTES}"})
    return series


def checks(scenario: str) -> list[Check]:
    """What must return numbers. An alert's own expression is empty on a healthy fleet: the alert tests cover it.
    The router's (SMG's) series are not among the captures: its rules and panels are proven on the live stack
    (test_monitoring_live) and by promtool (gateway.rules_test.yaml)."""
    return [
        c
        for c in panel_checks() + rule_checks()
        if c.needs_data(gpus=scenario == "gpu") and "smg_" not in c.expr and "router_" not in c.expr
    ]


def promtool_test(tmp_path: Path, scenario: str) -> tuple[Path, list[Check]]:
    wanted = checks(scenario)
    tests = {
        "rule_files": [str(p) for p in sorted(RULES_DIR.glob("*.yaml"))],
        "evaluation_interval": "1m",
        "tests": [{
            "name": f"captured metrics, {scenario} plan",
            "interval": "1m",
            "input_series": input_series(scenario),
            # `x == x` drops NaN: a panel showing NaN shows nothing. One sample {} 1 when there is data.
            "promql_expr_test": [
                {"expr": f"vector(1) and on () count(({c.expr}) == ({c.expr}))", "eval_time": f"{MINUTES}m",
                 "exp_samples": [{"labels": "{}", "value": 1}]}
                for c in wanted
            ],
            # A healthy fleet: no alert fires.
            "alert_rule_test": [{"eval_time": f"{MINUTES}m", "alertname": a.name} for a in alerts()],
        }],
    }  # fmt: skip
    path = tmp_path / f"captured_{scenario}_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False, width=200))
    return path, wanted


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_query_returns_data_and_no_alert_fires_on_the_captured_metrics(tmp_path: Path, scenario: str) -> None:
    path, _ = promtool_test(tmp_path, scenario)
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=300,
                            check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def test_every_vllm_and_litellm_name_the_rules_read_is_in_the_captured_metrics() -> None:
    exported = set()
    for path in (VLLM_CAPTURE, LITELLM_CAPTURE):
        exported |= {s.name for f in text_string_to_metric_families(path.read_text()) for s in f.samples}
    read = {n for r in recorded().values() for n in series_names(r.expr) if n.startswith(("vllm:", "litellm_"))}
    assert read <= exported, f"not exported by the pinned versions: {sorted(read - exported)}"
