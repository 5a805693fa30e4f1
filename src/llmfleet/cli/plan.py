"""`plan` (print a plan for this host's GPUs or described ones, and write it when asked) and `secrets`."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from llmfleet import output, paths
from llmfleet import secrets as fleet_secrets
from llmfleet.cli import report
from llmfleet.errors import FleetError
from llmfleet.plan import cluster, description, hardware, planner
from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.schema import dump_plan, plan_path, read_usable_context
from llmfleet.settings import load_settings

GpusOption = Annotated[
    str | None,
    typer.Option(
        help="Cards to plan for instead of this host's, e.g. 2x12GiB:RTX3060, 1x24GiB,1x12GiB, none, "
        "or node pools 'pool-a=2x12GiB;pool-b=4x48GiB'."
    ),
]
ModelOption = Annotated[str | None, typer.Option(help="One catalog model on every card (refused where it cannot fit).")]


def plan(
    gpus: GpusOption = None,
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON (stdout holds only that).")] = False,
    write: Annotated[bool, typer.Option("--write", help="Write the plan to fleet.yaml.")] = False,
    out: Annotated[str | None, typer.Option(help="Write the plan to this file (node pools: the cluster plan).")] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show every layout weighed (replicas, pairs, 4-way) and why it lost.")
    ] = False,
) -> None:
    """Choose a model, context, concurrency and layout for every GPU by its VRAM budget, and print it. It writes only
    when asked: --write to fleet.yaml, --out FILE elsewhere."""
    write_plan(gpus, model, as_json, out, write, explain)


def secrets() -> None:
    """Generate the missing secrets into .env.secrets (git-ignored); existing values are kept."""
    settings = load_settings()
    fleet_secrets.ensure_secrets(settings.secrets_file)
    output.info(f"secrets are in {settings.secrets_file}")


def write_plan(
    gpus: str | None, model: str | None, as_json: bool, out: str | None, write: bool = False, explain: bool = False
) -> Path | None:
    """Plan this host's GPUs (or those `gpus` describes) and print it. It writes only when asked: `write` to
    fleet.yaml, `out` to that file (a GPU host's plan, or node pools' cluster plan); return what was written.

    A host without GPUs runs the built-in CPU plan, so there is no fleet.yaml to write for it; node pools are a
    cluster plan for the Kubernetes rendering, written only to `out`.
    """
    root = paths.project_root()
    catalog = load_catalog(root)
    inventory = None if gpus is not None else hardware.inventory()
    path = Path(out) if out else plan_path()
    usable = read_usable_context(path) if "=" not in (gpus or "") else None  # the user's override, kept
    hosts = planner.plan_gpus(gpus, inventory, catalog, model, usable=usable)
    again = "llmfleet plan" + (f" --gpus {shlex.quote(gpus)}" if gpus else "") + (f" --model {model}" if model else "")
    if "" not in hosts:  # node pools: a cluster plan for Kubernetes
        report.plan(cluster.describe_pools(hosts, catalog), as_json)
        if out is None:
            if write:
                raise FleetError(
                    "node pools make a cluster plan, not a fleet.yaml.",
                    "write it with --out kubernetes/plans/NAME.yaml.",
                    "--write",
                )
            if not as_json:
                output.info(f"Not written: `{again} --out kubernetes/plans/NAME.yaml` writes this cluster plan.")
            return None
        path = cluster.write_pools(hosts, out, gpus, model)
        output.info(
            f"wrote {path}; `llmfleet render --target kubernetes` renders an overlay of each kubernetes/plans/*.yaml."
        )
        return path
    report.plan({pool: description.describe(host, catalog) for pool, host in hosts.items()}, as_json, explain)
    host = hosts[""]
    if out is None and host.plan.device != "cuda":
        if write:
            output.info("Nothing was written: a host without GPUs runs the built-in CPU plan, not fleet.yaml.")
        return None
    if out is None and not write:
        if not as_json:
            output.info(f"Not written: `{again} --write` writes it to {plan_path().name} (`--out FILE` elsewhere).")
        return None
    command = "llmfleet plan" + (f" --gpus {gpus}" if gpus else "") + (f" --model {model}" if model else "")
    path.write_text(dump_plan(host.plan, planner.plan_file_header(host, command)), encoding="utf-8")
    output.info(f"wrote {path}; `llmfleet render` updates the Compose, gateway and Prometheus files from it.")
    return path
