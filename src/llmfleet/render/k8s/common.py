"""What every Kubernetes manifest shares: the names, labels and security settings, and how a manifest is written."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from dotenv import dotenv_values

from llmfleet.errors import FleetError
from llmfleet.render import HEADER, door, gateway
from llmfleet.yamltext import Dumper

KUBERNETES = Path("kubernetes")

BASE = KUBERNETES / "base"
# Components beside the files they ship, so kustomize reads them where they are.
COMPONENT_OF_GATEWAY = Path("gateway")
COMPONENT_OF_VLLM = Path("vllm")
COMPONENT_OF_ROUTER = Path("router")

MONITORING = KUBERNETES / "components" / "monitoring"

INGRESS = KUBERNETES / "components" / "ingress"

OVERLAYS = KUBERNETES / "overlays"

SCRAPE_CONFIG = KUBERNETES / "prometheus" / "scrape-configs.yaml"

RENDERED_DIRS = (BASE, KUBERNETES / "components", OVERLAYS, KUBERNETES / "prometheus")

RULES_DIR = Path("monitoring/prometheus/rules")

DASHBOARDS_DIR = Path("monitoring/grafana/dashboards")

RENDERER = "src/llmfleet/render/kubernetes.py"

NAMESPACE = "llmfleet"

# The Secret the user creates (README: More than one host): LITELLM_MASTER_KEY, VLLM_API_KEY, optionally HF_TOKEN.
SECRET = "llmfleet-secrets"  # noqa: S105 - its name, not a value

HF_CONFIG = "llmfleet-hf"

GATEWAY = "gateway"

GATEWAY_CONFIG = "gateway-config"

GATEWAY_CONFIG_DIR = "/etc/litellm"  # as in gateway/compose.yaml: config.yaml finds the other files beside it

# Prometheus' key for the gateway's /metrics, which reads metrics and nothing else (gateway/auth.py).
METRICS_KEY = "GATEWAY_METRICS_KEY"
GATEWAY_KEY_FILE = f"/etc/prometheus/secrets/{SECRET}/{METRICS_KEY}"  # a plain Prometheus with the Secret mounted

GATEWAY_REPLICAS = 2  # LiteLLM keeps its state in PostgreSQL and Redis, not in a pod: two replicas ride out a drain
POSTGRES = "postgres"  # the key database's StatefulSet and Service
POSTGRES_UID = 999  # the official image's postgres user (and the stand-in's: images/postgres/Dockerfile)

SYNTHETIC_CONFIG = "fleet-tiny"

DOOR = "door"

DOOR_CONFIG = "door-config"

DOOR_CONFIG_DIR = door.CONTAINER_CONFIG_DIR  # as in gateway/compose.yaml

ROUTER = "router"  # SMG's Deployment and Service (render/router.py)
ROUTER_LAUNCHER = "router-launcher"  # router/launch.py
ROUTER_WORKERS = "router-workers"  # each overlay's backends: ROUTER_WORKER_URLS, which the launcher passes on
ROUTER_LAUNCHER_DIR = "/opt/llmfleet/router"  # as in gateway/compose.yaml

GUARD_CONFIG = "vllm-guard"  # vllm/backend_guard.py, which every vLLM server loads (--middleware)

NAME = "app.kubernetes.io/name"

INSTANCE = "app.kubernetes.io/instance"

PART_OF = {"app.kubernetes.io/part-of": "llmfleet"}

POOL_LABEL = "llmfleet/pool"

MODEL_GROUP_ANNOTATION = "llmfleet/model-group"  # model names may hold characters a label value may not

GPU_NAME_ANNOTATION = "llmfleet/gpu-name"

GPU_RESOURCE = "nvidia.com/gpu"

# kube-prometheus-stack: its Prometheus pods carry this label, and it selects monitors and rules by `release`.
PROMETHEUS_POD_LABELS = {NAME: "prometheus"}

PROMETHEUS_NAMESPACE = (
    "monitoring"  # where kube-prometheus-stack runs; the NetworkPolicy admits its pods from there only
)

RELEASE_LABEL = {"release": "kube-prometheus-stack"}

KEDA_PROMETHEUS = f"http://prometheus-operated.{PROMETHEUS_NAMESPACE}.svc:9090"  # the operator's Prometheus Service

# Every container: no privilege escalation and no Linux capability (none of ours binds a port below 1024, changes
# owners or users). Every pod: the runtime's default seccomp profile.
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

# The official LiteLLM and vLLM images run as root (vLLM keeps its caches under /root), so their pods cannot be
# runAsNonRoot without rebuilt images; a pod of any other image is. Hence Pod Security enforces `baseline` (which
# allows root) and warns and audits against `restricted`.
RUNS_AS_ROOT = frozenset({"LITELLM_IMAGE", "VLLM_IMAGE", "VLLM_CPU_IMAGE"})

POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}

GATEWAY_MEMORY_LIMIT = "2Gi"  # one LiteLLM worker idles near 400 MiB; a flood of large bodies is killed, not the node

QUEUE_PER_REPLICA = 4  # waiting requests per replica KEDA aims at (see the autoscaling file's comment)

SCALE_DOWN_WINDOW_S = 600  # a replica costs minutes of loading: keep it until the load has been low for 10 min

HF_CACHE_IN_POD = "/root/.cache/huggingface"  # the official vLLM image runs as root

ENV_KEYS = ("VLLM_IMAGE", "VLLM_CPU_IMAGE", "LITELLM_IMAGE", "VLLM_SHM_SIZE", "VLLM_START_PERIOD", "HF_ENDPOINT",
            "HF_HUB_OFFLINE", "VLLM_CPU_KVCACHE_SPACE", "NGINX_IMAGE", "GATEWAY_MAX_BODY_MB",
            "POSTGRES_IMAGE", "ROUTER_IMAGE", "GATEWAY_DATA_PLANE")  # fmt: skip

# (source, target): the labels Compose's scrape config gives each vLLM server (render/prometheus.py
# backend_labels), taken from its pod; `server` is the pod's name, which is also the gateway's id for it. There is
# no `gpu` label: Kubernetes, not the plan, chooses the card.
VLLM_TARGET_LABELS = (
    ("__meta_kubernetes_pod_name", "server"),
    ("__meta_kubernetes_pod_annotation_llmfleet_model_group", "model_group"),
    ("__meta_kubernetes_pod_annotation_llmfleet_gpu_name", "gpu_name"),
    ("__meta_kubernetes_pod_label_llmfleet_pool", "pool"),
)

# Only ready pods are scraped: a replica that KEDA just added loads for minutes, and it is not "down" meanwhile.
READY_ONLY = ("__meta_kubernetes_pod_ready", "true")


class _BlockDumper(Dumper):
    """The renderers' style, with multi-line strings (files inside ConfigMaps, PromQL) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _represent_str)


