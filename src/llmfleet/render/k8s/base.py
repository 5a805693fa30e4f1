"""kubernetes/base/: the namespace, the door, the gateway, the key database, their Services, budgets and network
policies."""

from __future__ import annotations

from pathlib import Path

from llmfleet.plan.serving import (
    BACKEND_GUARD,
    VLLM_CONTAINER_PORT,
)
from llmfleet.render import door, gateway, router
from llmfleet.render.k8s.common import (
    BASE,
    COMPONENT_OF_GATEWAY,
    COMPONENT_OF_ROUTER,
    COMPONENT_OF_VLLM,
    CONTAINER_SECURITY,
    DOOR,
    DOOR_CONFIG,
    DOOR_CONFIG_DIR,
    GATEWAY,
    GATEWAY_CONFIG,
    GATEWAY_CONFIG_DIR,
    GATEWAY_MEMORY_LIMIT,
    GATEWAY_REPLICAS,
    GUARD_CONFIG,
    HF_CONFIG,
    METRICS_KEY,
    NAME,
    NAMESPACE,
    PART_OF,
    POD_SECURITY,
    POSTGRES,
    POSTGRES_UID,
    PROMETHEUS_NAMESPACE,
    PROMETHEUS_POD_LABELS,
    RENDERER,
    ROUTER,
    ROUTER_LAUNCHER,
    ROUTER_LAUNCHER_DIR,
    ROUTER_WORKERS,
    SECRET,
    document,
    http_service,
    kustomize,
    pdb,
    pod_security,
)


def _probes(probe: dict[str, object], startup_failures: int) -> dict[str, object]:
    """A service's three probes on one check: it may take `startup_failures` periods to start, is taken out of its
    Service after 3 failures and restarted after 6."""
    return {
        "startupProbe": probe | {"failureThreshold": startup_failures},
        "readinessProbe": probe | {"failureThreshold": 3},
        "livenessProbe": probe | {"failureThreshold": 6},
    }


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
    return [deployment, http_service(DOOR, labels), pdb(DOOR, {NAME: DOOR}, labels, {"minAvailable": 1})]


