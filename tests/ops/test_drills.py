"""`llmfleet drill` on the real CPU stack: a backend killed, frozen, cut mid-stream, all down and brought back,
under load. It prints its figures; every target must be met. It leaves every backend running again."""

from __future__ import annotations

import json

import pytest
from conftest import Stack

pytestmark = pytest.mark.stack


def test_every_drill_meets_its_target_and_prints_its_figures(stack: Stack) -> None:
    result = stack.cli("drill", "--users", "4", "--window", "12", "--json", timeout=1500)
    print(result.stdout)  # the figures, for the CI log
    figures = json.loads(result.stdout[result.stdout.index("[\n") :])
    by_name = {(f["drill"], f["name"]): f for f in figures}
    missed = [f"{f['drill']}: {f['name']} = {f['value']} (target {f['target']})" for f in figures if f["met"] is False]
    assert missed == [], missed
    assert result.returncode == 0, result.stderr
    assert by_name[("kill", "failed before their first token")]["value"] == 0
    assert by_name[("freeze", "failed before their first token")]["value"] == 0
    assert by_name[("all down", "answer")]["value"] == "HTTP 503"
    assert "error event" in by_name[("stream cut", "ended with")]["value"]
    status = json.loads(stack.cli("status", "--json").stdout)
    assert all(row["healthy"] for row in status), status  # brought back for the tests after it
