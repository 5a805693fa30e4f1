"""Monitoring against the real CPU stack (`llmfleet up --plan cpu`): after traffic through the gateway, Prometheus
has loaded every rule of the repo and evaluates each without error, every panel's query and every rule's
expression parses and returns data (the GPU-only ones: parses), the SLO series carry the values of .env, and
no alert about the stack's wiring is active."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from conftest import Stack
from monitoringtools import (
    ROOT,
    active_alerts,
    loaded_rules,
    panel_checks,
    query,
    rule_checks,
    rules,
    run_checks,
    send_traffic,
)

from llmfleet.render.prometheus import SLO_SERIES
from llmfleet.settings import Settings

pytestmark = pytest.mark.stack

SCRAPE_S = 5  # monitoring/prometheus/prometheus.yml: scrape and evaluation interval
# Alerts a healthy stack never has, even pending: each says a part is down, unscraped or missing a metric.
WIRING_ALERTS = {"VllmBackendDown", "VllmMetricMissing", "GatewayDown", "PrometheusTargetDown",
                 "PrometheusTargetMissing"}  # fmt: skip


def wait_for_litellm(stack: Stack) -> None:
    """Until LiteLLM itself answers a completion. The router lane's tests before this one (a load test that kills
    both backends) leave them in LiteLLM's cooldown after the door already serves again: LiteLLM answers 429
    "All deployments ... are in cooldown" until its health checks pass them."""
    stack.wait_until_it_answers(f"http://127.0.0.1:{stack.cli.port('LITELLM_PORT')}", timeout=90)


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Stack:
    wait_for_litellm(stack)
    # Two bursts a scrape apart: LiteLLM creates a series at its first request, and rate() needs a sample of it
    # from before an increase. Then two scrape and evaluation intervals for the rules to record.
    for _ in range(2):
        send_both_lanes(stack)
        time.sleep(SCRAPE_S + 2)
    time.sleep(SCRAPE_S)
    return stack


def send_both_lanes(stack: Stack) -> None:
    """Through the door (the master key's lane is the router on this stack, the default), and to LiteLLM itself
    with the master key, as the door's LiteLLM lane sends it (GATEWAY_DATA_PLANE=litellm, or a key too long for
    the router's header): LiteLLM's panels need its own completions."""
    send_traffic(stack.gateway, stack.key)
    send_traffic(f"http://127.0.0.1:{stack.cli.port('LITELLM_PORT')}", stack.key)


def refresher(stack: Stack) -> Callable[[], None]:
    return lambda: send_both_lanes(stack)


def test_prometheus_loaded_every_rule_of_the_repo_and_evaluates_each_without_error(traffic: Stack) -> None:
    expected = {}
    for rule in rules():
        expected.setdefault(rule.group, []).append(rule.name)
    deadline = time.monotonic() + 60
    while True:
        groups = loaded_rules(traffic.prometheus)
        loaded = {g["name"]: [r["name"] for r in g["rules"]] for g in groups}
        unhealthy = {
            r["name"]: (r["health"], r.get("lastError", "")) for g in groups for r in g["rules"] if r["health"] != "ok"
        }
        if loaded == expected and not unhealthy:
            return
        assert time.monotonic() < deadline, f"loaded {loaded}\nexpected {expected}\nnot ok: {unhealthy}"
        time.sleep(SCRAPE_S)


def test_every_panel_query_parses_and_returns_data(traffic: Stack) -> None:
    problems = run_checks(traffic.prometheus, panel_checks(), refresh=refresher(traffic))
    assert problems == [], "\n".join(problems)


def test_every_rule_expression_parses_and_returns_data(traffic: Stack) -> None:
    problems = run_checks(traffic.prometheus, rule_checks(), refresh=refresher(traffic))
    assert problems == [], "\n".join(problems)


def test_slo_series_carry_the_objectives_of_env(traffic: Stack) -> None:
    settings = Settings(_env_file=ROOT / ".env")  # type: ignore[call-arg]
    for series, setting in SLO_SERIES.items():
        parsed, result, error = query(traffic.prometheus, series)
        assert parsed, error
        assert [float(s["value"][1]) for s in result] == [getattr(settings, setting)], series


def test_no_wiring_alert_is_pending_or_firing(traffic: Stack) -> None:
    # Objectives and capacity alerts are left out: on 2 CPU cores, latency is not what this proves.
    # Right after the start, the 5-minute rates VllmMetricMissing reads take two scrapes to exist: allow a minute.
    deadline = time.monotonic() + 60
    while True:
        active = sorted((a["labels"]["alertname"], a["state"]) for a in active_alerts(traffic.prometheus))
        if not [a for a in active if a[0] in WIRING_ALERTS]:
            return
        assert time.monotonic() < deadline, f"alerts active on a healthy stack: {active}"
        time.sleep(SCRAPE_S)
