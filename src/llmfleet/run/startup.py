"""What a starting vLLM server is doing, and why one failed, read from its log (and the HF cache, for downloads).

A big model takes minutes to start and a hung one looks the same from outside. So `up` and `status` show a phase
(starting, downloading, loading weights, warming up, ready) with its progress and how long the log or the
download has been quiet; and a server that exits is summarised from its log as one cause and one fix.

Every pattern below is written against the exact message vLLM 0.32.0 (or torch, or huggingface_hub) emits; the
comment above each names the source line. The CPU-build logs in tests/data/vllm-logs/ are real runs; GPU-only
messages (CUDA graphs, CUDA OOM) come from the same source files, which the CPU build ships too.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from llmfleet.models import hfcache

STARTING = "starting"
DOWNLOADING = "downloading"
LOADING = "loading weights"
WARMING_UP = "warming up"
READY = "ready"
FAILED = "failed"
QUIET_AFTER = 30.0  # seconds without a new log line before the phase says so


@dataclass(frozen=True)
class Phase:
    name: str  # one of the constants above
    detail: str = ""  # progress within the phase, e.g. "shard 2/5" or "1.3 GiB so far"
    quiet_s: float | None = None  # seconds since the log (or the download) last moved, when known

    def __str__(self) -> str:
        parts = [self.name]
        if self.detail:
            parts.append(self.detail)
        if self.quiet_s is not None and self.quiet_s >= QUIET_AFTER:
            parts.append(f"no progress for {self.quiet_s:.0f} s")
        return ", ".join(parts)


@dataclass(frozen=True)
class Diagnosis:
    what: str  # what happened, with the values from the log
    fix: str  # the likely fix, naming the setting to change
    line: str  # the log line it was read from, as evidence
    known: bool = True  # False: no known pattern matched; `what` is the last error line of the log


# --- which attempt -----------------------------------------------------------------------------------------------

# api_utils.py:286 `logger.info("non-default args: %s", ...)`: once per start. Docker's logs keep every restart's
# output, so only what follows the last one describes the current attempt.
_ATTEMPT = re.compile(r"non-default args: ")


def last_attempt(log_text: str) -> str:
    starts = [m.start() for m in _ATTEMPT.finditer(log_text)]
    if not starts:
        return log_text
    line_start = log_text.rfind("\n", 0, starts[-1]) + 1
    return log_text[line_start:]


# --- phases ------------------------------------------------------------------------------------------------------

# (pattern, phase, detail) in start-up order; the last one found in the log is where the server is.
_MARKERS: list[tuple[re.Pattern[str], str, str]] = [
    # model.py:733 logger.info("Resolved architecture: %s", ...): the config was read (downloaded if need be).
    (re.compile(r"Resolved architecture: "), STARTING, "model config read"),
    # v1/engine/core.py:133 "Initializing a V1 LLM engine (v%s) with config: ..."
    (re.compile(r"Initializing a V1 LLM engine"), STARTING, "engine starting"),
    # gpu_model_runner.py:5040 / cpu_model_runner.py:68 "Starting to load model %s...": weights are next; a model
    # not yet in the cache is downloaded first, silently (weight_utils.py:517 uses DisabledTqdm).
    (re.compile(r"Starting to load model "), LOADING, ""),
    # weight_utils.py:533 "Time spent downloading weights for %s: %.6f seconds"
    (re.compile(r"Time spent downloading weights for "), LOADING, "download finished"),
    # weight_utils.py:1094 tqdm desc "Loading safetensors checkpoint shards" (progress: see _SHARDS)
    (re.compile(r"Loading safetensors checkpoint shards"), LOADING, ""),
    # default_loader.py:502 "Loading weights took %.2f seconds"; gpu_model_runner.py:5150 "Model loading took ..."
    (re.compile(r"Loading weights took |Model loading took "), WARMING_UP, "profiling memory"),
    # compilation/backends.py:1167 "%sDynamo bytecode transform time"; :399 "Compiling a graph for compile range"
    (re.compile(r"Dynamo bytecode transform time|Compiling a graph for compile range"), WARMING_UP, "torch.compile"),
    # gpu_worker.py:760 "Available KV cache memory: %s GiB"; kv_cache_utils.py:2328 "%s KV cache size: %s tokens"
    (re.compile(r"Available KV cache memory: |KV cache size: [\d,]+ tokens"), WARMING_UP, "KV cache allocated"),
    # gpu_model_runner.py:6657 tqdm desc "Capturing CUDA graphs (%s, %s)" (progress: see _GRAPHS)
    (re.compile(r"Capturing CUDA graphs"), WARMING_UP, "capturing CUDA graphs"),
    # gpu_model_runner.py:6582 "Graph capturing finished in %.0f secs, took %.2f GiB"
    (re.compile(r"Graph capturing finished in "), WARMING_UP, "CUDA graphs captured"),
    # v1/engine/core.py:386-403 "init engine (profile, create kv cache, warmup model) took %.2f s"
    (re.compile(r"init engine \(profile, create kv cache, warmup model\) took"), WARMING_UP, "engine ready"),
    # entrypoints/launchers/api_server/entry.py:140 "Starting vLLM server on %s"; then uvicorn's startup lines
    (re.compile(r"Starting vLLM server on |Application startup complete"), WARMING_UP, "API server starting"),
]
# tqdm's line, e.g. "Loading safetensors checkpoint shards:  40% Completed | 2/5 [00:03<00:04, ...]"
_SHARDS = re.compile(r"Loading safetensors checkpoint shards[^:]*:\s*(\d+)% Completed \| (\d+)/(\d+)")
# e.g. "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE):  45%|████▌     | 30/67 [00:03<00:04, ...]"
_GRAPHS = re.compile(r"Capturing CUDA graphs[^:]*:\s*(\d+)%\|[^|]*\| (\d+)/(\d+)")


def phase(log_text: str, healthy: bool, partial_bytes: int = 0, quiet_s: float | None = None) -> Phase:
    """Where a vLLM server is in its start-up. `partial_bytes`: what its model's unfinished downloads hold in the
    HF cache (hfcache.cached_bytes(...).partial), since vLLM logs nothing while it downloads weights."""
    if healthy:
        return Phase(READY)
    text = _latest_progress(last_attempt(log_text))
    found = (STARTING, "", -1)
    for pattern, name, detail in _MARKERS:
        for m in pattern.finditer(text):
            if m.start() > found[2]:
                found = (name, detail, m.start())
    name, detail, at = found
    if name == LOADING and (shards := _last(_SHARDS, text[at:])):
        detail = f"shard {shards.group(2)}/{shards.group(3)}"
    if name == WARMING_UP and detail == "capturing CUDA graphs" and (graphs := _last(_GRAPHS, text[at:])):
        detail = f"capturing CUDA graphs {graphs.group(2)}/{graphs.group(3)}"
    if partial_bytes and name in (STARTING, LOADING) and not detail.startswith("shard"):
        return Phase(DOWNLOADING, f"{partial_bytes / 1024**3:.2f} GiB in unfinished files", quiet_s)
    if (failure := diagnose(text)) is not None and failure.known:
        return Phase(FAILED, failure.what, quiet_s)
    return Phase(name, detail, quiet_s)


def _latest_progress(text: str) -> str:
    """tqdm redraws its bar with carriage returns: keep each line's last drawing."""
    return "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line else line for line in text.split("\n"))


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    found = None
    for found in pattern.finditer(text):  # noqa: B007 - the loop keeps the last match
        pass
    return found


