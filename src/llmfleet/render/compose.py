"""vllm/services.yaml: one Compose service per vLLM server, pinned to its GPUs, and the gateway's wait on them.

Each service opens with a comment: its budget, and every flag of its command with the reason it is there, so a
person reading the file (or changing it through fleet.yaml) sees why vLLM runs the way it does.
"""

from __future__ import annotations

import textwrap

from llmfleet import paths
from llmfleet.models import realmodel
from llmfleet.plan.budget import CUDA_VISIBLE
from llmfleet.plan.catalog import Catalog, Model
from llmfleet.plan.schema import Plan, Server
from llmfleet.plan.serving import (
    BACKEND_GUARD,
    CONTAINER_GUARD_DIR,
    NO_USAGE_STATS,
    SERVER_NAME_ENV,
    VLLM_CONTAINER_PORT,
    container_model_path,
    dir_in_container,
    guard_env,
    vllm_args,
)
from llmfleet.render import Topology, rendered, router
from llmfleet.render.gateway import CONTAINER_PORT, compose_workers, container_command

# Paths in an included Compose file are relative to its own folder (vllm/): the secrets sit one level up. A vLLM
# server's file holds VLLM_API_KEY only (secrets.SERVICE_SECRETS).
SECRETS = {"path": "../.env.secrets.d/vllm.env", "required": True}
# vLLM's images run as root. They keep no capability but the one a shared Hugging Face cache needs: root without
# DAC_OVERRIDE cannot write into the host user's cache folder. A server whose weights are in the image or mounted
# read-only keeps none.
NO_PRIVILEGES: dict[str, object] = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}
WRITES_HF_CACHE = {"cap_add": ["DAC_OVERRIDE"]}
HEALTHCHECK = {
    "test": [
        "CMD", "python3", "-c",
        f"import urllib.request as u; u.urlopen('http://127.0.0.1:{VLLM_CONTAINER_PORT}/health', timeout=3)",
    ],
    "interval": "10s",
    "timeout": "5s",
    "retries": 3,
    # Downloading and loading weights takes minutes; failed checks before then do not count.
    "start_period": "${VLLM_START_PERIOD:-20m}",
}  # fmt: skip
SYNTHETIC_DIR_IN_IMAGE = "/opt/llmfleet/models/fleet-tiny"  # serving.dir_in_container of fleet-tiny
HF_ENVIRONMENT = {
    "HF_ENDPOINT": "${HF_ENDPOINT:-https://huggingface.co}",
    "HF_TOKEN": "${HF_TOKEN:-}",
    "HF_HUB_OFFLINE": "${HF_HUB_OFFLINE:-0}",
}
HF_VOLUME = "${HF_CACHE:-~/.cache/huggingface}:/root/.cache/huggingface"
# The backend guard (vllm/backend_guard.py), named from the folder of the file that mounts it: "../vllm/..." reads
# the same from vllm/ and from gateway/, whose folder Compose resolves the merged include from.
GUARD_SOURCE = f"../vllm/{BACKEND_GUARD}"
COMMENT_WIDTH = 118
# Said once per GPU service, because the absence of these flags is the point.
NOT_PASSED_QUANTIZED = (
    "Not passed: --quantization (vLLM reads the checkpoint's quant_method and picks the fast Marlin kernel itself; "
    "`--quantization awq` would force the slow AWQ GEMM kernel) and --enforce-eager (CUDA graphs stay on)."
)
NOT_PASSED = "Not passed: --enforce-eager (CUDA graphs stay on)."


def topology(plan: Plan) -> Topology:
    """Addresses on the Compose network: services reach each other by name."""
    return Topology(
        backends=tuple(f"{name}:{VLLM_CONTAINER_PORT}" for name, _ in plan.named_servers()),
        gateway=f"gateway:{CONTAINER_PORT}",
        prometheus="localhost:9090",
        gpu_exporter="gpu-exporter:9835" if plan.device == "cuda" else None,
        gateway_key_file="/tmp/gateway.key",  # noqa: S108 - inside the Prometheus container, written at its start
        router_metrics=f"router:{router.CONTAINER_METRICS_PORT}",
    )


