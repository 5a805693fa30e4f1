"""Where models live, and what a vLLM server is told so it finds the same files `llmfleet download` stored."""

from __future__ import annotations

from modelfiles import REPO, hf_cache

from llmfleet.models import hfcache
from llmfleet.models.hfcache import HubSettings


def test_native_servers_get_hf_cache_as_hf_home_and_the_mirror(tmp_path):
    env = hfcache.server_env(HubSettings(HF_CACHE=str(tmp_path), HF_ENDPOINT="https://hf-mirror.com/"))
    assert env == {"HF_HOME": str(tmp_path), "HF_ENDPOINT": "https://hf-mirror.com", "HF_HUB_OFFLINE": "0"}


def test_modelscope_source_points_servers_at_the_same_cache(tmp_path):
    hub = HubSettings(HF_CACHE=str(tmp_path), VLLM_USE_MODELSCOPE=True, HF_HUB_OFFLINE=True)
    native = hfcache.server_env(hub)
    assert native["VLLM_USE_MODELSCOPE"] == "True"
    assert native["MODELSCOPE_CACHE"] == f"{tmp_path}/modelscope" == str(hub.modelscope)
    assert native["HF_HUB_OFFLINE"] == "1"
    container = hfcache.server_env(hub, in_container=True)
    assert container["MODELSCOPE_CACHE"] == "/root/.cache/huggingface/modelscope"  # HF_CACHE is mounted there


def test_a_token_is_passed_only_when_set(tmp_path):
    assert "HF_TOKEN" not in hfcache.server_env(HubSettings(HF_CACHE=str(tmp_path), HF_TOKEN=""))
    assert hfcache.server_env(HubSettings(HF_CACHE=str(tmp_path), HF_TOKEN="hf_x"))["HF_TOKEN"] == "hf_x"


def test_cached_bytes_separates_finished_and_unfinished_blobs(tmp_path):
    cached = hf_cache(tmp_path)
    finished = sum(b.stat().st_size for b in (cached.repo_folder / "blobs").iterdir())
    (cached.repo_folder / "blobs" / "abc.incomplete").write_bytes(b"\0" * 1000)
    have = hfcache.cached_bytes(tmp_path / "hub", REPO)
    assert (have.complete, have.partial, have.partial_files) == (finished, 1000, 1)
    assert have.newest_partial_write is not None


def test_snapshot_dir_follows_refs_main(tmp_path):
    cached = hf_cache(tmp_path)
    assert hfcache.snapshot_dir(tmp_path / "hub", REPO) == cached.snapshot
    assert hfcache.snapshot_dir(tmp_path / "hub", "Qwen/Absent") is None
