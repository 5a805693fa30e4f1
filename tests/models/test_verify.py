"""`llmfleet verify` against real files: safetensors shards written by the safetensors library, in a real HF cache
layout and in a --local-dir folder, cut short, removed and mismatched the way interrupted downloads leave them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modelfiles import COMMIT, REPO, SHARDS, TINY, hf_cache, local_dir, truncate

from llmfleet.errors import FleetError
from llmfleet.models import verify
from llmfleet.models.hfcache import HubSettings
from llmfleet.plan.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]


def problems(path: Path) -> dict[str, str]:
    return {p.file: p.what for p in verify.check_dir(path).problems}


def test_header_gives_the_exact_size_of_a_shard_written_by_safetensors():
    for shard in SHARDS:
        expected, tensors = verify.expected_size(TINY / shard)
        assert expected == (TINY / shard).stat().st_size
        assert tensors  # the header names the tensors the index puts there


def test_complete_local_dir_passes(tmp_path):
    result = verify.check_dir(local_dir(tmp_path / "model"))
    assert result.ok, result.problems
    assert result.shards == 2
    assert result.weight_bytes == sum((TINY / s).stat().st_size for s in SHARDS)


def test_complete_cache_snapshot_passes(tmp_path):
    cached = hf_cache(tmp_path)
    assert verify.check_dir(cached.snapshot).ok


def test_truncated_shard_in_cache_is_caught_without_network(tmp_path):
    cached = hf_cache(tmp_path)
    truncate(cached.blob(SHARDS[1]), by=10)
    size = (TINY / SHARDS[1]).stat().st_size
    assert problems(cached.snapshot) == {SHARDS[1]: f"truncated: {size - 10:,} of {size:,} bytes"}


def test_shard_cut_inside_its_header_is_caught(tmp_path):
    model = local_dir(tmp_path / "model")
    truncate(model / SHARDS[0], by=(TINY / SHARDS[0]).stat().st_size - 20)
    assert "truncated inside its header" in problems(model)[SHARDS[0]]


def test_shard_with_extra_bytes_is_corrupt(tmp_path):
    model = local_dir(tmp_path / "model")
    with (model / SHARDS[0]).open("ab") as f:
        f.write(b"\0" * 7)
    assert "corrupt" in problems(model)[SHARDS[0]]


def test_missing_blob_leaves_a_dangling_link_that_is_named(tmp_path):
    cached = hf_cache(tmp_path)
    cached.blob(SHARDS[0]).unlink()
    assert problems(cached.snapshot) == {SHARDS[0]: "missing: its link points at a blob that is not in the cache"}


def test_missing_shard_config_and_tokenizer_are_all_named(tmp_path):
    model = local_dir(tmp_path / "model")
    for name in (SHARDS[1], "config.json", "tokenizer.json"):
        (model / name).unlink()
    found = problems(model)
    assert found[SHARDS[1]] == "missing"
    assert found["config.json"] == "missing"
    assert found["tokenizer"].startswith("missing: none of tokenizer.json")


def test_truncated_tokenizer_json_is_caught(tmp_path):
    model = local_dir(tmp_path / "model")
    truncate(model / "tokenizer.json", by=100)
    assert "not valid JSON" in problems(model)["tokenizer.json"]


def test_shard_lacking_a_tensor_the_index_puts_there_is_caught(tmp_path):
    model = local_dir(tmp_path / "model")
    index = json.loads((model / verify.INDEX).read_text())
    index["weight_map"]["model.norm.weight"] = SHARDS[0]  # the tensor really sits in the second shard
    (model / verify.INDEX).write_text(json.dumps(index))
    assert "lacks 1 tensor(s) the index puts there, e.g. model.norm.weight" in problems(model)[SHARDS[0]]


def test_file_size_differing_from_the_hubs_listing_is_caught(tmp_path):
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

    cached = hf_cache(tmp_path)
    real = (TINY / "generation_config.json").stat().st_size
    # huggingface_hub's own writer, as snapshot_download leaves it beside the snapshot
    write_tree_cache(str(cached.repo_folder), COMMIT, {"generation_config.json": TreeCacheEntry(real + 5, "0" * 40)})
    assert problems(cached.snapshot) == {"generation_config.json": f"{real:,} bytes, the Hub lists {real + 5:,}"}


def test_verify_finds_a_catalog_model_in_the_cache_by_name(tmp_path):
    hf_cache(tmp_path)
    result = verify.verify("Qwen2.5-7B-Instruct-AWQ", load_catalog(ROOT), HubSettings(HF_CACHE=str(tmp_path)))
    assert result.ok and result.shards == 2


def test_verify_of_a_model_not_in_the_cache_says_to_download_it(tmp_path):
    with pytest.raises(FleetError) as e:
        verify.verify(REPO, load_catalog(ROOT), HubSettings(HF_CACHE=str(tmp_path)))
    assert "is not in the model cache" in e.value.what
    assert "llmfleet download" in e.value.fix


def test_verify_cli_exits_1_naming_the_missing_shard(cli, tmp_path):
    cached = hf_cache(tmp_path / "hf")
    cli.env["HF_CACHE"] = str(cached.home)
    ok = cli("verify", "Qwen2.5-7B-Instruct-AWQ")
    assert ok.returncode == 0, ok.stderr
    assert "complete" in ok.stdout

    cached.blob(SHARDS[1]).unlink()
    broken = cli("verify", "Qwen2.5-7B-Instruct-AWQ")
    assert broken.returncode == 1
    assert f"{SHARDS[1]}: missing" in broken.stderr
    assert "llmfleet download Qwen2.5-7B-Instruct-AWQ" in broken.stderr


def test_verify_cli_takes_a_folder(cli, tmp_path):
    model = local_dir(tmp_path / "model")
    truncate(model / SHARDS[0], by=1)
    result = cli("verify", str(model))
    assert result.returncode == 1
    assert f"{SHARDS[0]}: truncated" in result.stderr


def test_without_the_index_shard_names_still_reveal_a_missing_shard(tmp_path):
    model = local_dir(tmp_path / "model")
    (model / verify.INDEX).unlink()
    (model / SHARDS[1]).unlink()
    assert problems(model) == {SHARDS[1]: "missing"}
