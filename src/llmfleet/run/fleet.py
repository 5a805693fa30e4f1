"""The fleet's lifecycle behind `up`, `setup`, `down`, `restart`, `status` and `logs`: choose the plan and the
runner, then hand over to it. What they return, the CLI shows (cli/report.py)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from llmfleet import output, paths, secrets
from llmfleet.plan.catalog import load_catalog
from llmfleet.run.choose import choose_plan, choose_runner
from llmfleet.run.docker import lifecycle as dockerrun
from llmfleet.run.native import lifecycle as native
from llmfleet.run.native.services import history_dir
from llmfleet.run.runner import for_state, named
from llmfleet.run.state import ServiceStatus, State
from llmfleet.settings import Settings, load_settings


@dataclass(frozen=True)
class Ready:
    """A fleet `up` started: its state, and how long it took from handing over to the runner."""

    state: State
    settings: Settings
    seconds: float


def up(plan: str | None = None, runner: str | None = None) -> Ready | list[str]:
    """Start the fleet; or, when one runs already, start nothing and return its running services' names."""
    settings = load_settings()
    root = paths.project_root()
    previous = State.load(settings.run_dir)
    running = for_state(previous, settings, root).running() if previous else []
    if running:
        return running
    chosen, label = choose_plan(plan)
    catalog = load_catalog(root)
    chosen.check_models(catalog, label)
    which, why = choose_runner(runner or settings.RUNNER)
    output.info(f"Runner: {which} ({why}).")
    keys = secrets.ensure_secrets(settings.secrets_file)
    started = time.monotonic()
    state = named(which, settings, root).up(plan, chosen, label, catalog, keys)
    return Ready(state, settings, time.monotonic() - started)


def setup(plan: str | None = None) -> None:
    """Everything `up` needs installed, without starting anything."""
    settings = load_settings()
    chosen, label = choose_plan(plan)
    root = paths.project_root()
    catalog = load_catalog(root)
    chosen.check_models(catalog, label)
    secrets.ensure_secrets(settings.secrets_file)
    native.prepare(chosen, catalog, settings, root)
    output.info(f"Ready to run plan {label}.")


def down() -> list[str]:
    """Stop what `up` started; the names of the services stopped."""
    settings = load_settings()
    return for_state(State.load(settings.run_dir), settings, paths.project_root()).down()


def remove_history(settings: Settings) -> None:
    """What only `down --volumes` removes, said before it goes: Compose's volumes and the native TSDB."""
    volumes = dockerrun.project_volumes()
    tsdb = history_dir(settings)
    gone = [f"volume {v}" for v in volumes] + ([str(tsdb)] if tsdb.exists() else [])
    if not gone:
        output.info("No Prometheus history or Grafana state to remove.")
        return
    output.warn("Removing Prometheus' history and Grafana's state: " + ", ".join(gone) + ".")
    dockerrun.remove_volumes(volumes)
    shutil.rmtree(tsdb, ignore_errors=True)


def restart(services: list[str]) -> None:
    settings = load_settings()
    for_state(State.load(settings.run_dir), settings, paths.project_root()).restart(services)
    output.info(f"{', '.join(services)} restarted.")


def status() -> list[ServiceStatus]:
    settings = load_settings()
    return for_state(State.load(settings.run_dir), settings, paths.project_root()).status()


def logs(service: str | None, lines: int, follow: bool) -> None:
    settings = load_settings()
    for_state(State.load(settings.run_dir), settings, paths.project_root()).logs(service, lines, follow)