def _router_objects(env: dict[str, str]) -> list[dict[str, object]]:
    """SMG, the door's fast lane, with the overlay's backends (ConfigMap router-workers) and the backends' key."""
    labels = {NAME: ROUTER, **PART_OF}
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 3}
    container = {
        "name": ROUTER,
        "image": env["ROUTER_IMAGE"],
        "command": ["python3", f"{ROUTER_LAUNCHER_DIR}/{router.LAUNCHER}"],
        "args": router.container_arguments([]),  # the backends come from ROUTER_WORKER_URLS
        "env": [
            {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "VLLM_API_KEY"}}},
            {"name": "ROUTER_WORKER_URLS",
             "valueFrom": {"configMapKeyRef": {"name": ROUTER_WORKERS, "key": "ROUTER_WORKER_URLS"}}},
        ],
        "ports": [{"name": "http", "containerPort": router.CONTAINER_PORT},
                  {"name": "metrics", "containerPort": router.CONTAINER_METRICS_PORT}],
        "volumeMounts": [{"name": "launcher", "mountPath": ROUTER_LAUNCHER_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "200m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": CONTAINER_SECURITY | {"runAsUser": 65534, "runAsGroup": 65534},
        **_probes(probe, startup_failures=12),
    }  # fmt: skip
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security("ROUTER_IMAGE"),
        "containers": [container],
        "volumes": [{"name": "launcher", "configMap": {"name": ROUTER_LAUNCHER}}],
    }
    deployment: dict[str, object] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": ROUTER, "labels": labels},
        "spec": {
            "replicas": 1,  # its load readings and health state live in the process: one view of the backends
            "selector": {"matchLabels": {NAME: ROUTER}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    service: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": ROUTER, "labels": labels},
        "spec": {
            "selector": {NAME: ROUTER},
            "ports": [{"name": "http", "port": router.CONTAINER_PORT, "targetPort": "http"},
                      {"name": "metrics", "port": router.CONTAINER_METRICS_PORT, "targetPort": "metrics"}],
        },
    }  # fmt: skip
    return [deployment, service]


def _gateway_objects(env: dict[str, str]) -> list[dict[str, object]]:
    labels = {NAME: GATEWAY, **PART_OF}
    probe = {"httpGet": {"path": "/health/liveliness", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5}
    key = [{"name": k, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": k}}}
           for k in ("LITELLM_MASTER_KEY", "VLLM_API_KEY", "POSTGRES_PASSWORD", METRICS_KEY)]  # fmt: skip
    container = {
        "name": GATEWAY,
        "image": env["LITELLM_IMAGE"],
        # The same command as Compose's; config.yaml includes models.yaml from its own folder. The base serves every
        # plan, so its worker count is .env's GATEWAY_WORKERS or one: a cluster adds gateway pods, not workers.
        "args": gateway.container_command(env.get("GATEWAY_WORKERS") or "1"),
        "ports": [{"name": "http", "containerPort": gateway.CONTAINER_PORT}],
        "env": [
            *key,
            {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
            {"name": "GATEWAY_DATA_PLANE", "value": env["GATEWAY_DATA_PLANE"]},  # the master key's lane (auth.py)
            # Users' keys (auth.py, keystore.py) in the postgres StatefulSet; the password is POSTGRES_PASSWORD above.
            {"name": "LLMFLEET_KEYS_DSN", "value": KEYS_DSN},
        ],
        "volumeMounts": [{"name": "config", "mountPath": GATEWAY_CONFIG_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": GATEWAY_MEMORY_LIMIT}},
        "securityContext": CONTAINER_SECURITY,
        **_probes(probe, startup_failures=12),
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
                    # gateway/'s files and, beside them, the backends' request checks that guard.py calls.
                    "volumes": [
                        {
                            "name": "config",
                            "projected": {
                                "sources": [
                                    {"configMap": {"name": GATEWAY_CONFIG}},
                                    {"configMap": {"name": GUARD_CONFIG}},
                                ]
                            },
                        }
                    ],
                },
            },
        },
    }
    return [deployment, http_service(GATEWAY, labels), pdb(GATEWAY, {NAME: GATEWAY}, labels, {"minAvailable": 1})]


KEYS_DSN = f"host={POSTGRES} port=5432 dbname=postgres user=postgres connect_timeout=3"


def _postgres_objects(env: dict[str, str]) -> list[dict[str, object]]:
    """The key database: one PostgreSQL pod with a volume of its own, as in Compose (gateway/compose.yaml)."""
    labels = {NAME: POSTGRES, **PART_OF}
    probe = {"exec": {"command": ["pg_isready", "--host", "127.0.0.1", "--username", "postgres"]},
             "periodSeconds": 10, "timeoutSeconds": 5}  # fmt: skip
    container = {
        "name": POSTGRES,
        "image": env["POSTGRES_IMAGE"],
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "env": [
            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "POSTGRES_PASSWORD"}}},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},  # a folder inside the volume
        ],
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},  # its socket and lock
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - initdb's temp files, in its pod
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {**CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        **_probes(probe, startup_failures=30),
    }
    statefulset: dict[str, object] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": POSTGRES, "labels": labels},
        "spec": {
            "serviceName": POSTGRES,
            "replicas": 1,
            "selector": {"matchLabels": {NAME: POSTGRES}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security("POSTGRES_IMAGE")
                    | {"runAsUser": POSTGRES_UID, "runAsGroup": POSTGRES_UID, "fsGroup": POSTGRES_UID},
                    "containers": [container],
                    "volumes": [{"name": "run", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
            # The keys outlive the pod: deleting the StatefulSet keeps this claim (Kubernetes' default).
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": labels},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }
    service: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": POSTGRES, "labels": labels},
        # Headless, as a StatefulSet's Service is: `postgres` resolves to the one pod.
        "spec": {
            "clusterIP": "None",
            "selector": {NAME: POSTGRES},
            "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres"}],
        },
    }
    return [statefulset, service]


def _postgres_network_policy() -> dict[str, object]:
    """The key database answers the gateway only: not Prometheus, nor any other pod."""
    return _admit_only(POSTGRES, POSTGRES, (GATEWAY,), 5432, monitored=False)


def _gateway_network_policy() -> dict[str, object]:
    """LiteLLM answers its door, the vLLM servers (their guards' usage reports, with the backends' key) and Prometheus
    only: a client never reaches it around the door's checks."""
    return _admit_only(GATEWAY, GATEWAY, (DOOR, "vllm"), gateway.CONTAINER_PORT)


def _network_policy() -> dict[str, object]:
    """vLLM answers the gateway, the router and Prometheus only."""
    return _admit_only("vllm", "vllm", (GATEWAY, ROUTER), VLLM_CONTAINER_PORT)


def _router_network_policy() -> dict[str, object]:
    """The router answers its door and Prometheus only (its metrics port too)."""
    return _admit_only(ROUTER, ROUTER, (DOOR,), router.CONTAINER_PORT, router.CONTAINER_METRICS_PORT)


def _admit_only(name: str, app: str, clients: tuple[str, ...], port: int, *more_ports: int,
                monitored: bool = True) -> dict[str, object]:  # fmt: skip
    """Pods labelled `app` accept traffic on `port` (and `more_ports`) from this namespace's `clients` pods and
    (`monitored`) Prometheus only."""
    prometheus = {
        # One peer, both selectors: Prometheus pods of that namespace only. A pod labelled prometheus in any other
        # namespace is refused.
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": PROMETHEUS_NAMESPACE}},
        "podSelector": {"matchLabels": PROMETHEUS_POD_LABELS},
    }
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
                        *({"podSelector": {"matchLabels": {NAME: client}}} for client in clients),  # this namespace's
                        *([prometheus] if monitored else []),
                    ],
                    "ports": [{"protocol": "TCP", "port": p} for p in (port, *more_ports)],
                }
            ],
        },
    }