def services(plan: Plan, catalog: Catalog) -> str:
    services: dict[str, object] = {}
    comments: dict[str, list[str]] = {}
    for i, (name, server) in enumerate(plan.named_servers()):
        model = catalog.models[server.model]
        command = vllm_args(server, model, model_path=container_model_path(model), host="0.0.0.0",  # noqa: S104
                            port=VLLM_CONTAINER_PORT)  # fmt: skip
        services[name] = (
            _gpu_service(name, server, command) if server.gpus else cpu_service(name, server, command, model)
        )
        comments[name] = _explain(plan, i, catalog, command)
    # The gateway (gateway/compose.yaml, merged with this file) starts once every backend is healthy, with as many
    # workers as the plan's token rate needs.
    services["gateway"] = {
        "command": container_command(compose_workers(plan)),
        "depends_on": {name: {"condition": "service_healthy"} for name, _ in plan.named_servers()},
    }
    services["router"] = router_service(plan)
    return _with_comments(rendered({"services": services}), comments)


def router_service(plan: Plan) -> dict[str, object]:
    """The router's plan-dependent half (gateway/compose.yaml has the rest): its backends, and its wait on them."""
    backends = [f"http://{name}:{VLLM_CONTAINER_PORT}" for name, _ in plan.named_servers()]
    return {
        "command": router.container_arguments(backends),
        "depends_on": {name: {"condition": "service_healthy"} for name, _ in plan.named_servers()},
    }


def _gpu_service(name: str, server: Server, command: list[str]) -> dict[str, object]:
    service: dict[str, object] = {
        "image": "${VLLM_IMAGE:?set VLLM_IMAGE in .env to a pinned vLLM image tag}",
        "command": command,
        "restart": "unless-stopped",
        "expose": [str(VLLM_CONTAINER_PORT)],  # reachable by the gateway only; never published
        "env_file": [SECRETS],  # VLLM_API_KEY: the backends answer the gateway only
        "environment": HF_ENVIRONMENT | NO_USAGE_STATS | guard_environment(name, server, "cuda"),
        "volumes": [HF_VOLUME, guard_volume(GUARD_SOURCE)],
        "healthcheck": HEALTHCHECK,
        **NO_PRIVILEGES,
        **WRITES_HF_CACHE,
    }
    if server.tensor_parallel_size > 1:
        service["ipc"] = "host"  # NCCL between the cards needs the host's shared memory
    else:
        service["shm_size"] = "${VLLM_SHM_SIZE:-2g}"  # vLLM's workers exchange tensors through /dev/shm
    device = {"driver": "nvidia", "device_ids": [str(g) for g in server.gpus], "capabilities": ["gpu"]}
    service["deploy"] = {"resources": {"reservations": {"devices": [device]}}}
    return service


def guard_environment(name: str, server: Server, device: str) -> dict[str, str]:
    gateway = f"http://gateway:{CONTAINER_PORT}"  # LiteLLM, for the guard's usage reports
    return {"PYTHONPATH": CONTAINER_GUARD_DIR, **guard_env(server, device, gateway), SERVER_NAME_ENV: name}


def guard_volume(source: str) -> str:
    return f"{source}:{CONTAINER_GUARD_DIR}/{BACKEND_GUARD}:ro"


