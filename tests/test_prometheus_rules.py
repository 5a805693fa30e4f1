"""The Prometheus rules: promtool checks and runs their tests, every alert is tested firing and silent and has its
runbook section, the SLOs of .env decide when alerts fire, and only the rules read vLLM's and LiteLLM's names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from monitoringtools import (
    ROOT,
    RULE_TESTS_DIR,
    RULES_DIR,
    RUNBOOK,
    RUNBOOK_URL,
    alerts,
    recorded,
    rules,
    series_names,
)

from llmfleet.dashboards.queries import QUERIES
from llmfleet.errors import FleetError
from llmfleet.exporter import METRIC_NAMES as EXPORTER_METRICS
from llmfleet.render import prometheus as render_prometheus
from llmfleet.settings import Settings, load_settings

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make system-deps)")
TEST_FILES = sorted(RULE_TESTS_DIR.glob("*.rules_test.yaml"))
SLO_FILE = ROOT / render_prometheus.SLO_RULES  # rendered from .env; its test is the SLO one below


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


@needs_promtool
def test_every_rule_file_passes_promtool_check() -> None:
    result = promtool("check", "rules", *sorted(RULES_DIR.glob("*.yaml")))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_rule_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hand_written_rule_file_has_a_test_file_of_the_same_stem() -> None:
    written = {p.name.removesuffix(".rules.yaml") for p in RULES_DIR.glob("*.rules.yaml") if p != SLO_FILE}
    tested = {p.name.removesuffix(".rules_test.yaml") for p in TEST_FILES}
    assert written == tested


def _alert_cases() -> dict[str, dict[str, int]]:
    """alert name -> how many of its test cases expect it firing, and how many expect silence."""
    cases: dict[str, dict[str, int]] = {}
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "firing" if case.get("exp_alerts") else "silent"
                counts = cases.setdefault(case["alertname"], {"firing": 0, "silent": 0})
                counts[kind] += 1
    return cases


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases = _alert_cases()
    for alert in alerts():
        assert cases.get(alert.name, {}).get("firing", 0) > 0, f"{alert.name}: no test where it fires"
        assert cases[alert.name]["silent"] > 0, f"{alert.name}: no test where it stays silent"


def test_every_alert_test_checks_the_full_annotations() -> None:
    written = {a.name: a.data["annotations"] for a in alerts()}
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                for expected in case.get("exp_alerts", []):
                    assert set(expected.get("exp_annotations", {})) == set(written[case["alertname"]]), (
                        f"{path.name}: {case['alertname']} at {case['eval_time']} checks only some annotations"
                    )


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    headings = {line[3:].strip() for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    for alert in alerts():
        assert alert.data["labels"]["severity"] in ("warning", "critical"), alert.name
        annotations = alert.data["annotations"]
        assert annotations["summary"].endswith("."), alert.name
        assert annotations["description"].strip(), alert.name
        # GitHub's anchor for "## VllmBackendDown" is #vllmbackenddown
        assert annotations["runbook_url"] == f"{RUNBOOK_URL}#{alert.name.lower()}", alert.name
        assert alert.name in headings, f"monitoring/runbook.md has no section '## {alert.name}'"
    assert headings == {a.name for a in alerts()}, "runbook sections without an alert"


def test_alert_names_start_with_their_component() -> None:
    for alert in alerts():
        assert alert.name.startswith(("Vllm", "Gateway", "Gpu", "Prometheus")), alert.name


RAW_PREFIXES = ("vllm:", "litellm_", "smg_", "llmfleet_key_")


def test_vllm_litellm_and_router_names_are_read_only_by_the_first_rules() -> None:
    """A renamed vLLM, LiteLLM or SMG metric breaks one rule and its test, not the panels and alerts built on it."""
    for rule in alerts():
        raw = {n for n in series_names(rule.expr) if n.startswith(RAW_PREFIXES)}
        assert not raw, f"alert {rule.name} reads {raw}; read a recorded name instead"
    for name, query in QUERIES.items():
        raw = {n for n in series_names(query.expr) if n.startswith(RAW_PREFIXES)}
        assert not raw, f"panel query {name} reads {raw}; read a recorded name instead"


def test_every_vllm_name_is_read_once_per_window() -> None:
    reads: dict[str, list[str]] = {}
    for rule in rules():
        window = rule.name.rsplit(":", 1)[-1]
        for name in series_names(rule.expr):
            if name.startswith("vllm:"):
                reads.setdefault(f"{name} ({window.removeprefix('ratio_')})", []).append(rule.name)
    twice = {name: by for name, by in reads.items() if len(by) > 1}
    assert twice == {}


def test_every_recorded_series_is_read_by_a_panel_an_alert_or_another_rule() -> None:
    read = set().union(*(series_names(r.expr) for r in rules()), *(series_names(q.expr) for q in QUERIES.values()))
    unread = set(recorded()) - read
    assert unread == set(), "recorded but never read"


def test_every_series_read_is_recorded_exported_by_a_known_target_or_up() -> None:
    # Exported by vLLM, LiteLLM, SMG and the backend guard (its per-key series); the live tests prove they exist.
    known_prefixes = ("vllm:", "litellm_", "smg_", "llmfleet_key_")
    recorded_names = set(recorded())
    for expr in [r.expr for r in rules()] + [q.expr for q in QUERIES.values()]:
        for name in series_names(expr):
            assert (
                name in recorded_names or name in EXPORTER_METRICS or name == "up" or name.startswith(known_prefixes)
            ), f"{name!r} in {expr!r} is neither recorded nor exported"


# --- the SLOs: .env -> slo.rules.yaml -> alerts -------------------------------------------------------------------


def test_committed_slo_rules_carry_the_objectives_of_env() -> None:
    settings = Settings(_env_file=ROOT / ".env")  # type: ignore[call-arg]
    assert SLO_FILE.read_text() == render_prometheus.slo_rules(settings), "run `llmfleet render`"
    values = {r.name: float(r.expr.removeprefix("vector(").removesuffix(")")) for r in rules() if r.group == "slo"}
    assert values == {name: getattr(settings, env) for name, env in render_prometheus.SLO_SERIES.items()}


def test_an_objective_out_of_range_in_env_is_refused_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMFLEET_ROOT", str(tmp_path))
    monkeypatch.delenv("SLO_ERROR_RATE", raising=False)
    (tmp_path / ".env").write_text("SLO_ERROR_RATE=5\n")
    with pytest.raises(FleetError) as caught:
        load_settings()
    assert caught.value.where == ".env: SLO_ERROR_RATE"


def test_every_slo_series_is_compared_by_an_alert() -> None:
    compared = set().union(*(series_names(a.expr) for a in alerts()))
    assert set(render_prometheus.SLO_SERIES) <= compared


TTFT_CASE = """
rule_files: [{slo}, {vllm}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:   # p95 time to first token of 4.875 s
      - series: 'vllm:time_to_first_token_seconds_bucket{{server="vllm-gpu0",model_group="M",le="2.5"}}'
        values: '0x12'
      - series: 'vllm:time_to_first_token_seconds_bucket{{server="vllm-gpu0",model_group="M",le="5.0"}}'
        values: '0+10x12'
      - series: 'vllm:time_to_first_token_seconds_bucket{{server="vllm-gpu0",model_group="M",le="+Inf"}}'
        values: '0+10x12'
    alert_rule_test:
      - eval_time: 10m
        alertname: VllmTimeToFirstTokenOverSlo
        exp_alerts: {expected}
"""
FIRING = """
          - exp_labels: {model_group: M, severity: warning}
            exp_annotations:
              summary: Time to first token is over its objective.
              description: >-
                p95 time to first token of M is 4.875s over the last 5 minutes, above SLO_TTFT_P95_SECONDS in .env.
              runbook_url: https://github.com/llmfleet/llmfleet/blob/main/monitoring/runbook.md#vllmtimetofirsttokenoverslo
"""


@needs_promtool
@pytest.mark.parametrize(("slo_seconds", "fires"), [(4.5, True), (5.0, False)])
def test_slo_in_env_decides_whether_the_ttft_alert_fires(tmp_path: Path, slo_seconds: float, fires: bool) -> None:
    """The rendered slo.rules.yaml and the hand-written alert, together, as Prometheus loads them."""
    slo = tmp_path / "slo.rules.yaml"
    slo.write_text(render_prometheus.slo_rules(Settings(SLO_TTFT_P95_SECONDS=slo_seconds)))
    case = tmp_path / "ttft_test.yaml"
    expected = FIRING if fires else "[]"
    case.write_text(TTFT_CASE.format(slo=slo, vllm=RULES_DIR / "vllm.rules.yaml", expected=expected))
    result = promtool("test", "rules", case)
    assert result.returncode == 0, result.stdout + result.stderr
