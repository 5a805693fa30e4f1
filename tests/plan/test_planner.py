"""The planner: which model, context and concurrency each card gets, the refusals, and the golden renders.

Golden renders: tests/golden/<host>/ holds, for each host below, the plan as `llmfleet plan --json` prints it and the
three files `llmfleet render` writes from it. A test fails when a fresh plan or render differs. After a deliberate
change to the planner, the catalog or a renderer, regenerate them and review the diff:

    LLMFLEET_UPDATE_GOLDEN=1 .venv/bin/pytest tests/plan/test_planner.py -k golden
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import Cli

from llmfleet.errors import FleetError
from llmfleet.plan import description, planner
from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.gpuspec import parse_spec
from llmfleet.plan.schema import load_plan
from llmfleet.render import compose, gateway, prometheus

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
HOSTS = {  # golden name -> (--gpus, --model)
    "2x12GiB-RTX3060": ("2x12GiB:RTX3060", None),
    "1x12GiB": ("1x12GiB", None),
    "1x24GiB": ("1x24GiB", None),
    "4x48GiB-RTX6000Ada": ("4x48GiB:RTX6000Ada", None),
    "1x80GiB-H100": ("1x80GiB:H100", None),
    "1x24GiB+1x12GiB": ("1x24GiB,1x12GiB", None),
    "no-gpu": ("none", None),
    "2x24GiB-Qwen3-32B-AWQ": ("2x24GiB", "Qwen3-32B-AWQ"),  # issue 19: one tensor-parallel pair
}
RULES = ["/etc/prometheus/rules/*.yaml"]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT)


def host_plan(spec: str, catalog, model: str | None = None) -> planner.HostPlan:
    return planner.plan_gpus(spec, None, catalog, model)[""]


def only(spec: str):
    (gpu,) = parse_spec(spec).pools[""]
    return gpu


# --- What the planner chooses


def test_two_rtx3060_serve_qwen25_7b_awq_as_one_model_group_with_a_defensible_context(cli: Cli) -> None:
    result = cli("plan", "--gpus", "2x12GiB", "--json", check=True)
    plan = json.loads(result.stdout)
    assert plan["model_groups"] == {"Qwen2.5-7B-Instruct-AWQ": ["vllm-gpu0", "vllm-gpu1"]}
    for gpu in plan["gpus"]:
        budget = gpu["budget"]
        # The model's full native context, two such requests at once, and a dozen or more chat-sized requests.
        assert gpu["max_model_len"] == 32768 and budget["full_length_sequences"] >= 2
        assert gpu["max_num_seqs"] >= 8 and gpu["max_num_seqs"] * 2048 <= budget["kv_tokens"]
        assert "--quantization" not in gpu["vllm_args"] and gpu["kernel"] == "awq_marlin"


def test_plan_writes_fleet_yaml_only_when_asked_with_write(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "project"  # a project of its own: never the committed fleet.yaml
    (root / "vllm").mkdir(parents=True)
    shutil.copy(ROOT / "vllm" / "catalog.yaml", root / "vllm" / "catalog.yaml")
    cli.env["LLMFLEET_ROOT"] = str(root)
    cli("plan", "--gpus", "2x12GiB", "--json", check=True)
    assert not (root / "fleet.yaml").exists()
    shown = cli("plan", "--gpus", "2x12GiB", check=True)
    assert not (root / "fleet.yaml").exists()
    assert "llmfleet plan --gpus 2x12GiB --write" in shown.stderr  # says how to write it
    written = cli("plan", "--gpus", "2x12GiB", "--write", check=True)
    assert load_plan(root / "fleet.yaml").model_groups() == {"Qwen2.5-7B-Instruct-AWQ": ["vllm-gpu0", "vllm-gpu1"]}
    assert f"wrote {root / 'fleet.yaml'}" in written.stderr


def test_plan_out_writes_that_file_and_leaves_fleet_yaml_alone(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "vllm").mkdir(parents=True)
    shutil.copy(ROOT / "vllm" / "catalog.yaml", root / "vllm" / "catalog.yaml")
    (root / "fleet.yaml").write_text("# the user's own plan\n")
    cli.env["LLMFLEET_ROOT"] = str(root)
    cli("plan", "--gpus", "2x12GiB", "--out", str(tmp_path / "other.yaml"), check=True)
    assert load_plan(tmp_path / "other.yaml").model_groups() == {"Qwen2.5-7B-Instruct-AWQ": ["vllm-gpu0", "vllm-gpu1"]}
    assert (root / "fleet.yaml").read_text() == "# the user's own plan\n"


def test_node_pools_are_written_with_out_never_with_write(cli: Cli) -> None:
    result = cli("plan", "--gpus", "pool-a=2x12GiB", "--write")
    assert result.returncode == 1 and "--out kubernetes/plans/NAME.yaml" in result.stderr


def test_four_48gib_cards_serve_qwen3_32b_awq(catalog) -> None:
    host = host_plan("4x48GiB", catalog)
    assert host.plan.model_groups() == {"Qwen3-32B-AWQ": [f"vllm-gpu{i}" for i in range(4)]}
    assert all(s.max_model_len == 32768 for s in host.plan.servers)


def test_the_best_ranked_model_that_keeps_the_full_context_wins(catalog) -> None:
    # On 12 GiB Qwen3-8B-AWQ (ranked higher) fits, but its KV cache holds less than one 32k request, so the
    # planner prefers Qwen2.5-7B-Instruct-AWQ, which keeps 32k for two requests at once.
    qwen3 = planner.size(catalog.models["Qwen3-8B-AWQ"], only("1x12GiB"))
    assert qwen3 is not None and qwen3.max_model_len < 32768
    assert catalog.models["Qwen3-8B-AWQ"].rank > catalog.models["Qwen2.5-7B-Instruct-AWQ"].rank
    assert planner.choose(catalog, only("1x12GiB")).model == "Qwen2.5-7B-Instruct-AWQ"
    # With room for both, the higher rank wins: FP8 on an 80 GiB H100.
    assert planner.choose(catalog, only("1x80GiB:H100")).model == "Qwen3-32B-FP8"


def test_context_steps_down_until_two_full_length_requests_fit(catalog) -> None:
    budget = planner.size(catalog.models["Qwen3-8B-AWQ"], only("1x12GiB"))
    assert budget is not None
    step_above = planner.CONTEXT_STEPS[planner.CONTEXT_STEPS.index(budget.max_model_len) - 1]
    assert 2 * budget.max_model_len <= budget.kv_tokens < 2 * step_above


def test_max_num_seqs_is_the_typical_requests_the_kv_cache_holds(catalog) -> None:
    for spec, model in HOSTS.values():
        for budget in host_plan(spec, catalog, model).budgets:
            if budget is None:
                continue
            assert budget.max_num_seqs % 8 == 0 and budget.max_num_seqs <= 256
            assert budget.max_num_seqs * 2048 <= budget.kv_tokens < (budget.max_num_seqs + 8) * 2048 or (
                budget.max_num_seqs == 256
            )


def test_every_planned_budget_fits_its_card(catalog) -> None:
    for spec, model in HOSTS.values():
        host = host_plan(spec, catalog, model)
        for i, budget in enumerate(host.budgets):
            if budget is None:
                continue
            assert budget.weights_gib + budget.runtime_gib + budget.kv_cache_gib <= budget.usable_gib + 1e-9
            assert budget.kv_tokens >= 2 * budget.max_model_len
            assert host.plan.budget(i, catalog) == budget  # the plan file reproduces the planner's budget


def test_a_mixed_host_gets_a_model_per_card_and_a_group_per_model(catalog) -> None:
    host = host_plan("1x24GiB,1x12GiB", catalog)
    assert host.plan.model_groups() == {"Qwen3-14B-AWQ": ["vllm-gpu0"], "Qwen2.5-7B-Instruct-AWQ": ["vllm-gpu1"]}


def test_no_gpu_gives_the_cpu_plan_and_says_so_plainly(catalog) -> None:
    host = host_plan("none", catalog)
    assert host.plan.device == "cpu" and host.plan.model_groups() == {"smollm2-135m": ["vllm-cpu0", "vllm-cpu1"]}
    assert "the CPU plan" in host.notes[0] and "SmolLM2 135M Instruct" in host.notes[0]


def test_a_host_whose_driver_answers_with_no_gpu_gets_the_cpu_plan_with_the_reason(catalog) -> None:
    from llmfleet.plan.hardware import Inventory

    hosts = planner.plan_gpus(None, Inventory((), None, "no NVIDIA driver answered (Driver Not Loaded)"), catalog)
    assert hosts[""].plan.device == "cpu" and "Driver Not Loaded" in hosts[""].notes[0]


def test_a_card_busy_with_something_else_is_planned_with_a_warning(catalog) -> None:
    from llmfleet.plan.hardware import GpuInfo

    busy = GpuInfo(0, "NVIDIA GeForce RTX 3060", 12.0, uuid="GPU-1", memory_free_gib=8.0, compute_capability=8.6)
    host = planner.plan_host([busy], catalog)
    assert host.plan.servers[0].model == "Qwen2.5-7B-Instruct-AWQ"
    assert any("only 8.0 GiB free" in note for note in host.notes)


def test_node_pools_are_planned_one_plan_each(cli: Cli) -> None:
    result = cli("plan", "--gpus", "pool-a=2x12GiB:RTX3060;pool-b=4x48GiB:RTX6000Ada", "--json", check=True)
    pools = json.loads(result.stdout)
    assert {name: list(p["model_groups"]) for name, p in pools.items()} == {
        "pool-a": ["Qwen2.5-7B-Instruct-AWQ"],
        "pool-b": ["Qwen3-32B-AWQ"],
    }


# --- --model, and what is refused


def test_fp16_qwen25_7b_on_a_12gib_card_is_refused_saying_by_how_much_and_what_fits(cli: Cli) -> None:
    result = cli("plan", "--gpus", "1x12GiB:RTX3060", "--model", "Qwen2.5-7B-Instruct", "--json")
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert "cannot hold Qwen2.5-7B-Instruct: it needs" in result.stderr
    assert "weights 14.2" in result.stderr and "GiB more than the 10.5 GiB vLLM may use" in result.stderr
    assert "e.g. Qwen2.5-7B-Instruct-AWQ" in result.stderr and "where: --model" in result.stderr


def test_asked_model_goes_on_every_card(catalog) -> None:
    host = host_plan("2x24GiB", catalog, model="Qwen2.5-7B-Instruct-AWQ")
    assert host.plan.model_groups() == {"Qwen2.5-7B-Instruct-AWQ": ["vllm-gpu0", "vllm-gpu1"]}


def test_a_model_too_big_for_one_card_is_split_over_two_of_the_same_size(catalog) -> None:
    host = host_plan("2x24GiB", catalog, model="Qwen3-32B-FP8")
    (server,) = host.plan.servers
    assert server.gpus == [0, 1] and server.tensor_parallel_size == 2
    assert host.plan.named_servers()[0][0] == "vllm-gpu0-1"
    assert host.budgets[0].kv_tokens >= 2 * server.max_model_len


def test_a_model_too_big_for_two_cards_is_refused_with_the_pair_named(catalog) -> None:
    with pytest.raises(FleetError) as caught:
        host_plan("2x12GiB", catalog, model="Qwen3-32B-AWQ")
    assert "GPUs 0 and 1" in caught.value.what and "GiB more than" in caught.value.what


def test_an_odd_card_without_a_partner_is_refused(catalog) -> None:
    with pytest.raises(FleetError) as caught:
        host_plan("3x24GiB", catalog, model="Qwen3-32B-FP8")
    assert "GPU 2" in caught.value.what and "no second card of the same size" in caught.value.what


def test_awq_on_a_card_older_than_its_kernels_is_refused(catalog) -> None:
    with pytest.raises(FleetError) as caught:
        host_plan("1x16GiB:V100", catalog, model="Qwen3-8B-AWQ")
    assert "compute capability 7.5" in caught.value.what and caught.value.where == "--model"


def test_the_synthetic_model_is_refused_on_gpus(catalog) -> None:
    with pytest.raises(FleetError) as caught:
        host_plan("1x12GiB", catalog, model="fleet-tiny")
    assert "smoke-test" in caught.value.what


def test_a_big_model_is_refused_for_the_cpu_build(catalog) -> None:
    with pytest.raises(FleetError) as caught:
        host_plan("none", catalog, model="Qwen3-8B")
    assert "Qwen2.5-0.5B-Instruct" in caught.value.fix
    assert host_plan("none", catalog, model="Qwen2.5-0.5B-Instruct").plan.servers[0].model == "Qwen2.5-0.5B-Instruct"


def test_a_plan_for_other_cards_than_this_hosts_is_refused_before_starting(catalog) -> None:
    plan = host_plan("2x12GiB:RTX3060", catalog).plan
    with pytest.raises(FleetError) as caught:
        planner.check_host(plan, parse_spec("1x12GiB:RTX3060").pools[""])
    assert "plans GPU 1" in caught.value.what and "llmfleet plan" in caught.value.fix
    assert caught.value.where == "fleet.yaml: gpus[1]"
    planner.check_host(plan, parse_spec("2x12GiB:RTX3060").pools[""])  # the host it was made for passes


# --- Writing fleet.yaml


def test_plan_writes_a_fleet_yaml_that_loads_back_with_its_budget_said(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "fleet.yaml"
    result = cli("plan", "--gpus", "4x48GiB:RTX6000Ada", "--out", str(out), check=True)
    assert "Qwen3-32B-AWQ" in result.stdout and f"wrote {out}" in result.stderr
    text = out.read_text()
    assert text.startswith("# The plan:") and "Budget per card" in text and "KV cache" in text
    plan = load_plan(out, "fleet.yaml")
    assert plan.model_groups() == {"Qwen3-32B-AWQ": [f"vllm-gpu{i}" for i in range(4)]}


# --- Golden renders


def render(spec: str, model: str | None, catalog) -> dict[str, str]:
    host = host_plan(spec, catalog, model)
    topology = compose.topology(host.plan)
    return {
        "plan.json": json.dumps(description.describe(host, catalog).to_json(), indent=2, ensure_ascii=False) + "\n",
        "services.yaml": compose.services(host.plan, catalog),
        "models.yaml": gateway.model_list(host.plan, topology),
        "prometheus.yml": prometheus.config(host.plan, topology, RULES),
    }


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_golden_render_matches_a_fresh_plan_and_render(name: str, catalog) -> None:
    fresh = render(*HOSTS[name], catalog)
    if os.environ.get("LLMFLEET_UPDATE_GOLDEN"):
        (GOLDEN / name).mkdir(parents=True, exist_ok=True)
        for file, text in fresh.items():
            (GOLDEN / name / file).write_text(text, encoding="utf-8")
    for file, text in fresh.items():
        golden = GOLDEN / name / file
        assert golden.is_file(), f"{golden} is missing; see this module's docstring to regenerate"
        assert golden.read_text(encoding="utf-8") == text, f"{golden} differs from a fresh render"


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_golden_compose_file_is_valid_for_compose(name: str, tmp_path: Path) -> None:
    from render.composetools import compose_config, copy_project  # tests/render/composetools.py

    project = copy_project(tmp_path)
    shutil.copy(GOLDEN / name / "services.yaml", project / "vllm" / "services.yaml")
    shutil.copy(GOLDEN / name / "models.yaml", project / "gateway" / "models.yaml")
    result = compose_config(project, "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    planned = json.loads((GOLDEN / name / "plan.json").read_text())["plan"]
    assert len([s for s in services if s.startswith("vllm-")]) >= len(planned["servers"])


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_golden_prometheus_config_is_valid_for_promtool(name: str, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (`make system-deps` installs it)")
    text = (GOLDEN / name / "prometheus.yml").read_text().replace("/tmp/gateway.key", str(tmp_path / "key"))
    (tmp_path / "key").write_text("k")
    (tmp_path / "prometheus.yml").write_text(text)
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_golden_gateway_models_route_each_group_to_its_servers(name: str) -> None:
    models = yaml.safe_load((GOLDEN / name / "models.yaml").read_text())["model_list"]
    groups = json.loads((GOLDEN / name / "plan.json").read_text())["model_groups"]
    routed: dict[str, list[str]] = {}
    for entry in models:
        routed.setdefault(entry["model_name"], []).append(entry["model_info"]["id"])
        assert entry["litellm_params"]["model"] == f"hosted_vllm/{entry['model_name']}"
    assert routed == groups


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_golden_vllm_flags_are_each_explained_and_cost_no_speed(name: str) -> None:
    text = (GOLDEN / name / "services.yaml").read_text()
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    assert "not explained" not in comments
    for service_name, service in yaml.safe_load(text)["services"].items():
        if not service_name.startswith("vllm-"):
            continue
        flags = [arg for arg in service["command"] if arg.startswith("--")]
        for flag in flags:
            assert f"#   {flag}" in comments, f"{service_name}: {flag} has no explanation"
        if "deploy" in service:  # a GPU service
            assert "--quantization" not in flags and "--enforce-eager" not in flags
            assert "--enable-prefix-caching" in flags
