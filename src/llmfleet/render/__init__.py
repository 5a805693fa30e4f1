"""Render every file that depends on the plan, for Compose (committed) or for the native runner (its run dir).

The two differ only in addresses (`Topology`): the same functions write both, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

HEADER = "# Rendered by llmfleet render from {source}. Do not edit: change {source}, then run llmfleet render.\n"


@dataclass(frozen=True)
class Topology:
    """Where the gateway and Prometheus reach each part of the stack."""

    backends: tuple[str, ...]  # host:port of each vLLM server, in plan order
    gateway: str
    prometheus: str
    gpu_exporter: str | None  # None where no exporter runs (a CPU plan)
    gateway_key_file: str  # the file Prometheus reads the gateway's key from
    # How the stack names each backend (the gateway's model_info.id, Prometheus' `server`), in plan order:
    # on Kubernetes its pod; empty: the plan's server names (vllm-gpu0, ...).
    server_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tagged:
    """A value written with a YAML tag, such as Compose's `!override` (replace, not merge) and `!reset`."""

    tag: str
    value: object


class _Dumper(yaml.SafeDumper):
    """Block style, except short lists of scalars on one line; no anchors, so each block reads on its own."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list[object]) -> yaml.Node:
    short = all(isinstance(x, str | int | float) for x in data) and len(str(data)) < 60
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=short)


def _represent_tagged(dumper: yaml.SafeDumper, data: Tagged) -> yaml.Node:
    if isinstance(data.value, dict):
        return dumper.represent_mapping(data.tag, data.value)
    if isinstance(data.value, list):
        return dumper.represent_sequence(data.tag, data.value)
    return dumper.represent_scalar(data.tag, "" if data.value is None else str(data.value))


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(Tagged, _represent_tagged)


def to_yaml(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120, default_flow_style=False)


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
