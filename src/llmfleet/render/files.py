"""The committed rendering of the plan: what `docker compose up` reads."""

from __future__ import annotations

from pathlib import Path

from llmfleet.plan.catalog import Catalog
from llmfleet.plan.schema import Plan, cpu_plan
from llmfleet.render import HEADER, compose, compose_cpu, door, gateway, prometheus
from llmfleet.settings import load_settings

COMPOSE_SERVICES = Path("vllm/services.yaml")
GATEWAY_MODELS = Path("gateway/models.yaml")
PROMETHEUS_CONFIG = Path("monitoring/prometheus/prometheus.yml")
COMPOSE_CPU = Path("compose.cpu.yaml")
CPU_SOURCE = "the built-in CPU plan (cpu_plan in src/llmfleet/plan/schema.py)"


def compose_files(plan: Plan, catalog: Catalog, root: Path) -> dict[Path, str]:
    topology = compose.topology(plan)
    cpu = cpu_plan()
    cpu_topology = compose.topology(cpu)
    rules = ["/etc/prometheus/rules/*.yaml"]
    return {
        root / COMPOSE_SERVICES: compose.services(plan, catalog),
        root / GATEWAY_MODELS: gateway.model_list(plan, topology),
        root / PROMETHEUS_CONFIG: prometheus.config(plan, topology, rules),
        # The CPU variant: the same stack on a Docker host without GPUs.
        root / COMPOSE_CPU: compose_cpu.override(cpu, plan, catalog),
        root / compose_cpu.MODELS_FILE: _from_cpu_plan(gateway.model_list(cpu, cpu_topology)),
        root / compose_cpu.PROMETHEUS_FILE: _from_cpu_plan(prometheus.config(cpu, cpu_topology, rules)),
        # The SLOs of .env as series the alerts compare against (Prometheus rules cannot read .env).
        root / prometheus.SLO_RULES: prometheus.slo_rules(load_settings()),
        # The front door's nginx config for Compose and Kubernetes (the native runner writes its own at `up`).
        root / door.CONTAINER_CONFIG: door.container_conf(load_settings().GATEWAY_MAX_BODY_MB),
    }


def _from_cpu_plan(text: str) -> str:
    return text.replace(HEADER.format(source="fleet.yaml"), HEADER.format(source=CPU_SOURCE), 1)


def stale_files(plan: Plan, catalog: Catalog, root: Path) -> list[Path]:
    """Committed renderings that differ from a fresh one (or are missing)."""
    return [
        path
        for path, text in compose_files(plan, catalog, root).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]
