"""Our GPU exporter. NVML cannot run here (no GPU) and is not faked: these tests prove what holds without a
driver, and that every GPU series the rules and dashboards read is one the exporter serves."""

from __future__ import annotations

import subprocess
import sys

import pynvml
import pytest
from conftest import ROOT, free_port
from monitoringtools import rules, series_names

from llmfleet.dashboards.queries import QUERIES
from llmfleet.exporter import GAUGES, LABELS, METRIC_NAMES
from llmfleet.plan.schema import Gpu, Plan, Server
from llmfleet.render.prometheus import gpu_relabels


def nvml_loads() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(nvml_loads(), reason="this host has an NVIDIA driver: the exporter would serve, not fail")
def test_exporter_without_an_nvidia_driver_says_what_and_how_to_fix_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmfleet", "exporter", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "NVML did not start" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_gpu_series_the_rules_and_dashboards_read_is_served_by_the_exporter() -> None:
    exprs = [r.expr for r in rules()] + [q.expr for q in QUERIES.values()]
    read = {n for e in exprs for n in series_names(e) if n.startswith("llmfleet_gpu_")}
    assert read <= METRIC_NAMES, f"read but not exported: {read - METRIC_NAMES}"


def test_exporter_metric_names_follow_prometheus_units_and_our_prefix() -> None:
    for gauge in GAUGES:
        assert gauge.name.startswith("llmfleet_gpu_"), gauge.name
        assert gauge.name.endswith(("_bytes", "_ratio", "_watts", "_celsius", "_throttled")), gauge.name
        assert gauge.help.endswith("."), gauge.name


def test_prometheus_relabels_gpu_series_on_a_label_the_exporter_sets() -> None:
    plan = Plan(
        device="cuda",
        gpus=[Gpu(index=0, name="NVIDIA GeForce RTX 3060", memory_gib=12)],
        servers=[Server(gpus=[0], model="Qwen2.5-7B-Instruct-AWQ", max_model_len=8192, max_num_seqs=16,
                        gpu_memory_utilization=0.9)],
    )  # fmt: skip
    for relabel in gpu_relabels(plan):
        assert set(relabel["source_labels"]) <= set(LABELS)  # type: ignore[arg-type]
