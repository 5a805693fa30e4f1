"""`llmfleet soak`, short: steady load on the real CPU stack with zero errors and the gateway's memory growth
reported and within 10 %. `make soak` runs it for minutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Stack

pytestmark = pytest.mark.stack


def test_a_short_soak_has_no_errors_and_bounded_gateway_memory(stack: Stack, tmp_path: Path) -> None:
    result = stack.cli("soak", "--users", "4", "--duration", "60s", "--warmup", "20s", "--out", str(tmp_path),
                       "--max-tokens", "16", timeout=600)  # fmt: skip
    print(result.stdout)  # the figures, for the CI log
    figures = json.loads((tmp_path / "soak.json").read_text())
    assert figures["requests"] > 50
    assert figures["errors"] == 0, figures["failures_by_reason"]
    assert figures["gateway_rss_start_mib"] > 0 and figures["gateway_memory_growth"] is not None
    assert figures["gateway_memory_growth"] <= 0.10
    assert "gateway memory" in result.stdout and result.returncode == 0, result.stderr
