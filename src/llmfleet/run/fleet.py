"""The fleet's lifecycle behind `up`, `setup`, `down`, `restart`, `status` and `logs`: choose the plan and the
runner, then hand over to it. What they return, the CLI shows (cli/report.py)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from llmfleet import output, paths, secrets
from llmfleet.errors import FleetError
from llmfleet.plan.catalog import Catalog, load_catalog
from llmfleet.plan.schema import Plan
from llmfleet.render.files import stale_files
from llmfleet.run.choose import choose_plan, choose_runner
from llmfleet.run.docker import lifecycle as dockerrun
from llmfleet.run.native import lifecycle as native
from llmfleet.run.native.services import history_dir
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
    running = _running_services(previous, root) if previous else []
    if running:
        return running
    chosen, label = choose_plan(plan)
    catalog = load_catalog(root)
    chosen.check_models(catalog, label)
    which, why = choose_runner(runner or settings.RUNNER)
    output.info(f"Runner: {which} ({why}).")
    keys = secrets.ensure_secrets(settings.secrets_file)
    started = time.monotonic()
    if which == "native":
        state = native.up(chosen, label, catalog, settings, root, keys)
    else:
        state = _up_docker(plan, chosen, label, catalog, settings, root, keys)
    return Ready(state, settings, time.monotonic() - started)


def _up_docker(plan: str | None, chosen: Plan, label: str, catalog: Catalog, settings: Settings, root: Path,
               keys: dict[str, str]) -> State:  # fmt: skip
    if plan not in (None, "cpu"):
        raise FleetError(
            f"the docker runner runs the committed renderings (of fleet.yaml, and of the built-in cpu plan in "
            f"compose.cpu.yaml), not {plan}.",
            f"copy {plan} to fleet.yaml and run `llmfleet render`, or use `--runner native`.",
            "--plan",
        )
    native.prepare_models(chosen, catalog, root)  # Compose mounts the converted folders from the cache
    if chosen.device == "cuda" and stale_files(chosen, catalog, root):
        raise FleetError("the Compose files differ from fleet.yaml.", "run `llmfleet render` first.", "fleet.yaml")
    env_file = {k: v for k, v in dotenv_values(root / ".env").items() if v is not None}
    return dockerrun.up(
        label,
        sorted(chosen.model_groups()),
        chosen.device == "cpu",
        settings,
        root,
        env_file,
        keys["LITELLM_MASTER_KEY"],
    )


def _running_services(state: State, root: Path) -> list[str]:
    if state.runner == "docker":
        return [row.name for row in dockerrun.status(state, root) if row.running]
    return [s.name for s in state.running()]


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
    state = State.load(settings.run_dir)
    if state is not None and state.runner == "docker":
        return dockerrun.down(state, paths.project_root(), settings)
    return [s.name for s in native.down(settings)]


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
    state = State.load(settings.run_dir)
    if state is not None and state.runner == "docker":
        dockerrun.compose(state, paths.project_root(), "restart", *services)
    else:
        native.restart(settings, services, timeout=settings.VLLM_START_TIMEOUT)
    output.info(f"{', '.join(services)} restarted.")


def status() -> list[ServiceStatus]:
    settings = load_settings()
    state = State.load(settings.run_dir)
    if state is not None and state.runner == "docker":
        return dockerrun.status(state, paths.project_root())
    return native.status(settings)


def logs(service: str | None, lines: int, follow: bool) -> None:
    settings = load_settings()
    state = State.load(settings.run_dir)
    if state is not None and state.runner == "docker":
        dockerrun.logs(state, paths.project_root(), service, lines, follow)
        return
    files = native.log_files(settings, service)
    for path in files:
        if len(files) > 1:
            output.heading(path.stem)
        text = path.read_text(errors="replace").splitlines()
        output.out.print("\n".join(text[-lines:]), markup=False, highlight=False)
    if follow:
        _follow(files)


def _follow(files: list[Path]) -> None:
    handles = {path: path.open("r", errors="replace") for path in files}
    for handle in handles.values():
        handle.seek(0, 2)
    try:
        while True:
            for path, handle in handles.items():
                for line in handle:
                    prefix = f"{path.stem} | " if len(files) > 1 else ""
                    output.out.print(prefix + line.rstrip("\n"), markup=False, highlight=False)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