def phase_of(log: Path, healthy: bool, hub: Path | None = None, repo: str | None = None) -> Phase:
    """`phase` for a server's log file; with the HF cache folder and the model's repo, downloads show too.

    `quiet_s` is the time since the log or, while downloading, an unfinished file last grew: a slow download
    keeps growing; a hung one does not.
    """
    if healthy:
        return Phase(READY)  # without reading a log that may have grown for days
    try:
        text = log.read_text(errors="replace")
        log_moved = log.stat().st_mtime
    except OSError:
        return Phase(STARTING)
    cached = hfcache.cached_bytes(hub, repo) if hub is not None and repo else None
    wrote = cached.newest_partial_write if cached else None
    # Unfinished files written before the log's last line are an earlier run's leftovers, not this download.
    if cached is None or wrote is None or wrote < log_moved - 5:
        return phase(text, healthy, 0, quiet_s=max(0.0, time.time() - log_moved))
    return phase(text, healthy, cached.partial, quiet_s=max(0.0, time.time() - max(log_moved, wrote)))


# --- failures ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    what: str  # str.format'ed with the match's named groups
    fix: str


def _rule(pattern: str, what: str, fix: str) -> _Rule:
    return _Rule(re.compile(pattern, re.M), what, fix)


GPU_MEMORY_FIX = (
    "lower max_model_len or max_num_seqs in fleet.yaml, or choose a smaller (quantized) model for this card; "
    "`llmfleet doctor` shows what else holds the card's memory"
)

