"""Render every file that depends on the plan, for Compose (committed) or for the native runner (its run dir).

The two differ only in addresses (`Topology`): the same functions write both, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmfleet.yamltext import to_yaml

HEADER = "# Rendered by llmfleet render from {source}. Do not edit: change {source}, then run llmfleet render.\n"


@dataclass(frozen=True)
class Topology:
    """Where the gateway and Prometheus reach each part of the stack."""

    backends: tuple[str, ...]  # host:port of each vLLM server, in plan order
    gateway: str
    prometheus: str
    gpu_exporter: str | None  # None where no exporter runs (a CPU plan)
    gateway_key_file: str  # the file Prometheus reads the gateway's key from
    router_metrics: str | None = None  # host:port of the router's (SMG's) metrics; None where none runs
    # How the stack names each backend (the gateway's model_info.id, Prometheus' `server`), in plan order:
    # on Kubernetes its pod; empty: the plan's server names (vllm-gpu0, ...).
    server_names: tuple[str, ...] = ()


def rendered(body: object, source: str = "fleet.yaml") -> str:
    return HEADER.format(source=source) + to_yaml(body)


def write_files(files: dict[Path, str]) -> list[Path]:
    """Write the files whose content changed; return those."""
    changed = []
    for path, text in files.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
