"""The files the native runner writes for its services: the door's nginx config and Redis's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from llmfleet.plan.schema import Plan
from llmfleet.plan.serving import BACKEND_GUARD
from llmfleet.render import door as render_door
from llmfleet.render import gateway as render_gateway
from llmfleet.render import prometheus as render_prometheus
from llmfleet.render import router as render_router
from llmfleet.render import write_files
from llmfleet.run.native import postgres
from llmfleet.run.native.services import HOST, topology
from llmfleet.settings import Settings


def write_door_config(plan: Plan, settings: Settings, root: Path) -> None:
    """The door's config, its script and its private state folder (temp files, the key cache)."""
    folder = settings.run_dir / "door"
    user = door_workers_user(folder)
    folder.mkdir(mode=0o711 if user else 0o700, parents=True, exist_ok=True)
    door = render_door.Door(
        listen=f"{HOST}:{settings.GATEWAY_PORT}",
        litellm=f"{HOST}:{settings.LITELLM_PORT}",
        router=f"{HOST}:{settings.ROUTER_PORT}",
        state_dir=str(folder),
        max_body_mb=settings.GATEWAY_MAX_BODY_MB,
        script=str(folder / render_door.SCRIPT.name),
        stream_first_byte_s=render_door.stream_first_byte_timeout(plan),
        user=user,
    )
    # Copied, like LiteLLM's files, so editing gateway/ never changes a running door.
    shutil.copyfile(root / render_door.SCRIPT, folder / render_door.SCRIPT.name)
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
    for borrowed in render_gateway.BORROWED_FILES:
        files[run_dir / "gateway" / borrowed.name] = (root / borrowed).read_text(encoding="utf-8")
    files[run_dir / "vllm" / BACKEND_GUARD] = (root / "vllm" / BACKEND_GUARD).read_text(encoding="utf-8")
    launcher = Path("router") / render_router.LAUNCHER
    files[run_dir / launcher] = (root / launcher).read_text(encoding="utf-8")
    write_files(files)
    write_door_config(plan, settings, root)
    write_redis_config(run_dir / "redis", settings.REDIS_PORT, secrets["REDIS_PASSWORD"])
    key = run_dir / "secrets" / "gateway.key"  # Prometheus' key for the gateway's /metrics, issued once the key
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # database runs (keys.py); empty until then
    key.touch(mode=0o600)
    key.write_text("")
    # The key database's cluster, created on first use.
    postgres.initialize(postgres.bindir(settings.POSTGRES_BIN_DIR), settings.postgres_data_dir,
                        secrets["POSTGRES_PASSWORD"])  # fmt: skip


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
