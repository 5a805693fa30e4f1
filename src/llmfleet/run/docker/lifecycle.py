"""The Docker runner: the plan as the Compose project in compose.yaml (plus compose.cpu.yaml for the CPU plan),
started with `docker compose up -d --wait`. `down`, `status` and `logs` read what `up` recorded in the run dir."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from llmfleet import output, paths
from llmfleet.errors import FleetError
from llmfleet.render.compose_cpu import GPU_ONLY_PROFILE
from llmfleet.render.files import COMPOSE_CPU
from llmfleet.run import probe
from llmfleet.run.docker import images
from llmfleet.run.state import ServiceStatus, State
from llmfleet.settings import Settings

ENGINE_TIMEOUT = 10
PROJECT = "llmfleet"  # compose.yaml's `name:`; COMPOSE_PROJECT_NAME overrides it, as in Compose


def engine_answers() -> tuple[bool, str]:
    """Whether a Docker engine answers (DOCKER_HOST or the default socket), and in words why not."""
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, timeout=ENGINE_TIMEOUT, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        return False, "the docker command is not installed"
    except subprocess.TimeoutExpired:
        return False, f"the Docker engine did not answer within {ENGINE_TIMEOUT} s"
    if result.returncode != 0:
        return False, "no Docker engine answers (" + (result.stderr.strip().splitlines() or ["?"])[-1] + ")"
    return True, f"Docker engine {result.stdout.strip()} answers"


def has_nvidia_runtime() -> bool:
    result = subprocess.run(
        ["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and "nvidia" in json.loads(result.stdout or "{}")


def compose_args(cpu: bool) -> list[str]:
    return ["-f", "compose.yaml", *(["-f", str(COMPOSE_CPU)] if cpu else [])]


def image_choices(settings_env: dict[str, str], cpu: bool) -> dict[str, str]:
    """Use a stand-in built here (`llmfleet images build`) for any official image this host does not have."""
    chosen = {}
    for standin in images.STANDINS:
        if standin.setting == "VLLM_CPU_IMAGE" and not cpu:
            continue
        official = settings_env.get(standin.setting, "")
        if official and not images.image_present(official) and images.image_present(standin.tag):
            output.info(f"{standin.setting}: {official} is not on this host; using the stand-in {standin.tag}.")
            chosen[standin.setting] = standin.tag
    return chosen


def profile_choices(settings_env: dict[str, str]) -> dict[str, str]:
    """Leave out optional profiles whose images this host has and cannot pull (Grafana on an air-gapped host)."""
    wanted = [p for p in settings_env.get("COMPOSE_PROFILES", "").split(",") if p and p != GPU_ONLY_PROFILE]
    kept = []
    for profile, setting in (("dashboards", "GRAFANA_IMAGE"),):
        if profile not in wanted:
            continue
        image = settings_env.get(setting, "")
        if image and not images.image_present(image) and not _pull(image):
            output.warn(f"{image} is not on this host and cannot be pulled: starting without the {profile} profile.")
            continue
        kept.append(profile)
    kept += [p for p in wanted if p not in ("dashboards",)]
    return {"COMPOSE_PROFILES": ",".join(kept)}


def _pull(image: str) -> bool:
    try:
        return (
            subprocess.run(["docker", "pull", "-q", image], capture_output=True, timeout=300, check=False).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


def up(plan_label: str, models: list[str], cpu: bool, settings: Settings, root: Path,
       env_file: dict[str, str], key: str) -> State:  # fmt: skip
    """`docker compose up -d --wait`; the caller has checked that no earlier `up` still runs."""
    if not cpu and not has_nvidia_runtime():
        raise FleetError(
            "the plan needs GPUs, but this Docker engine has no NVIDIA runtime: no container could reach a GPU.",
            "install the NVIDIA Container Toolkit and restart Docker (`nvidia-ctk runtime configure --runtime=docker`),"
            " or run the CPU plan (`llmfleet up --plan cpu`), or the native runner (`--runner native`).",
            "--runner docker",
        )
    merged = {**env_file, **os.environ}
    with output.step("Checking the images built here (the router's)"):
        images.ensure_built(root, merged)
    choices = {**image_choices(merged, cpu), **profile_choices(merged)}
    if cpu:  # compose.cpu.yaml mounts the converted model from this cache (render/compose.py: converted_volume)
        choices["LLMFLEET_CACHE_DIR"] = str(paths.cache_dir())
    state = State(str(root), plan_label, models, runner="docker", compose=compose_args(cpu), compose_env=choices)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    state.save(settings.run_dir)  # before starting: `down` must find what a half-finished `up` left
    timeout = str(settings.VLLM_START_TIMEOUT)
    with output.step("Starting the Compose stack (docker compose up -d --wait)"):
        result = compose(state, root, "up", "-d", "--wait", "--wait-timeout", timeout, capture=True)
    if result.returncode != 0:
        detail = _failure_detail(state, root, result.stdout + result.stderr)
        compose(state, root, "down", "--remove-orphans", capture=True)  # volumes stay: they hold history
        state.clear(settings.run_dir)
        raise FleetError(
            "the Compose stack did not come up; it was taken down again.\n" + detail,
            "fix the cause above, then run `llmfleet up --runner docker` again.",
            "docker compose " + " ".join(state.compose),
        )
    problem = probe.first_answer(f"http://127.0.0.1:{settings.GATEWAY_PORT}", key, models)
    if problem:
        logs = compose(state, root, "logs", "--no-color", "--tail", "20", "gateway", capture=True).stdout
        raise FleetError(
            f"the stack is up, but {problem}. The end of the gateway's log:\n"
            + "\n".join("  | " + line for line in logs.strip().splitlines()[-20:]),
            "fix the cause above; `llmfleet logs gateway` shows the whole log, `llmfleet down` stops the stack.",
            "docker compose logs gateway",
        )
    return state


def _failure_detail(state: State, root: Path, output: str) -> str:
    lines = output.strip().splitlines()[-10:]
    ps = compose(state, root, "ps", "--all", "--format", "json", capture=True).stdout
    unhealthy = [
        s["Service"] for s in _ps_rows(ps) if s.get("Health") not in ("healthy", "") or s["State"] != "running"
    ]
    for service in unhealthy[:2]:
        logs = compose(state, root, "logs", "--no-color", "--tail", "15", service, capture=True).stdout
        lines += [f"--- the end of {service}'s log:", *logs.strip().splitlines()[-15:]]
    return "\n".join("  | " + line for line in lines)


def _ps_rows(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):  # older Compose: one array
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines()]  # newer: one object per line


def compose(state: State, root: Path, *args: str, capture: bool = False,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        ["docker", "compose", *state.compose, *args],
        cwd=root, env={**os.environ, **state.compose_env}, text=True, check=False,
        capture_output=capture, input=stdin,
    )  # fmt: skip


def down(state: State, root: Path, settings: Settings) -> list[str]:
    """Stop and remove the containers and network. The volumes stay: Prometheus' history and Grafana's state
    outlive a restart; only `llmfleet down --volumes` removes them (remove_volumes)."""
    names = [row["Service"] for row in _ps_rows(compose(state, root, "ps", "--format", "json", capture=True).stdout)]
    result = compose(state, root, "down", "--remove-orphans", capture=True)
    if result.returncode != 0:
        raise FleetError(
            "docker compose down failed:\n" + result.stderr.strip(),
            "check the engine (`docker info`) and run `llmfleet down` again.",
            "docker compose down",
        )
    state.clear(settings.run_dir)
    return names


def project_volumes() -> list[str]:
    """The Compose project's volumes on this engine (Prometheus' TSDB, Grafana's state); none without an engine."""
    project = os.environ.get("COMPOSE_PROJECT_NAME") or PROJECT
    try:
        result = subprocess.run(
            ["docker", "volume", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={project}"],
            capture_output=True, text=True, timeout=ENGINE_TIMEOUT, check=False,
        )  # fmt: skip
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return []
    return result.stdout.split() if result.returncode == 0 else []


def remove_volumes(names: list[str]) -> None:
    if not names:
        return
    result = subprocess.run(["docker", "volume", "rm", *names], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FleetError(
            "removing the volumes failed:\n" + result.stderr.strip(),
            "stop what still uses them (`docker ps -a --filter volume=NAME`), then run `llmfleet down --volumes`.",
            "docker volume rm",
        )


def status(state: State, root: Path) -> list[ServiceStatus]:
    rows = []
    for row in _ps_rows(compose(state, root, "ps", "--all", "--format", "json", capture=True).stdout):
        published = [p["PublishedPort"] for p in row.get("Publishers") or [] if p.get("PublishedPort")]
        pid = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Pid}}", row["ID"]], capture_output=True, text=True, check=False
        ).stdout.strip()
        running = row["State"] == "running"
        rows.append(ServiceStatus(
            name=row["Service"],
            pid=int(pid) if pid.isdigit() and pid != "0" else None,
            port=published[0] if published else None,
            running=running,
            healthy=running and row.get("Health") in ("healthy", ""),  # no health check: healthy while it runs
        ))  # fmt: skip
    return rows


def logs(state: State, root: Path, service: str | None, lines: int, follow: bool) -> None:
    args = [
        "logs",
        "--no-color",
        "--tail",
        str(lines),
        *(["--follow"] if follow else []),
        *([service] if service else []),
    ]
    compose(state, root, *args)
