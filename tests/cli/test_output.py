"""What llmfleet prints: tables keep whole names in a pipe or a file, and `--json` puts one JSON document on stdout
and nothing else (figures and progress go to stderr)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, Cli

from llmfleet import output
from llmfleet.cli import report
from llmfleet.ops.bench import Cell, Comparison
from llmfleet.ops.doctor.common import Check
from llmfleet.ops.drill import Drill, Figure
from llmfleet.plan.catalog import load_catalog
from llmfleet.run.startup import Phase
from llmfleet.run.state import ServiceStatus

LONG = "an-unusually-long-name-that-no-80-column-table-has-room-for-beside-the-others"


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 40-column setting, as a CI log or `COLUMNS=40` gives: off a terminal it must not cut anything."""
    monkeypatch.setenv("COLUMNS", "40")


@pytest.fixture
def own_project(cli: Cli, tmp_path: Path) -> Cli:
    """The CLI on a project of its own (the catalog only): a plan command never touches the committed fleet.yaml."""
    root = tmp_path / "project"
    (root / "vllm").mkdir(parents=True)
    shutil.copy(ROOT / "vllm" / "catalog.yaml", root / "vllm" / "catalog.yaml")
    shutil.copytree(ROOT / "requirements", root / "requirements")  # the packaged model's version is pinned there
    cli.env["LLMFLEET_ROOT"] = str(root)
    return cli


# --- 1. Output to a pipe or a file is never cut ------------------------------------------------------------------


def test_download_list_through_a_pipe_keeps_every_model_and_repo_whole(cli: Cli) -> None:
    cli.env["COLUMNS"] = "40"
    result = cli("download", "--list", check=True)
    for name, model in load_catalog(ROOT).models.items():
        assert name in result.stdout
        assert model.repo is None or model.repo in result.stdout
    assert "…" not in result.stdout


def test_plan_table_through_a_pipe_keeps_the_model_name_whole(own_project: Cli) -> None:
    own_project.env["COLUMNS"] = "40"
    result = own_project("plan", "--gpus", "2x12GiB", check=True)
    assert "Qwen2.5-7B-Instruct-AWQ" in result.stdout and "…" not in result.stdout


def test_node_pool_plan_table_through_a_pipe_keeps_names_whole(own_project: Cli) -> None:
    own_project.env["COLUMNS"] = "40"
    result = own_project("plan", "--gpus", "pool-a=2x12GiB:RTX3060;pool-b=4x48GiB:RTX6000Ada", check=True)
    assert "Qwen2.5-7B-Instruct-AWQ" in result.stdout and "Qwen3-32B-AWQ" in result.stdout
    assert "…" not in result.stdout


def test_status_doctor_and_bench_tables_off_a_terminal_keep_long_names_whole(
    narrow: None, capsys: pytest.CaptureFixture[str]
) -> None:
    report.status([ServiceStatus(LONG, 1234, 8000, True, False, Phase("loading weights", LONG))], as_json=False)
    report.doctor([Check(LONG, "warn", LONG, LONG)], as_json=False)
    cell = Cell(LONG, 16, 256, 15.0, 10, 0, 2560, 12.5, 30.0, 1.5)
    direct = Cell("direct", 16, 256, 15.0, 10, 0, 2560, 10.0, 25.0, None)
    report.bench_comparisons([Comparison(cell, direct)])
    printed = capsys.readouterr().out
    assert printed.count(LONG) == 6 and "…" not in printed


def test_on_a_narrow_terminal_table_cells_fold_instead_of_ending_in_an_ellipsis() -> None:
    terminal = output._Console(file=io.StringIO(), force_terminal=True, width=30, color_system=None)
    table = output.table("model", "repo")
    table.add_row(LONG, "Qwen/Qwen2.5-7B-Instruct-AWQ")
    terminal.print(table)
    printed = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in printed
    assert max(len(line) for line in printed.splitlines()) <= 30


# --- 2. `--json` prints one JSON document on stdout and nothing else ---------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--gpus", "2x12GiB", "--json"),
        ("plan", "--gpus", "pool-a=2x12GiB;pool-b=4x48GiB", "--json"),
        ("download", "--list", "--json"),
        ("status", "--json"),  # no fleet runs: an empty list, exit 1
    ],
)
def test_json_commands_print_only_json_on_stdout(own_project: Cli, args: tuple[str, ...]) -> None:
    result = own_project(*args)
    assert result.returncode in (0, 1), result.stderr
    json.loads(result.stdout)


def test_doctor_json_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    report.doctor([Check("disk", "pass", "plenty"), Check("docker", "warn", "none", "install it")], as_json=True)
    assert [c["name"] for c in json.loads(capsys.readouterr().out)] == ["disk", "docker"]


def test_drill_json_sends_the_running_figures_to_stderr_and_only_the_json_to_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown: list[Figure] = []
    drill = Drill("http://127.0.0.1:1", "key", "model", backends=None, on_figure=shown.append)  # type: ignore[arg-type]
    drill.figure("kill", "requests lost", 0, "0", True)
    assert shown == drill.figures  # the drill reports each figure through its callback, as fleet.drill passes it
    for figure in drill.figures:
        report.drill_figure(figure, as_json=True)
    report.drill_summary(drill.figures, as_json=True)
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [
        {"drill": "kill", "name": "requests lost", "value": 0, "target": "0", "met": True}
    ]
    assert "requests lost" in captured.err


def test_drill_without_json_shows_its_figures_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    report.drill_figure(Figure("kill", "requests lost", 0, "0", True))
    assert "requests lost" in capsys.readouterr().out


def test_soak_json_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    figures = {"requests": 10, "errors": 0, "gateway_memory_growth": 0.01}
    report.soak_figures(figures, as_json=True)
    assert json.loads(capsys.readouterr().out) == figures


def test_progress_warnings_and_steps_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    output.info("info")
    output.warn("careful")
    with output.step("a step"):
        pass
    with output.progress(["vllm-cpu0"]) as progress:
        progress.phase("vllm-cpu0", Phase("loading weights"))
        progress.done("vllm-cpu0")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "careful" in captured.err and "a step: done" in captured.err
