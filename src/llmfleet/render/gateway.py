"""The gateway's model list: one LiteLLM deployment per vLLM server, grouped by the model they serve."""

from __future__ import annotations

import math
from pathlib import Path

from llmfleet.plan import synthetic
from llmfleet.plan.schema import Plan
from llmfleet.plan.serving import BACKEND_GUARD, first_token_timeout_s
from llmfleet.render import Topology, rendered

# The background health check's one-token completion (gateway/config.yaml: every 5 s, and a backend counts only with
# a passed check under 15 s old, so 5 + this must stay below 15). A real model's check queues behind the requests
# being served: on a 2-core host without AVX-512 smollm2-135m answered two tokens in 1-5 s with both servers busy,
# and a 3 s limit failed healthy servers until the gateway had none. The synthetic model keeps 3 s, so a frozen
# server is noticed quickly.
HEALTH_CHECK_TIMEOUT_S = 8
SYNTHETIC_HEALTH_CHECK_TIMEOUT_S = 3

# What one LiteLLM worker relays: about 1,500 streamed tokens/s, a core's worth (benchmarks/gateway.md: 0.44-0.74
# CPU-seconds per 1,000 tokens of long answers).
WORKER_TOKENS_PER_S = 1500
# One stream's decode speed while its server runs a full batch, an estimate: a 7B AWQ model on an RTX 3060 decodes
# 32 sequences at about 30 tokens/s each; the CPU plans, two servers on two cores, about 25 (smollm2-135m decodes one
# stream at about 30 tokens/s).
STREAM_TOKENS_PER_S = {"cuda": 30, "cpu": 25}

CONTAINER_PORT = 4000  # LiteLLM's port inside its container, in Compose (gateway/compose.yaml) and Kubernetes
DOOR_CHECK = "/fleet/door-check"  # the route gateway/auth.py adds to LiteLLM for the front door's key check

# Hand-written files in gateway/ that LiteLLM loads from its config's folder (config.yaml names the others).
# Every runner ships all of them beside the rendered models.yaml.
GATEWAY_FILES = (
    "config.yaml",
    "auth.py",
    "guard.py",
    "loadaware.py",
    "loadpick.py",
    "params.yaml",
    "keystore.py",
    "usage.py",
)
# Files of other folders LiteLLM loads beside them: the backends' request checks, which guard.py calls, so a request
# gets the same answer through LiteLLM as straight from a backend.
BORROWED_FILES = (Path("vllm") / BACKEND_GUARD,)


def first_token_timeout(plan: Plan, model: str) -> int:
    return first_token_timeout_s(plan.device, model)


def health_check_timeout(model: str) -> int:
    return SYNTHETIC_HEALTH_CHECK_TIMEOUT_S if model == synthetic.NAME else HEALTH_CHECK_TIMEOUT_S


def workers(plan: Plan) -> int:
    """Gateway worker processes for the plan's expected token rate: every server's full batch, streamed."""
    rate = sum(s.max_num_seqs for s in plan.servers) * STREAM_TOKENS_PER_S[plan.device]
    return max(1, math.ceil(rate / WORKER_TOKENS_PER_S))


def container_command(workers: str) -> list[str]:
    """The gateway container's arguments in Compose and Kubernetes (the official image's entrypoint is `litellm`)."""
    return ["--config", "/etc/litellm/config.yaml", "--port", str(CONTAINER_PORT), "--num_workers", workers]


def compose_workers(plan: Plan) -> str:
    """Compose's worker count: GATEWAY_WORKERS from .env when set, else what the plan's token rate needs."""
    return f"${{GATEWAY_WORKERS:-{workers(plan)}}}"


def model_list(plan: Plan, topology: Topology) -> str:
    return rendered({"model_list": deployments(plan, topology)})


def deployments(plan: Plan, topology: Topology) -> list[dict[str, object]]:
    """The model list's entries; Kubernetes joins those of every node pool into one list."""
    names = topology.server_names or tuple(name for name, _ in plan.named_servers())
    entries: list[dict[str, object]] = []
    for (name, server), address in zip(zip(names, plan.servers, strict=True), topology.backends, strict=True):
        entries.append({
            "model_name": server.model,
            "litellm_params": {
                # hosted_vllm/ speaks to a vLLM server over HTTP; the prefix is stripped, leaving the served name.
                "model": f"hosted_vllm/{server.model}",
                "api_base": f"http://{address}/v1",
                "api_key": "os.environ/VLLM_API_KEY",
                "stream_timeout": first_token_timeout(plan, server.model),  # also the longest pause between tokens
            },
            "model_info": {
                "id": name,
                "max_input_tokens": server.max_model_len,
                # The background health check (gateway/config.yaml): one token, and a stalled backend fails fast.
                "health_check_max_tokens": 1,
                "health_check_timeout": health_check_timeout(server.model),
            },
        })  # fmt: skip
    return entries