def cpu_service(
    name: str,
    server: Server,
    command: list[str],
    model: Model,
    secrets: dict[str, object] = SECRETS,
    guard_source: str = GUARD_SOURCE,
) -> dict[str, object]:
    """A server of a plan without GPUs: vLLM's CPU build, no device reservation. `secrets` and `guard_source` are
    files as the Compose file they go into must name them (paths are relative to that file's folder)."""
    environment = {
        "VLLM_CPU_KVCACHE_SPACE": "${VLLM_CPU_KVCACHE_SPACE:-1}",  # GiB of KV cache per server
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # let the host's scheduler spread the servers over the cores
        **guard_environment(name, server, "cpu"),
    }
    local = model.synthetic or model.package is not None  # in the image, or mounted from the host: never download
    service: dict[str, object] = {
        "image": "${VLLM_CPU_IMAGE:?set VLLM_CPU_IMAGE in .env to a pinned vLLM CPU image tag}",
        "command": command,
        "restart": "unless-stopped",
        "expose": [str(VLLM_CONTAINER_PORT)],  # reachable by the gateway only; never published
        "env_file": [secrets],  # VLLM_API_KEY: the backends answer the gateway only
        # In the image, or mounted from the host: never download.
        "environment": environment | ({"HF_HUB_OFFLINE": "1"} if local else HF_ENVIRONMENT) | NO_USAGE_STATS,
        "shm_size": "${VLLM_SHM_SIZE:-2g}",
        "healthcheck": HEALTHCHECK,
    }
    volumes = [guard_volume(guard_source)]
    service |= NO_PRIVILEGES
    if model.package:
        volumes.append(converted_volume(model))
    elif not model.synthetic:
        volumes.append(HF_VOLUME)
        service |= WRITES_HF_CACHE
    service["volumes"] = volumes
    return service


def converted_volume(model: Model) -> str:
    """A packaged model's converted folder, mounted read-only from the host's cache (`llmfleet setup` and `up`
    convert it there first): any vLLM CPU image serves it, the official one or the stand-in, without a rebuild."""
    folder = realmodel.folder_name(model, paths.project_root())
    return f"${{LLMFLEET_CACHE_DIR:-~/.cache/llmfleet}}/models/{folder}:{dir_in_container(model)}:ro"


def _explain(plan: Plan, i: int, catalog: Catalog, command: list[str]) -> list[str]:
    """The comment above servers[i]: where it runs, its budget, and why each flag."""
    name, server = plan.named_servers()[i]
    lines: list[str] = []
    if server.gpus:
        cards = ", ".join(f"GPU {g} ({plan.gpu(g).name}, {plan.gpu(g).memory_gib:g} GiB)" for g in server.gpus)
        lines.append(f"{name}: {server.model} on {cards}.")
        budget = plan.budget(i, catalog)
        assert budget is not None
        lines.append(
            f"Budget per card: weights {budget.weights_gib:.2f} + KV cache {budget.kv_cache_gib:.2f} GiB "
            f"({budget.kv_tokens:,} tokens: {budget.full_length_sequences:.1f} requests of {server.max_model_len:,}) "
            f"+ runtime {budget.runtime_gib:.2f} = {budget.used_gib:.2f} of the {budget.usable_gib:.2f} GiB vLLM may "
            f"use ({budget.memory_gib:g} x {CUDA_VISIBLE} seen by CUDA x {server.gpu_memory_utilization})."
        )
    else:
        lines.append(f"{name}: {server.model} on vLLM's CPU build (no GPU in this plan).")
    lines.append("Flags:")
    for flag, value in _flags(command):
        why = catalog.why(flag) or "(not explained in vllm/catalog.yaml: flags)"
        lines.append(f"  {flag}{' ' + value if value else ''}: {why}")
    if server.gpus:
        lines.append(NOT_PASSED_QUANTIZED if catalog.models[server.model].quantization else NOT_PASSED)
    wrapped: list[str] = []
    for line in lines:
        indent = "      " if line.startswith("  ") else "  "
        wrapped += textwrap.wrap(line, COMMENT_WIDTH - 4, subsequent_indent=indent, break_on_hyphens=False)
    return wrapped


def _flags(command: list[str]) -> list[tuple[str, str]]:
    """[("--max-model-len", "32768"), ("--enable-prefix-caching", ""), ...] from a vLLM command line."""
    flags: list[tuple[str, str]] = []
    for arg in command:
        if arg.startswith("--"):
            flags.append((arg, ""))
        elif flags:
            flag, value = flags[-1]
            flags[-1] = (flag, f"{value} {arg}".strip())
    return flags


def _with_comments(text: str, comments: dict[str, list[str]]) -> str:
    """Put each service's comment block right above its key (`  vllm-gpu0:`)."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        key = line.strip().removesuffix(":")
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":") and key in comments:
            out += [f"  # {c}\n" for c in comments[key]]
        out.append(line)
    return "".join(out)
