"""kubernetes/components/: monitoring (ServiceMonitors, PodMonitors, the rules, the dashboards) and ingress;
kubernetes/prometheus/: the scrape configuration for a Prometheus outside the operator."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from llmfleet.render.k8s.common import (
    DASHBOARDS_DIR,
    DOOR,
    GATEWAY,
    GATEWAY_KEY_FILE,
    INGRESS,
    METRICS_KEY,
    MONITORING,
    NAME,
    NAMESPACE,
    PART_OF,
    READY_ONLY,
    RELEASE_LABEL,
    RENDERER,
    ROUTER,
    RULES_DIR,
    SECRET,
    VLLM_TARGET_LABELS,
    document,
    kustomize,
)
from llmfleet.render.prometheus import SCRAPE_INTERVAL


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
                    "authorization": {"type": "Bearer", "credentials": {"name": SECRET, "key": METRICS_KEY}},
                }
            ],
        },
    }
    router_monitor: dict[str, object] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": ROUTER, "labels": {**PART_OF, **RELEASE_LABEL}},
        "spec": {
            "jobLabel": NAME,  # job="router": its smg_* series, and GatewayRouterDown
            "selector": {"matchLabels": {NAME: ROUTER}},
            "endpoints": [
                {
                    "port": "metrics",
                    "interval": SCRAPE_INTERVAL,
                    # SMG names a backend by its URL, http://<pod>.<service>:<port>: `server` is the pod, as on
                    # the engines' own series.
                    "metricRelabelings": [
                        {
                            "sourceLabels": ["worker"],
                            "regex": r"http://([^.]+)\..*",
                            "targetLabel": "server",
                            "replacement": "$1",
                        },
                    ],
                }
            ],
        },
    }
    return [pod_monitor, service_monitor, router_monitor]


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
    files[MONITORING / "kustomization.yaml"] = document(RENDERER, [kustomize("Component", resources=resources)], notes)
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
        INGRESS / "kustomization.yaml": document(RENDERER, [kustomize("Component", resources=["ingress.yaml"])]),
        INGRESS / "ingress.yaml": document(RENDERER, [ingress], notes),
    }
