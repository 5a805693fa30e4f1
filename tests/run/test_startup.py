"""Start-up phases and failure summaries, read from real vLLM logs.

tests/data/vllm-logs/ holds real output of vLLM 0.32.0's CPU build on this machine kind: a start that became
healthy (cpu-ready.log) and starts that failed (a bad flag, an impossible --max-model-len, a KV cache too small,
a model folder that does not exist, a model not cached with HF_HUB_OFFLINE=1, an unreachable Hub, a taken port).
A log only grows, so every prefix of cpu-ready.log is what the file held at some moment of that start.

No GPU start can run here: the GPU-only messages (CUDA graphs, CUDA out of memory, free VRAM) are written from
the format strings in vLLM's and torch's source, with the values a 12 GiB RTX 3060 would put in them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from llmfleet.run import startup
from llmfleet.run.startup import DOWNLOADING, FAILED, LOADING, READY, STARTING, WARMING_UP

LOGS = Path(__file__).resolve().parents[1] / "data" / "vllm-logs"
READY_LOG = (LOGS / "cpu-ready.log").read_text()


def upto(marker: str, text: str = READY_LOG) -> str:
    """The log as it was just after the first line containing `marker` was written."""
    end = text.index("\n", text.index(marker)) + 1
    return text[:end]


def test_a_fresh_process_is_starting():
    assert startup.phase("", healthy=False).name == STARTING
    assert startup.phase(upto("non-default args"), healthy=False).name == STARTING


def test_phases_follow_a_real_cpu_start():
    assert startup.phase(upto("Resolved architecture"), False) == startup.Phase(STARTING, "model config read")
    assert startup.phase(upto("Starting to load model"), False).name == LOADING
    assert startup.phase(upto("CPU KV cache size"), False) == startup.Phase(WARMING_UP, "KV cache allocated")
    assert startup.phase(upto("init engine (profile"), False) == startup.Phase(WARMING_UP, "engine ready")
    assert startup.phase(upto("Starting vLLM server on"), False) == startup.Phase(WARMING_UP, "API server starting")


def test_healthy_is_ready_whatever_the_log_says():
    assert startup.phase(READY_LOG, healthy=True).name == READY
    assert startup.phase("", healthy=True).name == READY


def test_unfinished_download_while_loading_is_downloading():
    loading = upto("Starting to load model")
    found = startup.phase(loading, False, partial_bytes=3 * 1024**3)
    assert found.name == DOWNLOADING
    assert found.detail == "3.00 GiB in unfinished files"


def test_shard_progress_shows_while_loading_weights():
    # weight_utils.py:1094's tqdm desc, as tqdm redraws it with carriage returns into the log file
    bar = (
        "Loading safetensors checkpoint shards:   0% Completed | 0/2 [00:00<?, ?it/s]\r"
        "Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:04<00:04,  4.1s/it]\n"
    )
    found = startup.phase(upto("Starting to load model") + bar, False, partial_bytes=0)
    assert found == startup.Phase(LOADING, "shard 1/2")


def test_cuda_graph_capture_shows_its_progress():
    # gpu_model_runner.py:6657 tqdm desc "Capturing CUDA graphs ({}, {})"
    bar = "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE):  45%|████▌     | 30/67 [00:03<00:04,  9.1it/s]\n"
    found = startup.phase(upto("CPU KV cache size") + bar, False)
    assert found == startup.Phase(WARMING_UP, "capturing CUDA graphs 30/67")


def test_a_restart_is_judged_by_its_own_attempt():
    # Docker keeps every restart's output in one log: a failed attempt, then a new one loading.
    failed_then_loading = (LOGS / "cpu-max-model-len.log").read_text() + upto("Starting to load model")
    assert startup.phase(failed_then_loading, False).name == LOADING
    assert startup.diagnose(failed_then_loading) is None


def test_a_failed_start_is_failed_with_its_cause():
    found = startup.phase((LOGS / "cpu-bad-flag.log").read_text(), False)
    assert found.name == FAILED
    assert "--max-modle-len" in found.detail


def test_phase_of_a_log_file_says_how_long_it_has_been_quiet(tmp_path):
    log = tmp_path / "vllm-gpu0.log"
    log.write_text(upto("Starting to load model"))
    minutes_ago = time.time() - 300
    os.utime(log, (minutes_ago, minutes_ago))
    found = startup.phase_of(log, healthy=False)
    assert found.name == LOADING
    assert found.quiet_s is not None and found.quiet_s >= 299
    assert str(found) == f"loading weights, no progress for {found.quiet_s:.0f} s"


def test_phase_of_sees_a_download_growing_in_the_hf_cache(tmp_path):
    log = tmp_path / "vllm-gpu0.log"
    log.write_text(upto("Starting to load model"))
    old = time.time() - 600
    os.utime(log, (old, old))  # vLLM logs nothing while it downloads
    blobs = tmp_path / "hub" / "models--Qwen--Qwen2.5-7B-Instruct-AWQ" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "0a1b2c.incomplete").write_bytes(b"\0" * 4096)  # written just now: the download is moving
    found = startup.phase_of(log, False, tmp_path / "hub", "Qwen/Qwen2.5-7B-Instruct-AWQ")
    assert found.name == DOWNLOADING
    assert found.quiet_s is not None and found.quiet_s < 60
    assert "no progress" not in str(found)


# --- failures from real logs -----------------------------------------------------------------------------------------


def diagnosis(name: str) -> startup.Diagnosis:
    found = startup.diagnose_file(LOGS / name)
    assert found is not None and found.known, found
    return found


def test_a_successful_start_has_no_diagnosis():
    assert startup.diagnose(READY_LOG) is None


def test_bad_flag_is_named():
    d = diagnosis("cpu-bad-flag.log")
    assert d.what == "vLLM does not know the flag(s) --max-modle-len"
    assert "extra_args" in d.fix
    assert d.line == "api_server.py: error: unrecognized arguments: --max-modle-len"


def test_impossible_max_model_len_says_the_models_limit():
    d = diagnosis("cpu-max-model-len.log")
    assert d.what == (
        "max_model_len 999999 is beyond what the model supports (max_position_embeddings=4096 in its config.json)"
    )
    assert "to 4096 or less" in d.fix


def test_kv_cache_too_small_says_the_length_that_fits():
    d = diagnosis("cpu-kv-cache-too-small.log")
    assert d.what == "a request of max_model_len 8000000 tokens needs 3.81 GiB of KV cache; only 1.0 GiB is left for it"
    assert "at most 2097024" in d.fix
    assert "VLLM_CPU_KVCACHE_SPACE" in d.fix
    named = startup.diagnose_file(LOGS / "cpu-kv-cache-too-small.log", server="servers[1]")
    assert named is not None and named.fix.startswith("set servers[1].max_model_len in fleet.yaml")


def test_missing_model_folder_is_named():
    d = diagnosis("cpu-missing-model-dir.log")
    assert "/nonexistent/model-dir does not exist" in d.what


def test_model_not_cached_in_offline_mode_says_download_first():
    d = diagnosis("cpu-not-cached-offline.log")
    assert "offline mode" in d.what and "llmfleet download" in d.fix


def test_unreachable_hub_says_download_first_or_use_the_mirror():
    d = diagnosis("cpu-no-network.log")
    assert d.what == "the server could not reach http://127.0.0.1:9 and the model is not in the cache"
    assert "hf-mirror.com" in d.fix


def test_taken_port_is_named():
    assert diagnosis("cpu-port-in-use.log").what == "the server's port is already in use"


# --- GPU-only failures, from the source's format strings ----------------------------------------------------------

ENGINE = "(EngineCore pid=812) ERROR 11-23 14:03:14 [core.py:1510] "


@pytest.mark.parametrize(
    ("line", "what"),
    [
        (  # torch c10/cuda/CUDACachingAllocator.cpp
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.02 GiB. GPU 0 has a total capacity of "
            "11.76 GiB of which 412.00 MiB is free. Including non-PyTorch memory, this process has 11.33 GiB in use.",
            "GPU 0 ran out of memory: 1.02 GiB more was needed, 412.00 MiB of 11.76 GiB was free",
        ),
        (  # v1/worker/utils.py:763
            "ValueError: Free memory on device cuda:0 (6.1/11.76 GiB) on startup is less than desired GPU memory "
            "utilization (0.9, 10.58 GiB). Decrease GPU memory utilization or reduce GPU memory used by other "
            "processes.",
            "only 6.1 of 11.76 GiB was free on the GPU at start, and the plan asks vLLM for 0.9 of it (10.58 GiB): "
            "another process holds the rest",
        ),
        (  # v1/core/kv_cache_utils.py:1011
            "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
            "initializing the engine (this flag also controls CPU memory reservation on the CPU backend, despite its "
            "name).",
            "the weights and activations left no memory for the KV cache",
        ),
        (  # gpu_model_runner.py:5991
            "RuntimeError: CUDA out of memory occurred when warming up sampler with 256 dummy requests. Please try "
            "lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine.",
            "the GPU ran out of memory warming up the sampler for 256 concurrent requests",
        ),
        (  # config/vllm.py:903
            "ValueError: The quantization method awq is not supported for the current GPU. Minimum capability: 75. "
            "Current capability: 70.",
            "this card (compute capability 70) cannot run awq models (they need 75 or higher)",
        ),
        (  # platforms/cuda.py:649
            "ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your Tesla T4 "
            "GPU has compute capability 7.5. You can use float16 instead by explicitly setting the `dtype` flag in "
            "CLI, for example: --dtype=half.",
            "the Tesla T4 cannot compute in bfloat16",
        ),
        (  # torch c10/cuda/CUDAFunctions.cpp
            "RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and "
            "installed a driver from http://www.nvidia.com/Download/index.aspx",
            "the server found no NVIDIA driver",
        ),
        (  # distributed/device_communicators/shm_broadcast.py:254
            "RuntimeError: Insufficient space in /dev/shm for shared-memory allocation: 160 MiB required, 64 MiB free. "
            "Increase /dev/shm (e.g. --shm-size or --ipc=host).",
            "/dev/shm is too small: vLLM needs 160 MiB there, 64 MiB is free",
        ),
    ],
)
def test_gpu_failures_are_summarised(line, what):
    log = upto("Starting to load model") + ENGINE + line + "\n"
    log += ENGINE.replace("core.py:1510", "utils.py:1432") + "RuntimeError: Engine core initialization failed.\n"
    found = startup.diagnose(log)
    assert found is not None and found.known
    assert found.what == what
    assert found.line.endswith(line)


def test_an_unknown_failure_gives_its_last_error_line_not_the_wrapper():
    log = (
        upto("Starting to load model")
        + ENGINE
        + "KeyError: 'model.layers.0.self_attn.qkv_proj.weight'\n"
        + "RuntimeError: Engine core initialization failed. See root cause above. "
        + "Failed core proc(s): {'EngineCore': 1}\n"
    )
    found = startup.diagnose(log)
    assert found is not None and not found.known
    assert found.what == "KeyError: 'model.layers.0.self_attn.qkv_proj.weight'"


def test_unfinished_files_older_than_the_log_are_leftovers_not_a_download(tmp_path):
    blobs = tmp_path / "hub" / "models--Qwen--Qwen2.5-7B-Instruct-AWQ" / "blobs"
    blobs.mkdir(parents=True)
    leftover = blobs / "0a1b2c.incomplete"
    leftover.write_bytes(b"\0" * 4096)
    yesterday = time.time() - 86400
    os.utime(leftover, (yesterday, yesterday))  # an earlier, interrupted download
    log = tmp_path / "vllm-gpu0.log"
    log.write_text(upto("Starting to load model"))  # this start, loading now
    found = startup.phase_of(log, False, tmp_path / "hub", "Qwen/Qwen2.5-7B-Instruct-AWQ")
    assert found.name == LOADING
