"""The native runner's services: each one's command line, environment, port and health check, from the plan."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from llmfleet import output
from llmfleet.errors import FleetError
from llmfleet.models import hfcache, realmodel, runtimes
from llmfleet.plan import synthetic
from llmfleet.plan.catalog import Catalog
from llmfleet.plan.schema import Plan
from llmfleet.plan.serving import NO_USAGE_STATS, SERVER_NAME_ENV, guard_env, model_path, vllm_args
from llmfleet.render import Topology
from llmfleet.render import gateway as render_gateway
from llmfleet.render import router as render_router
from llmfleet.run.native import postgres
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


def vllm_port(settings: Settings, i: int) -> int:
    return settings.VLLM_PORT_BASE + i


def topology(plan: Plan, settings: Settings, run_dir: Path) -> Topology:
    return Topology(
        backends=tuple(f"{HOST}:{vllm_port(settings, i)}" for i in range(len(plan.servers))),
        gateway=f"{HOST}:{settings.LITELLM_PORT}",  # Prometheus scrapes LiteLLM itself, not through the door
        prometheus=f"{HOST}:{settings.PROMETHEUS_PORT}",
        gpu_exporter=f"{HOST}:{GPU_EXPORTER_PORT}" if plan.device == "cuda" else None,
        gateway_key_file=str(run_dir / "secrets" / "gateway.key"),
        router_metrics=f"{HOST}:{settings.ROUTER_METRICS_PORT}",
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
        # The backend guard, its caps, and LiteLLM's own address for its usage reports.
        litellm = f"http://{HOST}:{settings.LITELLM_PORT}"
        env |= {"PYTHONPATH": str(run_dir / "vllm"), **guard_env(server, plan.device, litellm)}
        env[SERVER_NAME_ENV] = name
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

    # PostgreSQL before the gateway: its per-user keys and their usage (gateway/keystore.py).
    result.append(postgres_service(settings))

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
                "GATEWAY_DATA_PLANE": settings.GATEWAY_DATA_PLANE,  # read by gateway/auth.py: the master key's lane
                "LLMFLEET_KEYS_DSN": keys_dsn(settings, secrets),  # read by gateway/auth.py and usage.py
                **shared_state,
            },
        )
    )

    result.append(router_service(plan, settings, root, secrets))
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


def router_service(plan: Plan, settings: Settings, root: Path, secrets: dict[str, str]) -> Service:
    """SMG in front of every vLLM server (render/router.py): the door's fast lane."""
    backends = [f"http://{HOST}:{vllm_port(settings, i)}" for i in range(len(plan.servers))]
    argv = [
        str(runtimes.ROUTER.python(root)),
        str(settings.run_dir / "router" / render_router.LAUNCHER),
        *render_router.arguments(backends, HOST, settings.ROUTER_PORT, HOST, settings.ROUTER_METRICS_PORT),
    ]
    env = {"VLLM_API_KEY": secrets["VLLM_API_KEY"]}
    return Service("router", argv, settings.ROUTER_PORT, "ROUTER_PORT", "/health", env)


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


def postgres_service(settings: Settings) -> Service:
    """The key store's database, on 127.0.0.1; its files in POSTGRES_DATA_DIR (run/native/postgres.py)."""
    bin_dir = postgres.bindir(settings.POSTGRES_BIN_DIR)
    argv = postgres.server_argv(bin_dir, settings.postgres_data_dir, settings.POSTGRES_PORT)
    return Service("postgres", argv, settings.POSTGRES_PORT, "POSTGRES_PORT", "", scheme="postgres")


def keys_dsn(settings: Settings, secrets: dict[str, str]) -> str:
    return postgres.dsn(settings.POSTGRES_PORT, secrets["POSTGRES_PASSWORD"])


def history_dir(settings: Settings) -> Path:
    """Prometheus' TSDB. `down` leaves it (and the rest of the run dir): history outlives a restart."""
    return settings.run_dir / "prometheus" / "data"