def block_yaml(data: object) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=120,
                     default_flow_style=False)  # fmt: skip


def document(source: str, objects: Sequence[Mapping[str, object]], notes: tuple[str, ...] = (),
             comments: dict[int, list[str]] | None = None) -> str:  # fmt: skip
    """A rendered file: the header naming its source, notes for people, then the objects (`comments[i]` above the
    i-th)."""
    text = HEADER.format(source=source) + "".join(f"# {n}\n" if n else "#\n" for n in notes)
    for i, obj in enumerate(objects):
        if i:
            text += "---\n"
        text += "".join(f"# {c}\n" for c in (comments or {}).get(i, []))
        text += block_yaml(obj)
    return text


def env_settings(root: Path) -> dict[str, str]:
    """The settings Kubernetes shares with Compose, read from .env itself (not the environment), so a render is
    the same on every machine."""
    values = {k: v for k, v in dotenv_values(root / ".env").items() if v is not None}
    missing = [k for k in ENV_KEYS if not values.get(k)]
    if missing:
        raise FleetError(
            f".env has no value for {', '.join(missing)}, which the Kubernetes manifests use.",
            "restore the line from the repository's .env (each is documented there).",
            f".env: {missing[0]}",
        )
    return values


def quantity(size: str, where: str) -> str:
    """Compose's `2g` (binary units, as Docker reads them) as a Kubernetes quantity: `2Gi`."""
    match = re.fullmatch(r"(\d+)\s*([kmg]?)i?b?", size.strip(), re.IGNORECASE)
    if not match:
        raise FleetError(f"{where}={size!r} is not a size.", "write a size such as 2g or 512m.", f".env: {where}")
    unit = {"": "", "k": "Ki", "m": "Mi", "g": "Gi"}[match[2].lower()]
    return f"{match[1]}{unit}"


def seconds(duration: str, where: str) -> int:
    """Compose's `20m` (or 90s, 1h, 1h30m) in seconds."""
    parts = re.findall(r"(\d+)\s*([hms])", duration)
    if not parts or re.sub(r"\d+\s*[hms]", "", duration).strip():
        raise FleetError(f"{where}={duration!r} is not a duration.", "write one such as 20m or 900s.", f".env: {where}")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def pod_security(image_setting: str) -> dict[str, object]:
    """A pod's securityContext: seccomp always, runAsNonRoot wherever its image does not need root."""
    context: dict[str, object] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if image_setting not in RUNS_AS_ROOT:
        context["runAsNonRoot"] = True
    return context


def http_service(name: str, labels: dict[str, str]) -> dict[str, object]:
    """The Service of the door or the gateway: port 4000 (the gateway's own, as on one host) to the pod's http."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {NAME: name},
            "ports": [{"name": "http", "port": gateway.CONTAINER_PORT, "targetPort": "http"}],
        },
    }


def pdb(name: str, selector: dict[str, str], labels: dict[str, str], budget: dict[str, int]) -> dict[str, object]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels},
        "spec": {**budget, "selector": {"matchLabels": selector}},
    }


def kustomize(kind: str = "Kustomization", **fields: object) -> dict[str, object]:
    version = "v1beta1" if kind == "Kustomization" else "v1alpha1"
    return {"apiVersion": f"kustomize.config.k8s.io/{version}", "kind": kind, **fields}
