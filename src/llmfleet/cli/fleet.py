"""`up`, `setup`, `down`, `status`, `logs` and `restart`: the fleet's lifecycle (run/fleet.py), shown."""

from __future__ import annotations

from typing import Annotated

import typer

from llmfleet.cli import report
from llmfleet.cli.app import PlanOption
from llmfleet.run import fleet
from llmfleet.settings import load_settings


def up(
    plan: PlanOption = None,
    runner: Annotated[str | None, typer.Option(help="native or auto (default: RUNNER in .env).")] = None,
) -> None:
    """Start the fleet and return once the gateway answers a completion."""
    started = fleet.up(plan=plan, runner=runner)
    if isinstance(started, list):
        report.already_running(started)
        return
    report.ready(started.state, started.settings, started.seconds)


def setup(plan: PlanOption = None) -> None:
    """Install the runtimes and model files the plan needs, without starting anything."""
    fleet.setup(plan=plan)


def down(
    volumes: Annotated[
        bool, typer.Option("--volumes", help="Also remove Prometheus' history and Grafana's state (said first).")
    ] = False,
) -> None:
    """Stop exactly what `up` started. Prometheus' history and Grafana's state stay unless --volumes is given."""
    report.stopped(fleet.down())
    if volumes:
        fleet.remove_history(load_settings())


def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per service.")] = False) -> None:
    """Show each service, its pid, port and health. Exits 1 unless every service is healthy."""
    rows = fleet.status()
    report.status(rows, as_json)
    if not (rows and all(r.healthy for r in rows)):
        raise typer.Exit(1)


def logs(
    service: Annotated[str | None, typer.Argument(help="vllm-cpu0, gateway, prometheus, ... (default: all).")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="How many lines from the end.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
) -> None:
    """Show the logs of the running (or last) fleet."""
    fleet.logs(service, lines, follow)


def restart(services: Annotated[list[str], typer.Argument(help="vllm-cpu0, gateway, prometheus, ...")]) -> None:
    """Start services of the running fleet again (after a crash, or to pick up a change)."""
    fleet.restart(services)
