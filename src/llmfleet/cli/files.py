"""`render` and `dashboards`: the committed files rendered from plans and from code."""

from __future__ import annotations

from typing import Annotated

import typer

from llmfleet import output
from llmfleet.render import committed


def render(
    check: Annotated[bool, typer.Option("--check", help="Fail if a rendered file is stale.")] = False,
    target: Annotated[
        str, typer.Option(help="compose (fleet.yaml), kubernetes (kubernetes/plans/*.yaml) or all.")
    ] = "all",
) -> None:
    """Render every file that depends on a plan: Compose services, gateway models, Prometheus targets from
    fleet.yaml; Kubernetes manifests (kubernetes/) from kubernetes/plans/*.yaml."""
    for path in committed.render(check, target):
        output.info(f"wrote {path}")


def dashboards(
    check: Annotated[bool, typer.Option("--check", help="Fail if a committed dashboard is stale.")] = False,
) -> None:
    """Generate the Grafana dashboards (monitoring/grafana/dashboards/*.json) from their code."""
    from llmfleet import dashboards as grafana_dashboards

    for path in grafana_dashboards.write(check):
        output.info(f"wrote {path}")
