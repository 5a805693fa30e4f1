"""Layouts compared (issue 19): one replica per card, tensor-parallel pairs, 4-way groups, on the seeds' hosts.

The seeds' hosts are golden tests of the choice: 2 x 24 GB with Qwen3-32B-AWQ (a pair), 4 x RTX 6000 Ada with
Qwen3-32B-AWQ and 2 x RTX 3060 with Qwen2.5-7B-Instruct-AWQ (one replica per card).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import Cli

from llmfleet.plan import gpuspec, layouts, planner
from llmfleet.plan.budget import GIB
from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.schema import load_plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT)


def comparison(spec: str, model: str, catalog) -> layouts.Comparison:
    (found,) = planner.plan_gpus(spec, None, catalog, model)[""].comparisons
    return found


def by_kind(c: layouts.Comparison) -> dict[str, layouts.Layout]:
    return {x.kind: x for x in c.layouts}


# --- The seeds' hosts


def test_two_24gib_cards_serve_qwen3_32b_awq_as_one_pair_with_32k_for_two_requests(catalog) -> None:
    c = comparison("2x24GiB", "Qwen3-32B-AWQ", catalog)
    kinds = by_kind(c)
    assert c.chosen is kinds["pairs"] and c.usable_context == 32768
    # One replica per card would serve 2,048 tokens: refused, with the reason, not picked.
    assert kinds["replicas"].context == 2048 and "not of the usable 32,768" in (kinds["replicas"].problem or "")
    pair = kinds["pairs"]
    assert pair.context == 32768 and pair.kv_tokens >= 2 * 32768 and pair.max_num_seqs >= 32
    assert pair.kv_tokens > 5 * kinds["replicas"].kv_tokens  # the weights held once leave several times the cache
    host = planner.plan_gpus("2x24GiB", None, catalog, "Qwen3-32B-AWQ")[""]
    assert [s.gpus for s in host.plan.servers] == [[0, 1]] and host.plan.servers[0].max_model_len == 32768


def test_four_rtx6000ada_keep_one_qwen3_32b_awq_replica_per_card_as_pairs_gain_too_little(catalog) -> None:
    c = comparison("4x48GiB:RTX6000Ada", "Qwen3-32B-AWQ", catalog)
    kinds = by_kind(c)
    assert c.chosen is kinds["replicas"] and set(kinds) == {"replicas", "pairs", "4-way"}
    assert all(x.problem is None and x.context == 32768 for x in c.layouts)  # every layout gives 32k to two
    for kind in ("pairs", "4-way"):  # more KV cache and a faster single request, but not 1.5x the throughput
        assert kinds[kind].kv_tokens > kinds["replicas"].kv_tokens
        assert kinds[kind].tokens_per_s(c.load) < layouts.FEWER_SERVERS_GAIN * kinds["replicas"].tokens_per_s(c.load)
    lines = c.lines()
    assert len(lines) == 3 and lines[0].endswith("- chosen") and "fewer servers must gain" in lines[1]


def test_two_rtx3060_keep_one_qwen25_7b_awq_replica_per_card(catalog) -> None:
    c = comparison("2x12GiB:RTX3060", "Qwen2.5-7B-Instruct-AWQ", catalog)
    kinds = by_kind(c)
    assert c.chosen is kinds["replicas"] and c.usable_context == 8192  # an instruct model: 8k is useful
    assert [len(s.cards) for s in kinds["replicas"].servers] == [1, 1] and kinds["replicas"].context == 32768
    assert kinds["pairs"].problem is None and "fewer servers must gain" in c.lines()[1]


# --- The rule


def test_four_12gib_cards_split_qwen3_32b_awq_four_ways_when_pairs_cannot_hold_it(catalog) -> None:
    c = comparison("4x12GiB:RTX3060", "Qwen3-32B-AWQ", catalog)
    kinds = by_kind(c)
    assert not kinds["replicas"].servers and not kinds["pairs"].servers
    assert c.chosen is kinds["4-way"] and c.chosen.context == 32768
    assert [s.gpus for s in planner.plan_gpus("4x12GiB:RTX3060", None, catalog, "Qwen3-32B-AWQ")[""].plan.servers] == [
        [0, 1, 2, 3]
    ]


def test_a_leftover_card_runs_its_own_replica_with_the_pairs_context(catalog) -> None:
    kinds = by_kind(comparison("3x24GiB", "Qwen3-14B-AWQ", catalog))
    assert [len(s.cards) for s in kinds["pairs"].servers] == [2, 1]
    assert {s.budget.max_model_len for s in kinds["pairs"].servers} == {32768}


def test_a_layout_below_the_usable_context_is_planned_only_with_a_note_saying_why(catalog) -> None:
    host = planner.plan_gpus("1x12GiB", None, catalog, "Qwen3-8B-AWQ")[""]
    assert host.plan.servers[0].max_model_len < 32768
    (note,) = [n for n in host.notes if "poor choice" in n]
    assert "Qwen3-8B-AWQ" in note and "32,768" in note and "Qwen3's model card" in note


def test_the_plans_usable_context_overrides_the_catalogs(catalog) -> None:
    host = planner.plan_gpus("2x24GiB", None, catalog, "Qwen3-32B-AWQ", usable={"Qwen3-32B-AWQ": 2048})[""]
    (c,) = host.comparisons
    assert c.usable_context == 2048 and c.usable_source == "usable_context in the plan"
    assert by_kind(c)["replicas"].problem is None
    assert host.plan.usable_context == {"Qwen3-32B-AWQ": 2048}  # written back into the plan


# --- The estimate


def test_one_request_alone_decodes_at_bandwidth_over_weight_bytes(catalog) -> None:
    model = catalog.models["Qwen2.5-7B-Instruct-AWQ"]
    step = layouts.decode_step(model, 1, 360, 1, 0)  # an RTX 3060, no KV cache read
    assert step.tokens_per_s == pytest.approx(360e9 / (model.weights_gib * GIB)) and step.comm_ms == 0


def test_a_pair_reads_half_the_weights_and_pays_two_pcie_all_reduces_per_layer(catalog) -> None:
    model = catalog.models["Qwen3-32B-AWQ"]
    one, two = layouts.decode_step(model, 1, 960, 1, 0), layouts.decode_step(model, 2, 960, 1, 0)
    latency_ms = model.layers * layouts.ALLREDUCES_PER_LAYER * layouts.ALLREDUCE_LATENCY_US[2] / 1e3
    assert two.comm_ms == pytest.approx(latency_ms, rel=0.05)
    assert two.ms - two.comm_ms == pytest.approx(one.ms / 2)


def test_card_bandwidth_comes_from_the_card_name_and_an_unknown_card_gets_the_stated_default() -> None:
    assert gpuspec.bandwidth("NVIDIA GeForce RTX 3060", 12) == (360, True)
    assert gpuspec.bandwidth("RTX6000Ada", 48) == (960, True)
    assert gpuspec.bandwidth("NVIDIA A100-SXM4-80GB", 80) == (gpuspec.A100_80GB_GBS, True)
    assert gpuspec.bandwidth("24 GiB GPU", 24) == (gpuspec.DEFAULT_BANDWIDTH_GBS, False)


# --- What the user sees


def test_explain_shows_one_line_per_layout_and_json_the_comparison(cli: Cli) -> None:
    result = cli("plan", "--gpus", "2x24GiB", "--model", "Qwen3-32B-AWQ", "--json", check=True)
    (found,) = json.loads(result.stdout)["layouts"]
    assert [x["kind"] for x in found["layouts"]] == ["replicas", "pairs"] and found["layouts"][1]["chosen"]
    assert found["layouts"][0]["problem"] and found["layouts"][1]["bandwidth_assumed"] is True
    text = cli("plan", "--gpus", "2x24GiB", "--model", "Qwen3-32B-AWQ", "--explain", "--out", "/dev/null", check=True)
    assert "replicas (2 x TP1): 2,048 context" in text.stdout and "refused:" in text.stdout
    assert "pairs (1 x TP2): 32,768 context" in text.stdout and "- chosen" in text.stdout
    assert "Qwen3-32B-AWQ (TP 2)" in text.stdout  # whole names, even into a pipe


def test_usable_context_in_fleet_yaml_is_read_back_and_kept_when_planning_again(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "vllm").mkdir(parents=True)
    shutil.copy(ROOT / "vllm" / "catalog.yaml", root / "vllm" / "catalog.yaml")
    cli.env["LLMFLEET_ROOT"] = str(root)
    cli("plan", "--gpus", "2x24GiB", "--model", "Qwen3-32B-AWQ", "--write", check=True)
    plan = yaml.safe_load((root / "fleet.yaml").read_text())
    (root / "fleet.yaml").write_text(yaml.safe_dump(plan | {"usable_context": {"Qwen3-32B-AWQ": 16384}}))
    result = cli("plan", "--gpus", "2x24GiB", "--model", "Qwen3-32B-AWQ", "--explain", "--write", check=True)
    assert "usable context 16,384;" in result.stdout
    assert load_plan(root / "fleet.yaml").usable_context == {"Qwen3-32B-AWQ": 16384}