def base_files(root: Path, env: dict[str, str]) -> dict[Path, str]:
    # The hand-written files LiteLLM loads, the door's config and the backend guard are read where they are, by
    # kustomize Components in gateway/ and vllm/ (kustomize reads files only below a kustomization): no copies.
    gateway_component = kustomize(
        "Component",
        configMapGenerator=[
            # gateway/config.yaml, auth.py ... as they are; each overlay adds its models.yaml.
            {"name": GATEWAY_CONFIG, "files": list(gateway.GATEWAY_FILES)},
            {"name": DOOR_CONFIG, "files": [door.CONTAINER_CONFIG.name, door.SCRIPT.name]},
        ],
    )
    vllm_component = kustomize("Component", configMapGenerator=[{"name": GUARD_CONFIG, "files": [BACKEND_GUARD]}])
    router_component = kustomize(
        "Component", configMapGenerator=[{"name": ROUTER_LAUNCHER, "files": [router.LAUNCHER]}]
    )
    kustomization = kustomize(
        resources=[
            "namespace.yaml",
            "door.yaml",
            "router.yaml",
            "gateway.yaml",
            "postgres.yaml",
            "network-policy.yaml",
        ],
        components=[f"../../{COMPONENT_OF_GATEWAY}", f"../../{COMPONENT_OF_VLLM}", f"../../{COMPONENT_OF_ROUTER}"],
        configMapGenerator=[
            # Where vLLM downloads from. In China: an overlay's configMapGenerator with behavior: merge and
            # HF_ENDPOINT=https://hf-mirror.com (README: More than one host).
            {"name": HF_CONFIG, "literals": [f"{k}={env[k]}" for k in ("HF_ENDPOINT", "HF_HUB_OFFLINE")]},
        ],
    )
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NAMESPACE, "labels": {**PART_OF, **POD_SECURITY}}}  # fmt: skip
    gateway_notes = (
        f"The gateway: LiteLLM with the hand-written files of gateway/ (ConfigMap {GATEWAY_CONFIG}) and the overlay's",
        f"models.yaml. Its keys come from the Secret {SECRET}, which you create (nothing default is shipped):",
        f"  kubectl -n {NAMESPACE} create secret generic {SECRET} --from-literal=LITELLM_MASTER_KEY=$(openssl rand "
        "-hex 24) --from-literal=VLLM_API_KEY=$(openssl rand -hex 24) --from-literal=POSTGRES_PASSWORD=$(openssl rand "
        f"-hex 24) --from-literal={METRICS_KEY}=$(openssl rand -hex 24)",
        f"Users' keys live in the {POSTGRES} StatefulSet (postgres.yaml); the gateway creates its tables at first use.",
    )
    postgres_notes = (
        "The key database (`llmfleet keys`): PostgreSQL with a 1 GiB volume claim, which outlives the pod. Its",
        f"password is POSTGRES_PASSWORD in the Secret {SECRET}; it answers the gateway's pods only",
        "(network-policy.yaml).",
        f"Manage keys with `kubectl -n {NAMESPACE} exec deploy/{GATEWAY} -- python3 {GATEWAY_CONFIG_DIR}/keystore.py "
        "create NAME` (also list, revoke, export; import reads stdin): what `llmfleet keys` runs on the other runners.",
    )
    door_notes = (
        "The front door: nginx with gateway/door.conf (rendered from src/llmfleet/render/door.py), the Service clients",
        f"reach: `kubectl -n {NAMESPACE} port-forward svc/{DOOR} 4000:4000`. It checks each key with LiteLLM (the",
        "gateway Service) before it reads a body, and passes on only the routes the stack serves.",
    )
    router_notes = (
        "The router: SMG (src/llmfleet/render/router.py), the door's lane straight to the backends for the master key",
        "where GATEWAY_DATA_PLANE (.env, the gateway's env) is router. Each overlay names its backends (ConfigMap",
        f"{ROUTER_WORKERS}); it asks them with VLLM_API_KEY from the Secret {SECRET}.",
    )
    policy_notes = (
        "vLLM pods accept traffic on their port from this namespace's gateway and router and from Prometheus pods",
        f"({NAME}=prometheus) in namespace {PROMETHEUS_NAMESPACE} (kube-prometheus-stack's) only; patch the namespace",
        "if your Prometheus runs elsewhere. Gateway pods accept this namespace's door and the same Prometheus only.",
        f"The key database ({POSTGRES}) accepts this namespace's gateway only. Probes come from the kubelet.",
    )
    component_notes = ("Kubernetes' base (kubernetes/base) includes this Component: kustomize reads these files here.",)
    files = {
        BASE / "kustomization.yaml": document(RENDERER, [kustomization]),
        BASE / "namespace.yaml": document(RENDERER, [namespace]),
        BASE / "door.yaml": document(".env", _door_objects(env), door_notes),
        BASE / "router.yaml": document(".env", _router_objects(env), router_notes),
        BASE / "gateway.yaml": document(".env", _gateway_objects(env), gateway_notes),
        BASE / "postgres.yaml": document(".env", _postgres_objects(env), postgres_notes),
        BASE / "network-policy.yaml": document(
            RENDERER,
            [_network_policy(), _gateway_network_policy(), _router_network_policy(), _postgres_network_policy()],
            policy_notes,
        ),
    }
    files[COMPONENT_OF_GATEWAY / "kustomization.yaml"] = document(RENDERER, [gateway_component], component_notes)
    files[COMPONENT_OF_VLLM / "kustomization.yaml"] = document(RENDERER, [vllm_component], component_notes)
    files[COMPONENT_OF_ROUTER / "kustomization.yaml"] = document(RENDERER, [router_component], component_notes)
    return files
