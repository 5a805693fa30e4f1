"""How a plan's server becomes a vLLM command line: one function, used by Compose and the native runner alike."""

from __future__ import annotations

from llmfleet.plan import synthetic
from llmfleet.plan.catalog import Model
from llmfleet.plan.schema import Server

VLLM_CONTAINER_PORT = 8000
# vllm/backend_guard.py, loaded into every server: it refuses paths outside /v1, /health and /metrics, and requests
# over the caps below. Each runner puts its folder on the server's PYTHONPATH.
BACKEND_GUARD = "backend_guard.py"
BACKEND_GUARD_ARGS = ("--middleware", "backend_guard.BackendGuard")
CONTAINER_GUARD_DIR = "/opt/llmfleet/guard"  # where Compose and Kubernetes mount it
# One request may hold at most this share of a server's batch (`n` choices each take a sequence slot).
MAX_BATCH_SHARE = 4
# Each server's name as the stack knows it (the plan's, or its pod's): the backend guard tells it in every completion's
# `x-fleet-backend` header, so a client of either lane, and the drills, see which server answered.
SERVER_NAME_ENV = "LLMFLEET_SERVER_NAME"
# The gateway's route (gateway/usage.py) where a backend's guard reports the usage of a user's key on the router lane.
USAGE_ROUTE = "/fleet/usage"
BACKEND_MAX_BODY_MB = 16  # above the gateway's own limit (GATEWAY_MAX_BODY_MB): only what skipped it meets this
# Every runner's vLLM servers send no usage statistics home (vLLM reports them to its developers by default).
NO_USAGE_STATS = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}

# How long a backend may take to send the first token of a short prompt before the gateway retries the request on
# another (gateway/guard.py adds time for longer prompts). A GPU under load queues requests behind long prefills;
# the CPU plan's synthetic model answers in a fraction of a second, so a frozen server is noticed within seconds; a
# real model on two shared cores takes seconds to start an answer once requests queue (one backend down, every
# request on the other), and a 2 s limit would take a healthy but busy server out of rotation.
FIRST_TOKEN_TIMEOUT_S = {"cuda": 20, "cpu": 15}
SYNTHETIC_FIRST_TOKEN_TIMEOUT_S = 2
# A stream that waits this share of it on a server whose answers send nothing meanwhile marks the engine hung: the
# backend guard fails /health, so the router takes the server out, on CPU and GPUs before the door's next try of that
# stream (the router checks health every second). Not less: a lone long prompt's prefill also sends nothing.
HUNG_SHARE = 0.75

MODELS_IN_CONTAINER = "/opt/llmfleet/models"  # the synthetic model in the image; converted ones mounted there


def dir_in_container(model: Model) -> str:
    """Where a container finds a model that is not downloaded from the Hub: the synthetic one, or a converted one."""
    return f"{MODELS_IN_CONTAINER}/{model.name}"


def vllm_args(server: Server, model: Model, *, model_path: str, host: str, port: int) -> list[str]:
    """Arguments for `vllm serve`; the served name is the catalog name, which clients send as `model`."""
    args = [
        "--model", model_path,
        "--served-model-name", model.name,
        "--host", host,
        "--port", str(port),
        "--max-model-len", str(server.max_model_len),
        "--max-num-seqs", str(server.max_num_seqs),
        # The gateway logs every request already; vLLM's access log would only double the CPU spent on logging.
        "--disable-uvicorn-access-log",
        *BACKEND_GUARD_ARGS,
    ]  # fmt: skip
    if server.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(server.gpu_memory_utilization)]
    if server.tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(server.tensor_parallel_size)]
    return [*args, *model.vllm_args, *server.extra_args]


def first_token_timeout_s(device: str, model: str) -> int:
    """How long the gateway waits for a stream's first token from a server of `model` on `device` (cuda or cpu)."""
    return SYNTHETIC_FIRST_TOKEN_TIMEOUT_S if model == synthetic.NAME else FIRST_TOKEN_TIMEOUT_S[device]


def stream_stall_s(device: str) -> int:
    """How long a stream that has begun may hear nothing from any answer of its server before the backend guard ends
    it: the device's first-token wait, for the synthetic model too. Nothing sends a begun stream again, so a live
    one cut is lost, and on two shared cores an engine busy with 32 streams went 2.3 s without a token (2026-12-04);
    the synthetic model's 2 s wait is there to send a silent stream elsewhere before its first byte."""
    return FIRST_TOKEN_TIMEOUT_S[device]


def guard_env(server: Server, device: str, gateway_url: str) -> dict[str, str]:
    """The backend guard's caps for one server of a plan on `device` (its own: the gateway's timeouts come from the
    same), when it takes its engine for hung (before a stream's first token, and after), and where it reports a
    user's usage on the router lane (the gateway as this server reaches it)."""
    first_token_s = first_token_timeout_s(device, server.model)
    return {
        "LLMFLEET_ENGINE_HUNG_S": f"{first_token_s * HUNG_SHARE:g}",
        # An open stream whose server sends no chunk of any answer this long is ended with an error event.
        "LLMFLEET_STREAM_STALL_S": str(stream_stall_s(device)),
        "LLMFLEET_MAX_N": str(max(1, server.max_num_seqs // MAX_BATCH_SHARE)),
        "LLMFLEET_MAX_TOKENS": str(server.max_model_len),
        "LLMFLEET_MAX_BODY_MB": str(BACKEND_MAX_BODY_MB),
        "LLMFLEET_USAGE_URL": gateway_url + USAGE_ROUTE,
    }


def model_path(model: Model, synthetic_dir: str, packaged_dir: str) -> str:
    """What vLLM's --model gets: the Hugging Face repo id, the synthetic model's directory, or the folder a packaged
    model was converted into (src/llmfleet/models/realmodel.py)."""
    if model.synthetic:
        return synthetic_dir
    if model.package:
        return packaged_dir
    assert model.repo, f"catalog entry {model.name} has neither repo, package nor synthetic"
    return model.repo


def container_model_path(model: Model) -> str:
    """--model inside a container (Compose, Kubernetes): models that are not downloaded sit in MODELS_IN_CONTAINER."""
    return model_path(model, dir_in_container(model), dir_in_container(model))
