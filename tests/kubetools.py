"""Helpers for tests/test_kubernetes.py: build an overlay with kubectl, validate objects against schemas, and
evaluate what a schema cannot (label selectors, network policy peers, Prometheus relabeling)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "kubernetes" / "schemas"
KUBERNETES_VERSION = "1.32.0"


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl (1.32, with kustomize 5.5) is not on PATH; this machine kind has it (field notes)"
    return found


def build(folder: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize FOLDER`: the objects `kubectl apply -k` would send."""
    result = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"kubectl kustomize {folder} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def is_custom(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].split("/")[0] in {"monitoring.coreos.com", "keda.sh"}


def validate_core(obj: dict[str, Any]) -> None:
    """Kubernetes' own schema for the kind, strict: an unknown field is an error, as the API server's is."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the CRD's openAPIV3Schema kept in kubernetes/schemas/, made strict."""
    schemas = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        schemas[(doc["apiVersion"], doc["kind"])] = _strict(doc["openAPIV3Schema"])
    return schemas


def _strict(schema: Any) -> Any:
    """A structural schema prunes unknown fields silently (and `kubectl apply` refuses them): make them errors."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validate_custom(obj: dict[str, Any]) -> None:
    schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    assert schema is not None, f"no CRD schema in kubernetes/schemas/ for {obj['apiVersion']} {obj['kind']}"
    body = copy.deepcopy(obj)
    jsonschema.Draft7Validator(schema).validate(body)


def validate(obj: dict[str, Any]) -> None:
    (validate_custom if is_custom(obj) else validate_core)(obj)


# --- what a schema cannot check


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a set of labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_templates(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every Deployment and StatefulSet."""
    return [(o, o["spec"]["template"]) for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def admits(policy: dict[str, Any], namespace: str, pod_labels: dict[str, str], ns_labels: dict[str, str],
           port: int) -> bool:  # fmt: skip
    """Whether a NetworkPolicy's ingress rules let a pod (in `namespace`, with these labels) reach `port`."""
    own = policy["metadata"]["namespace"]
    for rule in policy["spec"].get("ingress") or []:
        ports = rule.get("ports")
        if ports and not any(p.get("port") == port for p in ports):
            continue
        for peer in rule.get("from") or []:
            ns_ok = matches(peer["namespaceSelector"], ns_labels) if "namespaceSelector" in peer else namespace == own
            pod_ok = matches(peer["podSelector"], pod_labels) if "podSelector" in peer else True
            if ns_ok and pod_ok:
                return True
    return False


def relabel(rules: list[dict[str, Any]], labels: dict[str, str], snake: bool) -> dict[str, str] | None:
    """Prometheus relabeling (keep and replace, the actions we use) of one target; None when dropped. `snake`:
    Prometheus' own field names (source_labels); else the operator's (sourceLabels)."""
    labels = dict(labels)
    for rule in rules:
        sources = rule.get("source_labels" if snake else "sourceLabels") or []
        value = (rule.get("separator") or ";").join(labels.get(s, "") for s in sources)
        regex = re.compile(f"(?:{rule.get('regex', '(.*)')})")
        action = rule.get("action", "replace")
        match = regex.fullmatch(value)
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                target = rule["target_label" if snake else "targetLabel"]
                replacement = re.sub(r"\$(\d+)", r"\\g<\1>", rule.get("replacement", "$1"))
                labels[target] = match.expand(replacement)
        else:
            raise AssertionError(f"relabel action {action} is not simulated here")
    return labels


def meta_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def pod_discovery_labels(name: str, template: dict[str, Any], ready: bool) -> dict[str, str]:
    """The __meta_* labels Prometheus' pod discovery gives a pod made from this template (port http)."""
    meta = template["metadata"]
    labels = {"__meta_kubernetes_pod_name": name, "__meta_kubernetes_pod_ready": str(ready).lower(),
              "__meta_kubernetes_pod_container_port_name": "http"}  # fmt: skip
    labels |= {f"__meta_kubernetes_pod_label_{meta_name(k)}": v for k, v in meta.get("labels", {}).items()}
    labels |= {f"__meta_kubernetes_pod_annotation_{meta_name(k)}": v for k, v in meta.get("annotations", {}).items()}
    return labels
