"""`llmfleet tune`'s decisions, from sweep figures: which concurrency it keeps, when it refuses, what it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, STACK_MODEL, Stack

from llmfleet.errors import FleetError
from llmfleet.ops import tune
from llmfleet.plan.schema import Plan, cpu_tiny_plan, load_plan


def level(per_server: int, meets: bool = True, errors: float = 0.0) -> tune.Level:
    return tune.Level(per_server, per_server * 2, 100.0 * per_server, 10.0, 50.0 * per_server, errors, meets)


def test_the_highest_level_that_meets_the_objectives_is_chosen() -> None:
    assert tune.choose("m", (level(1), level(2), level(4), level(8, meets=False)), 0.01) == 4


def test_a_level_that_passes_above_a_failed_one_is_noise_not_capacity() -> None:
    assert tune.choose("m", (level(1), level(2, meets=False), level(4)), 0.01) == 1


def test_a_fleet_that_errors_under_load_is_refused_with_the_level_named() -> None:
    with pytest.raises(FleetError) as refused:
        tune.choose("m", (level(1), level(2, errors=0.2)), 0.01)
    assert "20.0% of requests at 2 per server" in refused.value.what
    assert "SLO_ERROR_RATE" in refused.value.what


def test_a_fleet_that_misses_the_objectives_at_one_request_says_which_to_relax() -> None:
    with pytest.raises(FleetError) as refused:
        tune.choose("m", (level(1, meets=False), level(2)), 0.01)
    assert refused.value.where is not None and "SLO_TTFT_P95_SECONDS" in refused.value.where


@pytest.mark.parametrize(
    ("max_num_seqs", "asked", "levels"),
    [(16, (), (1, 2, 4, 8, 16)), (12, (), (1, 2, 4, 8, 12)), (1, (), (1,)), (16, (2, 6), (2, 6))],
)
def test_levels_never_go_above_the_servers_max_num_seqs(max_num_seqs: int, asked: tuple, levels: tuple) -> None:
    assert tune.levels_for(max_num_seqs, asked) == levels


def test_levels_above_max_num_seqs_are_refused_saying_why() -> None:
    with pytest.raises(FleetError) as refused:
        tune.levels_for(8, (4, 16))
    assert "queue" in refused.value.what and refused.value.where == "--levels"


@pytest.mark.parametrize("text", ["4,2", "0,1", "a,b", "1,1"])
def test_malformed_levels_name_the_flag(text: str) -> None:
    with pytest.raises(FleetError) as refused:
        tune.parse_levels(text)
    assert refused.value.where == "--levels"


def finding(chosen: int) -> tune.Finding:
    return tune.Finding("fleet-tiny", 2, 16, chosen, (level(1), level(2), level(4, meets=False)))


def test_the_tuned_plan_keeps_its_comments_and_a_second_tune_replaces_the_first_block(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("# My own note about this plan.\n" + yaml.safe_dump(cpu_tiny_plan().model_dump()))
    slo = (2.0, 0.1, 0.01)
    tune.write(path, cpu_tiny_plan(), [finding(2)], slo)
    tune.write(path, load_plan(path, "fleet.yaml"), [finding(4)], slo)
    text = path.read_text()
    assert text.startswith("# My own note about this plan.\n")
    assert text.count("Tuned by `llmfleet tune`") == 1
    assert "max_num_seqs 16 -> 4 per server" in text and "16 -> 2" not in text
    assert "4 per server: TTFT p95 400 ms, ITL p95 10 ms, 200 tokens/s, errors 0.0%: misses" in text
    plan = Plan.model_validate(yaml.safe_load(text))
    assert [s.max_num_seqs for s in plan.servers] == [4, 4]


def test_servers_of_one_model_are_tuned_together() -> None:
    assert tune.servers_of(cpu_tiny_plan()) == {"fleet-tiny": (2, 16)}


@pytest.mark.stack
def test_tune_sweeps_the_running_fleet_and_writes_the_knee_into_the_plan(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "tuned.yaml"
    # Objectives this 2-core host meets at every level of the sweep (fleet-tiny, 16 tokens), so the outcome does not
    # ride on its noise (.env's 100 ms ITL was missed at 1 request per server in one CI run): the knee is then the
    # sweep's top, 4, below the plan's 16. Where a level misses is the unit tests' part, on fixed figures.
    env = {**stack.cli.env, "SLO_TTFT_P95_SECONDS": "60", "SLO_ITL_P95_SECONDS": "10"}
    result = subprocess.run(
        [sys.executable, "-m", "llmfleet", "tune", "--levels", "1,2,4", "--duration", "6s", "--max-tokens", "16",
         "--out", str(out), "--no-restart", "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (model,) = report["models"]
    assert model["model"] == STACK_MODEL and model["servers"] == 2 and model["before"] == 16
    assert [lv["per_server"] for lv in model["levels"]] == [1, 2, 4]
    assert [lv["users"] for lv in model["levels"]] == [2, 4, 8]
    assert all(lv["output_tokens_per_s"] > 0 and lv["ttft_p95_ms"] is not None for lv in model["levels"])
    assert model["chosen"] == 4  # every level met the objectives: the highest measured, below the plan's 16
    text = out.read_text()
    assert "against TTFT p95 <= 60 s, ITL p95 <= 10 s" in text  # the objectives of the environment, as Compose reads
    assert f"max_num_seqs 16 -> {model['chosen']} per server" in text
    tuned = load_plan(out, str(out))  # a valid plan, with the measured concurrency on both servers
    assert [s.max_num_seqs for s in tuned.servers] == [model["chosen"]] * 2
    assert "The running fleet is unchanged" in result.stderr  # --no-restart: nothing was restarted
