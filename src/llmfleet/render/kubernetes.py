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
every replica has a stable DNS name and the gateway keeps one entry per backend, as in Compose."""

from __future__ import annotations

from pathlib import Path

from llmfleet.errors import FleetError
from llmfleet.plan import cluster
from llmfleet.plan.catalog import load_catalog
from llmfleet.render import write_files
from llmfleet.render.k8s.base import base_files
from llmfleet.render.k8s.common import RENDERED_DIRS, SCRAPE_CONFIG, env_settings
from llmfleet.render.k8s.components import ingress_files, monitoring_files, scrape_config
from llmfleet.render.k8s.overlays import overlay_files


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
