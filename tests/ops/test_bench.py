"""`llmfleet bench gateway`: the same load sent directly and through the gateway, compared and appended to a results
file. The arithmetic is checked on fixed cells; the command itself runs against the real CPU stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Cli, Stack

from llmfleet.ops import bench


def cell(way_in: str, requests: int, tokens: int, ttft_p50: float, cpu: float | None = None) -> bench.Cell:
    return bench.Cell(way_in, 16, 16, 10.0, requests, 0, tokens, ttft_p50, ttft_p50 * 2, cpu)


def test_comparisons_subtract_direct_ttft_and_divide_throughput() -> None:
    grid = bench.Grid([16], {"short": 16}, 10.0)
    grid.cells = [cell("direct", 200, 3200, 40.0), cell("gateway", 100, 1600, 52.5, cpu=8.0)]
    [comparison] = grid.comparisons()
    assert comparison.added_ttft_p50_ms == pytest.approx(12.5)
    assert comparison.added_ttft_p99_ms == pytest.approx(25.0)
    assert comparison.requests_ratio == pytest.approx(0.5) and comparison.tokens_ratio == pytest.approx(0.5)
    assert comparison.cell.cpu_s_per_1k_tokens == pytest.approx(5.0)


def test_results_markdown_has_the_facts_every_cell_and_the_ratios() -> None:
    grid = bench.Grid([1], {"short": 16}, 10.0)
    grid.cells = [cell("direct", 50, 800, 30.0), cell("gateway", 40, 640, 90.0, cpu=3.2)]
    text = bench.markdown(grid, {"cores": "2"}, {"litellm": "1.106.2"})
    assert "- cores: 2" in text and "- litellm: 1.106.2" in text
    assert "| direct | 16 | 16 | 5.0 | 80 | 30.0 | 60.0 | 0 | – |" in text
    assert "| gateway | 16 | 16 | +60.0 | +120.0 | 0.80 | 0.80 |" in text
    assert "by process" not in text  # one process each: nothing to split


def test_results_markdown_splits_a_way_ins_cpu_by_process() -> None:
    grid = bench.Grid([1], {"short": 16}, 10.0)
    gateway = cell("gateway", 40, 640, 90.0, cpu=3.2)
    gateway.cpu_s_by_process = {"door": 0.64, "router": 0.32, "litellm": 2.24}
    grid.cells = [cell("direct", 50, 800, 30.0), gateway]
    text = bench.markdown(grid, {}, {})
    assert "| way in | users | max tokens | door | router | litellm |" in text
    assert "| gateway | 16 | 16 | 1.000 | 0.500 | 3.500 |" in text  # per 1,000 of its 640 tokens


def test_results_markdown_shows_what_a_way_in_spends_idle_in_each_cells_terms() -> None:
    grid = bench.Grid([1], {"short": 16}, 10.0, idle_seconds=5)
    gateway = cell("gateway", 40, 640, 90.0, cpu=3.2)
    gateway.cpu_s_by_process = {"door": 0.64, "router": 2.56}
    grid.cells = [cell("direct", 50, 800, 30.0), gateway]
    grid.idle = {"gateway": {"door": 0.0, "router": 0.016}}
    text = bench.markdown(grid, {}, {})
    # 16 ms a second over the cell's 10 s is 0.16 CPU-s, per 1,000 of its 640 tokens 0.25
    assert "| gateway | 16 | 16 | 1.000 | 4.000 | 0.250 |" in text
    assert "measured for 5 s before the runs (CPU ms per second: gateway: door 0.0, router 16.0)" in text


def test_idle_cpu_is_measured_on_the_way_ins_own_processes() -> None:
    code = "import time\nwhile True:\n    end = time.monotonic() + 0.02\n    while time.monotonic() < end: pass\n" \
           "    time.sleep(0.08)"  # fmt: skip
    with subprocess.Popen([sys.executable, "-c", code]) as busy, \
         subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as still:  # fmt: skip
        try:
            charged = {"busy": busy.pid, "still": still.pid}
            ways = [bench.WayIn("direct", [], ""), bench.WayIn("gateway", [], "", charged)]
            rates = bench.idle_cpu_per_s(ways, 1.0)
            assert set(rates) == {"gateway"}  # direct charges no process
            assert 0.05 < rates["gateway"]["busy"] < 0.6 and rates["gateway"]["still"] < 0.02
        finally:
            busy.kill()
            still.kill()


def test_cpu_seconds_counts_a_live_process_and_none_without_one() -> None:
    assert (bench.cpu_seconds(os.getpid()) or 0) > 0
    assert bench.cpu_seconds(None) is None


def test_charged_cpu_adds_every_process_and_refuses_a_partial_sum() -> None:
    with subprocess.Popen([sys.executable, "-c", "sum(range(10**7)); import time; time.sleep(60)"]) as busy:
        try:
            while (bench.cpu_seconds(busy.pid) or 0) < 0.05:  # it has spent some CPU
                time.sleep(0.05)
            mine, theirs = bench.cpu_seconds(os.getpid()), bench.cpu_seconds(busy.pid)
            both = bench.charged_cpu_seconds({"me": os.getpid(), "busy": busy.pid})
            assert mine is not None and theirs is not None and both is not None
            assert both["me"] >= mine and both["busy"] >= theirs
            gone = subprocess.run(
                [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
            )
            gone_too = {"busy": busy.pid, "gone": int(gone.stdout)}
            assert bench.charged_cpu_seconds(gone_too) is None  # one could not be seen
            assert bench.charged_cpu_seconds({}) is None
        finally:
            busy.kill()


@pytest.mark.stack
def test_bench_gateway_measures_direct_and_gateway_on_the_real_stack(stack: Stack, tmp_path: Path) -> None:
    results = tmp_path / "gateway.md"
    result = stack.cli("bench", "gateway", "--users", "1,4", "--short", "4", "--long", "32", "--seconds", "3",
                       "--results", str(results), timeout=300)  # fmt: skip
    print(result.stdout)  # the figures, for the CI log
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in results.read_text().splitlines() if line.startswith("| direct")]
    gateway = [line.split("|")[1:-1] for line in results.read_text().splitlines() if line.startswith("| gateway")]
    assert len(rows) == 4  # 2 user counts x 2 output lengths
    cells = [r for r in gateway if len(r) == 9]
    assert len(cells) == 4
    for row in rows + cells:
        assert float(row[3]) > 0 and float(row[4]) > 0 and int(row[7]) == 0  # requests/s, tokens/s, no failures
    assert all(float(r[8]) > 0 for r in cells)  # the gateway's own CPU per 1k tokens was measured
    by_process = results.read_text().split("by process:")[1].splitlines()
    split = [line.split("|")[1:-1] for line in by_process if line.startswith("| gateway")]
    assert len(split) == 4 and all(len(r) == 7 and float(r[-1]) >= 0 for r in split)  # door, router, litellm, idle
    assert "measured for 3 s before the runs" in results.read_text()
    assert "Against direct" in result.stdout


def test_bench_refuses_a_malformed_user_list_and_a_stopped_fleet(cli: Cli) -> None:
    result = cli("bench", "gateway", "--users", "1,zero")
    assert result.returncode == 1 and "where: --users" in result.stderr and "Traceback" not in result.stderr
    for args, where in [
        (["--alternative", "no-url"], "--alternative"),
        (["--alternative-key", "mine"], "--alternative-key"),
        (["--gateway-key", "admin"], "--gateway-key"),
        (["--alternative", "lane=http://127.0.0.1:30080", "--charge", "other=30081"], "--charge"),
        (["--alternative", "lane=http://127.0.0.1:30080", "--charge", "lane=high"], "--charge"),
    ]:
        result = cli("bench", "gateway", *args)  # refused before it looks for a fleet: none runs here
        assert result.returncode == 1 and f"where: {where}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    result = cli("bench", "gateway")
    assert result.returncode == 1 and "llmfleet up" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("end", ["", "\n", "\n\n"])
def test_a_run_is_appended_as_its_own_section_after_a_hand_edited_end(tmp_path: Path, end: str) -> None:
    results = tmp_path / "gateway.md"
    results.write_text("# Results\n\nA paragraph written by hand." + end)
    bench.append_results(results, "## 2026-11-24 00:35 UTC\n\n- cores: 2\n")
    assert results.read_text() == "# Results\n\nA paragraph written by hand.\n\n## 2026-11-24 00:35 UTC\n\n- cores: 2\n"
