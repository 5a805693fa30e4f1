"""Each cluster plan's workloads: one vLLM Deployment per model group and pool, its Service, budget and
autoscaling."""

from __future__ import annotations

import math
import re

from llmfleet.plan import cluster
from llmfleet.plan.catalog import Catalog
from llmfleet.plan.cluster import Cluster, Workload
from llmfleet.plan.serving import (
    CONTAINER_GUARD_DIR,
    MODELS_IN_CONTAINER,
    NO_USAGE_STATS,
    SERVER_NAME_ENV,
    VLLM_CONTAINER_PORT,
    guard_env,
)
from llmfleet.render import HEADER, Topology, gateway
from llmfleet.render.compose import SYNTHETIC_DIR_IN_IMAGE
from llmfleet.render.k8s.common import (
    CONTAINER_SECURITY,
    GATEWAY,
    GATEWAY_KEY_FILE,
    GPU_NAME_ANNOTATION,
    GPU_RESOURCE,
    GUARD_CONFIG,
    HF_CACHE_IN_POD,
    HF_CONFIG,
    INSTANCE,
    KEDA_PROMETHEUS,
    MODEL_GROUP_ANNOTATION,
    NAME,
    NAMESPACE,
    PART_OF,
    POOL_LABEL,
    QUEUE_PER_REPLICA,
    SCALE_DOWN_WINDOW_S,
    SECRET,
    SYNTHETIC_CONFIG,
    block_yaml,
    pdb,
    pod_security,
    quantity,
    seconds,
)
from llmfleet.render.k8s.converter import converter_container, converter_name

GATEWAY_URL = f"http://gateway:{gateway.CONTAINER_PORT}"  # LiteLLM's Service, for the guard's usage reports


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


def router_workers(plan: Cluster, workloads: list[Workload]) -> str:
    """Every replica the router may send to, across the pools (the same list as the gateway's models.yaml)."""
    backends: list[str] = []
    for name, pool in plan.pools.items():
        backends += topology(pool, [w for w in workloads if w.pool_name == name]).backends
    return " ".join(f"http://{address}" for address in backends)


def models_yaml(plan: Cluster, workloads: list[Workload], source: str) -> str:
    """The gateway's model list, made by the same function as Compose's: one entry per replica a workload may
    have (its planned count, which is KEDA's maximum)."""
    entries: list[dict[str, object]] = []
    for name, pool in plan.pools.items():
        mine = [w for w in workloads if w.pool_name == name]
        entries += gateway.deployments(pool, topology(pool, mine))
    return HEADER.format(source=source) + block_yaml({"model_list": entries})


def workload_objects(w: Workload, catalog: Catalog, env: dict[str, str], args: list[str]) -> list[dict[str, object]]:
    """StatefulSet, headless Service and PodDisruptionBudget; `args` is the vLLM command line (serving.vllm_args)."""
    model = catalog.models[w.server.model]
    selector = {NAME: "vllm", INSTANCE: w.name}
    labels = {**selector, **PART_OF, POOL_LABEL: w.pool_name}
    tp = w.tensor_parallel_size
    env_vars: list[dict[str, object]] = [
        {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "VLLM_API_KEY"}}},
        {"name": "PYTHONPATH", "value": CONTAINER_GUARD_DIR},  # the backend guard, and its caps from the plan
        {"name": SERVER_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},  # the gateway's id of it
    ]
    guard = guard_env(w.server, w.pool.device, GATEWAY_URL)
    env_vars += [{"name": k, "value": v} for k, v in (NO_USAGE_STATS | guard).items()]
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
        init_containers.append(converter_container(model, env["VLLM_CPU_IMAGE"]))
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
    return [statefulset, service, pdb(w.name, selector, labels, {"maxUnavailable": 1})]


def memory_limit(gib: int, shm: str) -> str:
    """`gib` plus the pod's /dev/shm: a memory-backed emptyDir counts against the container's memory limit."""
    number, unit = re.fullmatch(r"(\d+)(\D*)", shm).groups()  # type: ignore[union-attr]
    mib = gib * 1024 + int(number) * {"Gi": 1024, "Mi": 1, "Ki": 1 / 1024, "": 1 / 1024**2}[unit]
    return f"{math.ceil(mib / 1024)}Gi"


def _cache_size(weights_gib: float) -> str:
    """The weights, a fifth more for a second revision beside them, and 2 GiB for configs, tokenizer and locks."""
    return f"{math.ceil(weights_gib * 1.2) + 2}Gi"


def scaled_object(w: Workload) -> dict[str, object]:
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
