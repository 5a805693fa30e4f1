"""YAML as llmfleet writes it (plan files and every rendering): block style, short lists of scalars on one line, no
anchors, tagged values (Compose's `!override`)."""

from __future__ import annotations

from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class Tagged:
    """A value written with a YAML tag, such as Compose's `!override` (replace, not merge) and `!reset`."""

    tag: str
    value: object


class Dumper(yaml.SafeDumper):
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


Dumper.add_representer(list, _represent_list)
Dumper.add_representer(Tagged, _represent_tagged)


def to_yaml(data: object) -> str:
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120, default_flow_style=False)
