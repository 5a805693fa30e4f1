"""Grafana dashboards as code: `generate.py` builds them with grafana-foundation-sdk from the queries in
`queries.py`, into monitoring/grafana/dashboards/*.json, which Grafana loads through provisioning.

The JSON is committed, so Grafana needs no Python; the generator is a development tool (the `dev` extra)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from llmfleet import paths
from llmfleet.errors import FleetError
from llmfleet.render import write_files


def generator() -> ModuleType:
    try:
        from llmfleet.dashboards import generate
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("grafana_foundation_sdk"):
            raise
        raise FleetError(
            "the dashboards are generated with grafana-foundation-sdk, which is not installed here.",
            "run `make dashboards`, which installs the development tools into .venv first, or "
            "`.venv/bin/pip install -e '.[dev]'`.",
            "pyproject.toml: [project.optional-dependencies] dev",
        ) from None
    return generate


def write(check: bool) -> list[Path]:
    """Write the dashboards whose JSON changed (or, with `check`, fail if any differs); return those written."""
    root = paths.project_root()
    files: dict[Path, str] = generator().render(root)
    if check:
        stale = [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        if stale:
            names = ", ".join(str(p.relative_to(root)) for p in stale)
            raise FleetError(
                f"{names} differ from a fresh generation of the dashboards' code.",
                "run `llmfleet dashboards` (or `make dashboards`) and commit the JSON.",
                names,
            )
        return []
    return write_files(files)
