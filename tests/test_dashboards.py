"""The Grafana dashboards: the committed JSON is what the code generates, every panel shows a named query from
queries.py on the provisioned data source, and Compose mounts them where provisioning looks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from monitoringtools import ROOT, RUNBOOK, reads_gpu_series

from llmfleet.dashboards import generate
from llmfleet.dashboards.queries import QUERIES

DASHBOARDS = ROOT / generate.DASHBOARDS_DIR
PROVISIONING = ROOT / "monitoring" / "grafana" / "provisioning"


def committed() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside it
    return found


def test_committed_dashboards_match_a_fresh_generation() -> None:
    fresh = generate.render(ROOT)
    assert sorted(p.name for p in fresh) == sorted(committed()), "run `llmfleet dashboards`"
    for path, text in fresh.items():
        assert path.read_text() == text, f"{path.name} is stale: run `llmfleet dashboards`"


def test_generation_gives_the_same_bytes_in_another_process(tmp_path: Path) -> None:
    """No set or hash order leaks into the JSON: a fresh interpreter with another hash seed writes the same."""
    script = (
        "import sys; from pathlib import Path; from llmfleet.dashboards import generate\n"
        "for p, t in generate.render(Path(sys.argv[1])).items(): p.parent.mkdir(parents=True, exist_ok=True); "
        "p.write_text(t)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=True, timeout=60)
    for name in committed():
        assert (tmp_path / generate.DASHBOARDS_DIR / name).read_text() == (DASHBOARDS / name).read_text(), name


def test_llmfleet_dashboards_check_names_a_stale_file_and_a_rerun_fixes_it(tmp_path: Path) -> None:
    for name in ("fleet.yaml", "compose.yaml"):  # what marks a project root
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(DASHBOARDS, tmp_path / generate.DASHBOARDS_DIR)
    stale = tmp_path / generate.DASHBOARDS_DIR / "gateway.json"
    stale.write_text(stale.read_text().replace('"Gateway"', '"Edited in the UI"', 1))
    env = {**os.environ, "LLMFLEET_ROOT": str(tmp_path)}

    def llmfleet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "llmfleet", "dashboards", *args], env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip

    check = llmfleet("--check")
    assert check.returncode == 1, check.stderr
    assert "gateway.json" in check.stderr and "llmfleet dashboards" in check.stderr
    assert "Traceback" not in check.stderr
    assert llmfleet().returncode == 0
    assert stale.read_text() == (DASHBOARDS / "gateway.json").read_text()
    assert llmfleet("--check").returncode == 0


def test_every_panel_shows_queries_from_queries_py_and_every_query_is_shown() -> None:
    known = {q.expr for q in QUERIES.values()}
    shown = set()
    for name, dashboard in committed().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                assert target["expr"] in known, f"{name}: panel {panel['title']!r} shows a query not in queries.py"
                shown.add(target["expr"])
    assert shown == known, f"queries no panel shows: {known - shown}"


def test_every_panel_uses_the_provisioned_prometheus_data_source() -> None:
    source = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    for name, dashboard in committed().items():
        for panel in panels(dashboard):
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": source["type"], "uid": source["uid"]}, (name, panel["title"])
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] == source["uid"], (name, variable["name"])


def test_dashboards_have_unique_uids_and_panel_ids_and_fit_the_grid() -> None:
    uids = [d["uid"] for d in committed().values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in committed().items():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(set(ids)) == len(ids), name
        for panel in panels(dashboard):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])


def test_every_variable_a_query_uses_is_defined_on_its_dashboard() -> None:
    for name, dashboard in committed().items():
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        for panel in panels(dashboard):
            texts = [t["expr"] for t in panel.get("targets", [])] + [panel["title"]]
            for text in texts:
                used = set(re.findall(r"\$(\w+)", text))
                assert used <= defined, f"{name}: {panel['title']!r} uses {used - defined}"


def test_queries_are_marked_gpu_only_exactly_when_they_read_gpu_series() -> None:
    for name, query in QUERIES.items():
        assert query.gpu_only == reads_gpu_series(query.expr), name


def test_the_overview_shows_every_latency_quantile_tokens_queue_and_kv_per_model_group() -> None:
    overview = json.dumps(committed()["fleet-overview.json"])
    for metric in ("time_to_first_token", "inter_token_latency", "e2e_request_latency"):
        for quantile in ("p50", "p95", "p99"):
            assert f"model_group:vllm_{metric}_seconds:{quantile}_rate1m" in overview
    for series in ("gateway_requests", "gateway_request_errors", "vllm_generation_tokens",
                   "vllm_num_requests_waiting", "vllm_kv_cache_usage_ratio"):  # fmt: skip
        assert series in overview


def test_compose_mounts_the_dashboards_where_provisioning_reads_them() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "llmfleet.yaml").read_text())["providers"][0]
    grafana = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./monitoring/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert Path(home).name in committed()


@pytest.mark.parametrize("reference", sorted(set(re.findall(r"(?<!\*)\*([^*\n]+)\*(?!\*)", RUNBOOK.read_text()))))
def test_every_panel_the_runbook_names_exists(reference: str) -> None:
    titles = {p["title"] for d in committed().values() for p in panels(d)}
    assert reference in titles, f"monitoring/runbook.md names a panel *{reference}* that no dashboard has"
