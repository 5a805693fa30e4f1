"""monitoring/prometheus/prometheus.yml (and the CPU variant): valid for promtool, every part of the plan scraped,
each card's series labelled with the server using it; and the SLO rules rendered from .env."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmfleet.plan.schema import Gpu, Plan, Server, cpu_plan
from llmfleet.render import compose
from llmfleet.render import prometheus as render_prometheus
from llmfleet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "prometheus" / "rules"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")


def tensor_parallel_plan() -> Plan:
    return Plan(
        device="cuda",
        gpus=[Gpu(index=i, name="NVIDIA L40S", memory_gib=48) for i in range(3)],
        servers=[
            Server(gpus=[0], model="Qwen2.5-7B-Instruct-AWQ", max_model_len=8192, max_num_seqs=16,
                   gpu_memory_utilization=0.9),
            Server(gpus=[1, 2], model="Qwen2.5-7B-Instruct-AWQ", max_model_len=8192, max_num_seqs=16,
                   gpu_memory_utilization=0.9),
        ],
    )  # fmt: skip


def jobs(text: str) -> dict[str, dict]:
    return {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}


def relabelled(job: dict, labels: dict[str, str]) -> dict[str, str]:
    """Apply the job's metric_relabel_configs (the replace action, fully anchored, as Prometheus does)."""
    import re

    out = dict(labels)
    for rule in job.get("metric_relabel_configs", []):
        value = ";".join(out.get(name, "") for name in rule["source_labels"])
        if re.fullmatch(rule["regex"], value):
            out[rule["target_label"]] = rule["replacement"]
    return out


def test_every_card_of_a_server_gets_its_server_and_model_group() -> None:
    plan = tensor_parallel_plan()
    gpu_job = jobs(render_prometheus.config(plan, compose.topology(plan), []))["gpu"]
    expected = {"gpu": "0", "server": "vllm-gpu0", "model_group": "Qwen2.5-7B-Instruct-AWQ"}
    assert relabelled(gpu_job, {"gpu": "0"}) == expected
    for card in ("1", "2"):  # both cards of the tensor-parallel pair
        assert relabelled(gpu_job, {"gpu": card})["server"] == "vllm-gpu1-2"
    assert relabelled(gpu_job, {"gpu": "10"}) == {"gpu": "10"}  # anchored: card 10 is not card 1


def test_vllm_targets_carry_server_model_group_and_gpus() -> None:
    plan = tensor_parallel_plan()
    vllm = jobs(render_prometheus.config(plan, compose.topology(plan), []))["vllm"]
    labels = [target["labels"] for target in vllm["static_configs"]]
    assert [(x["server"], x["gpu"]) for x in labels] == [("vllm-gpu0", "0"), ("vllm-gpu1-2", "1,2")]


def test_cpu_plan_scrapes_no_gpu_exporter() -> None:
    plan = cpu_plan()
    assert sorted(jobs(render_prometheus.config(plan, compose.topology(plan), []))) == [
        "gateway",
        "prometheus",
        "router",
        "vllm",
    ]


@needs_promtool
@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus.cpu.yml"])
def test_committed_config_passes_promtool_with_the_rules(tmp_path: Path, name: str) -> None:
    key = tmp_path / "gateway.key"
    key.write_text("sk-test")
    text = (ROOT / "monitoring" / "prometheus" / name).read_text()
    text = text.replace("/tmp/gateway.key", str(key)).replace("/etc/prometheus/rules/*.yaml", f"{RULES}/*.yaml")
    (tmp_path / name).write_text(text)
    result = subprocess.run(["promtool", "check", "config", str(tmp_path / name)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 rule files found" in result.stdout  # vllm, gateway, gpu, targets, slo


def test_slo_rules_give_each_objective_as_a_constant_series() -> None:
    settings = Settings(SLO_TTFT_P95_SECONDS=1.5, SLO_ITL_P95_SECONDS=0.05, SLO_ERROR_RATE=0.001)
    text = render_prometheus.slo_rules(settings)
    assert text.startswith("# Rendered by llmfleet render from .env. Do not edit")
    (group,) = yaml.safe_load(text)["groups"]
    assert {r["record"]: r["expr"] for r in group["rules"]} == {
        "slo:vllm_time_to_first_token_seconds:p95": "vector(1.5)",
        "slo:vllm_inter_token_latency_seconds:p95": "vector(0.05)",
        "slo:gateway_request_errors:ratio": "vector(0.001)",
    }