# Most specific first: the first rule that matches anywhere in the attempt's log is the cause.
_RULES: tuple[_Rule, ...] = (
    # argparse (vLLM's FlexibleArgumentParser): "api_server.py: error: unrecognized arguments: --max-modle-len"
    _rule(
        r"error: unrecognized arguments: (?P<args>.+)",
        "vLLM does not know the flag(s) {args}",
        "correct or remove them in fleet.yaml (servers[N].extra_args) or vllm/catalog.yaml (vllm_args); "
        "`python -m vllm.entrypoints.openai.api_server --help` lists vLLM's flags",
    ),
    # argparse: "error: argument --max-model-len: invalid ... value: 'x'"
    _rule(
        r"error: argument (?P<flag>--[\w-]+)(?:/[\w-]+)*: (?P<why>.+)",
        "vLLM refused the value of {flag}: {why}",
        "correct that value in fleet.yaml (servers[N]) or vllm/catalog.yaml (vllm_args)",
    ),
    # config/model.py:2646 "User-specified max_model_len (%d) is greater than the derived max_model_len (%s=%s or
    # model_max_length=%s in model's config.json)."
    _rule(
        r"User-specified max_model_len \((?P<asked>\d+)\) is greater than the derived max_model_len "
        r"\((?P<key>\w+)=(?P<limit>\d+)(?:\.0)? or model_max_length=\S+ in model's config\.json\)\. "
        r"To allow overriding",  # the error; with VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 the same text is only a warning
        "max_model_len {asked} is beyond what the model supports ({key}={limit} in its config.json)",
        "set servers[N].max_model_len in fleet.yaml to {limit} or less (`llmfleet plan` chooses one that fits)",
    ),
    # v1/core/kv_cache_utils.py:1027 "To serve at least one request with the model's max seq len (%d), (%s GiB KV
    # cache is needed, which is larger than the available KV cache memory (%s GiB). Based on the available memory,
    # the estimated maximum model length is %d."
    _rule(
        r"To serve at least one request with the model's max seq len \((?P<asked>\d+)\), \((?P<need>[\d.]+) GiB KV "
        r"cache is needed, which is larger than the available KV cache memory \((?P<have>[\d.]+) GiB\)\."
        r"(?: Based on the available memory, the estimated maximum model length is (?P<fits>\d+)\.)?",
        "a request of max_model_len {asked} tokens needs {need} GiB of KV cache; only {have} GiB is left for it",
        "set servers[N].max_model_len in fleet.yaml to at most {fits}, or give the KV cache more memory "
        "(gpu_memory_utilization on a GPU; VLLM_CPU_KVCACHE_SPACE in .env on the CPU plan)",
    ),
    # v1/core/kv_cache_utils.py:1011 "No available memory for the cache blocks. Try increasing
    # `gpu_memory_utilization` when initializing the engine"
    _rule(
        r"No available memory for the cache blocks",
        "the weights and activations left no memory for the KV cache",
        "raise gpu_memory_utilization in fleet.yaml if nothing else uses the card, or choose a smaller (quantized) "
        "model; `llmfleet plan` sizes both",
    ),
    # v1/worker/utils.py:763 "Free memory on device %s (%s/%s GiB) on startup is less than desired GPU memory
    # utilization (%s, %s GiB)"; :742 the same with "... is less than the engine's budget ..."
    _rule(
        r"Free memory on device (?P<device>\S*) ?\((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup is less than "
        r"(?:desired GPU memory utilization|the engine's budget[^(]*) \((?P<util>[\d.]+), (?P<want>[\d.]+) GiB\)",
        "only {free} of {total} GiB was free on the GPU at start, and the plan asks vLLM for {util} of it "
        "({want} GiB): another process holds the rest",
        "stop what else uses the card (`llmfleet doctor` or `nvidia-smi` names it), or lower "
        "servers[N].gpu_memory_utilization in fleet.yaml below {free}/{total}",
    ),
    # gpu_model_runner.py:5991 "CUDA out of memory occurred when warming up sampler with %d dummy requests."
    _rule(
        r"CUDA out of memory occurred when warming up (?P<what>sampler|pooler) with (?P<n>\d+) dummy requests",
        "the GPU ran out of memory warming up the {what} for {n} concurrent requests",
        "lower servers[N].max_num_seqs (or gpu_memory_utilization) in fleet.yaml",
    ),
    # gpu_model_runner.py:5139 "Failed to load model - not enough GPU memory."
    _rule(
        r"Failed to load model - not enough GPU memory",
        "the model's weights do not fit in the GPU memory vLLM was given",
        "choose a smaller or quantized model for this card, or split it over two cards (tensor parallel); "
        "`llmfleet plan` checks what fits",
    ),
    # torch c10/cuda/CUDACachingAllocator.cpp: "CUDA out of memory. Tried to allocate %s. GPU %d has a total
    # capacity of %s of which %s is free."
    _rule(
        r"CUDA out of memory\. Tried to allocate (?P<asked>[\d.]+ \w+)\. GPU (?P<gpu>\d+) has a total capacity of "
        r"(?P<total>[\d.]+ \w+) of which (?P<free>[\d.]+ \w+) is free",
        "GPU {gpu} ran out of memory: {asked} more was needed, {free} of {total} was free",
        GPU_MEMORY_FIX,
    ),
    _rule(r"CUDA out of memory|torch\.OutOfMemoryError", "the GPU ran out of memory", GPU_MEMORY_FIX),
    # distributed/device_communicators/shm_broadcast.py:254 "Insufficient space in %s for %s: %.0f MiB required,
    # %.0f MiB free. Increase %s (e.g. --shm-size or --ipc=host)."
    _rule(
        r"Insufficient space in (?P<path>\S+) for [^:]+: (?P<need>\d+) MiB required, (?P<free>\d+) MiB free",
        "{path} is too small: vLLM needs {need} MiB there, {free} MiB is free",
        "Compose: raise VLLM_SHM_SIZE in .env (2g is the default); native: free space in {path}",
    ),
    # torch c10/cuda/CUDAFunctions.cpp "Found no NVIDIA driver on your system."
    _rule(
        r"Found no NVIDIA driver on your system",
        "the server found no NVIDIA driver",
        "check the driver with `nvidia-smi`; in Docker, the NVIDIA Container Toolkit must be installed "
        "(`llmfleet doctor` checks both)",
    ),
    # torch c10/cuda/CUDAFunctions.cpp "The NVIDIA driver on your system is too old (found version %d)."
    _rule(
        r"The NVIDIA driver on your system is too old \(found version (?P<version>\d+)\)",
        "the NVIDIA driver is too old for this vLLM build (it supports CUDA {version})",
        "update the NVIDIA driver (vLLM 0.32's CUDA build needs CUDA 12.9: driver 575 or newer)",
    ),
    # libcuda missing from the loader's path (the seeds' `cannot find -lcuda` case)
    _rule(
        r"(?P<lib>libcuda\.so(?:\.1)?): cannot open shared object file|cannot find -lcuda",
        "libcuda (the NVIDIA driver's CUDA library) could not be loaded",
        "`ldconfig -p | grep libcuda` must list it; in WSL2 add /usr/lib/wsl/lib to LD_LIBRARY_PATH; "
        "`llmfleet doctor` checks it",
    ),
    # config/device.py:56 "Failed to infer device type": vLLM's CUDA build saw no usable GPU
    _rule(
        r"Failed to infer device type",
        "vLLM found no usable GPU (nor a CPU build)",
        "run `llmfleet doctor`: it checks the driver, libcuda and, for Docker, the NVIDIA Container Toolkit",
    ),
    # config/vllm.py:903 "The quantization method %s is not supported for the current GPU. Minimum capability: %d.
    # Current capability: %d."
    _rule(
        r"The quantization method (?P<method>\S+) is not supported for the current GPU\. Minimum capability: "
        r"(?P<min>\d+)\. Current capability: (?P<cap>\d+)",
        "this card (compute capability {cap}) cannot run {method} models (they need {min} or higher)",
        "choose a model with another quantization for this card in fleet.yaml",
    ),
    # platforms/cuda.py:649 "Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your %s GPU
    # has compute capability %s."
    _rule(
        r"Bfloat16 is only supported on GPUs with compute capability of at least 8\.0\. Your (?P<gpu>.+?) GPU",
        "the {gpu} cannot compute in bfloat16",
        "add `--dtype half` to servers[N].extra_args in fleet.yaml",
    ),
    # huggingface_hub utils/_http.py:890 "Cannot access gated repo for url %s."
    _rule(
        r"Cannot access gated repo for url (?P<url>\S+?)\.?$",
        "the model is gated on Hugging Face and this server has no token that was granted access",
        "accept the model's terms on its Hugging Face page, export HF_TOKEN, and run `llmfleet download` first",
    ),
    # huggingface_hub utils/_http.py:947 "Repository Not Found for url: %s."
    _rule(
        r"Repository Not Found for url: (?P<url>\S+?)\.?$",
        "Hugging Face does not show the model's repo ({url}): the name is wrong, or it is private or gated",
        "check `repo` in vllm/catalog.yaml; for a private or gated repo export HF_TOKEN; `llmfleet download MODEL` "
        "says which",
    ),
    # transformers' OSError when the Hub is unreachable and nothing is cached (real log: cpu-no-network.log)
    _rule(
        r"We couldn't connect to '(?P<endpoint>[^']+)' to load the files, and couldn't find them in the cached files",
        "the server could not reach {endpoint} and the model is not in the cache",
        "run `llmfleet download` before `up` (in China with HF_ENDPOINT=https://hf-mirror.com in .env), "
        "or fix the network",
    ),
    # huggingface_hub _snapshot_download.py:372 (real log: cpu-not-cached-offline.log)
    _rule(
        r"Cannot find an appropriate cached snapshot folder for the specified revision on the local disk and "
        r"outgoing traffic has been disabled",
        "the model is not in the cache, and offline mode (HF_HUB_OFFLINE=1) forbids downloading it",
        "run `llmfleet download` with the network allowed, or set HF_HUB_OFFLINE=0 in .env",
    ),
    # huggingface_hub validators, when --model is a path that does not exist (real log: cpu-missing-model-dir.log)
    _rule(
        r"Repo id must be in the form 'repo_name' or 'namespace/repo_name': '(?P<model>[^']+)'",
        "the model folder {model} does not exist (so vLLM took it for a Hugging Face repo id, and refused it)",
        "check the path; `llmfleet verify PATH` checks a model folder",
    ),
    # default_loader.py:260 "Cannot find any model weights with `%s`"
    _rule(
        r"Cannot find any model weights with `(?P<model>[^`]+)`",
        "no weight files were found for {model}: the download is incomplete",
        "run `llmfleet verify` on the model, then `llmfleet download` to complete it",
    ),
    # the OS, when the port is taken (real log: cpu-port-in-use.log)
    _rule(
        r"\[Errno 98\] (?:error while attempting to bind on address [^:]+: )?[Aa]ddress already in use$",
        "the server's port is already in use",
        "stop what listens there (`ss -ltnp` shows it) or set VLLM_PORT_BASE in .env to free ports",
    ),
)
# The last exception line of a traceback, for failures no rule knows.
_ERROR_LINE = re.compile(r"^(?:\(\w+ pid=\d+\) ERROR [^\]]*\] )?((?:\w+\.)*\w*(?:Error|Exception): .+)$", re.M)
# Wrappers that only point at the real cause above them (v1/engine/utils.py:1432).
_WRAPPERS = ("Engine core initialization failed", "Frontend process failed")


def diagnose(log_text: str, server: str = "servers[N]") -> Diagnosis | None:
    """Why the last start in this log failed, with the likely fix; None if the log shows no failure.

    `server` names the plan entry in fixes (e.g. "servers[1]"), where the caller knows it.
    """
    text = last_attempt(log_text)
    for rule in _RULES:
        m = rule.pattern.search(text)
        if m is not None:
            values = {k: (v if v is not None else "?") for k, v in m.groupdict().items()}
            fix = rule.fix.format(**values).replace("servers[N]", server)
            return Diagnosis(rule.what.format(**values), fix, _line_at(text, m.start()))
    errors = [m for m in _ERROR_LINE.finditer(text) if not any(w in m.group(1) for w in _WRAPPERS)]
    if errors:
        line = errors[-1].group(1).strip()
        return Diagnosis(line, "see the log above that line for its cause", line, known=False)
    return None


def diagnose_file(log: Path, server: str = "servers[N]") -> Diagnosis | None:
    try:
        return diagnose(log.read_text(errors="replace"), server)
    except OSError:
        return None


def _line_at(text: str, at: int) -> str:
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    return text[start : end if end != -1 else len(text)].strip()
