"""The gateway's background health checks: long enough for a busy real model, short enough to stay fresh."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmfleet.render import gateway

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "gateway" / "config.yaml").read_text())
INTERVAL_S = CONFIG["general_settings"]["health_check_interval"]
STALENESS_S = CONFIG["router_settings"]["health_check_staleness_threshold"]


@pytest.mark.parametrize("models_file", ["gateway/models.yaml", "gateway/models.cpu.yaml"])
def test_a_passed_check_is_still_fresh_when_the_next_one_ends(models_file: str) -> None:
    """Otherwise a healthy backend drops out of rotation for a moment after every check: with all of them, 429s."""
    for entry in yaml.safe_load((ROOT / models_file).read_text())["model_list"]:
        timeout = entry["model_info"]["health_check_timeout"]
        assert INTERVAL_S + timeout < STALENESS_S, entry["model_info"]["id"]


def test_a_real_model_gets_longer_than_the_synthetic_one_whose_freeze_must_show_fast() -> None:
    real = yaml.safe_load((ROOT / "gateway" / "models.cpu.yaml").read_text())["model_list"]
    assert {e["model_info"]["health_check_timeout"] for e in real} == {gateway.HEALTH_CHECK_TIMEOUT_S}
    assert gateway.health_check_timeout("fleet-tiny") == 3 < gateway.HEALTH_CHECK_TIMEOUT_S
