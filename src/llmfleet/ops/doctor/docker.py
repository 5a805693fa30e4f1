"""The Docker checks: the NVIDIA Container Toolkit, the engine, the Compose plugin, WSL."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from llmfleet.ops.doctor.common import COMPOSE_FEATURES, ENGINE_FIXES, FAIL, GIB, PASS, WARN, WSL_LIBCUDA, Check, Host


def container_toolkit(host: Host) -> Check:
    name = "Docker GPU runtime"
    if shutil.which("docker") is None:
        return Check(name, WARN, "docker is not installed: `llmfleet up` runs the fleet as local processes.",
                     "for the Compose stack install Docker Engine with Compose v2 (and, with GPUs, the NVIDIA "
                     "Container Toolkit).")  # fmt: skip
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{json .Runtimes}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Check(name, WARN, "the Docker engine did not answer within 10 s.", "check `docker info`.")
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        return Check(name, WARN, f"no Docker engine answers ({why}): `llmfleet up` runs local processes.",
                     "start Docker (`sudo systemctl start docker`) to run the Compose stack.")  # fmt: skip
    try:
        runtimes_found = sorted(json.loads(result.stdout or "{}") or {})
    except json.JSONDecodeError:
        runtimes_found = []
    hook = shutil.which("nvidia-container-runtime-hook") or shutil.which("nvidia-ctk")
    detail = f"engine answers; runtimes: {', '.join(runtimes_found) or 'none listed'}; toolkit: {hook or 'not found'}"
    if not host.has_gpu:
        return Check(name, PASS, detail + " (not needed without a GPU)")
    if hook is None or "nvidia" not in runtimes_found:
        return Check(
            name,
            FAIL,
            detail + ": Compose cannot give containers a GPU ('could not select device driver \"nvidia\"').",
            "install the NVIDIA Container Toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker && "
            "sudo systemctl restart docker`.",
        )
    return Check(name, PASS, detail)


def docker_version(command: list[str]) -> str | None:
    """What a `docker ... version` command prints, or None without docker or an answer."""
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(28, 3, 3) from "28.3.3", "v2.40.3" or a distribution's "20.10.24+dfsg1"; None if it is not a version."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    return (int(match[1]), int(match[2]), int(match[3] or 0)) if match else None


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def docker_engine(version: str | None) -> Check:
    name = "Docker Engine"
    if version is None:
        return Check(name, PASS, "no Docker engine answers: nothing is published by Docker")
    found = parse_version(version)
    if found is None:
        return Check(name, WARN, f"cannot read the engine's version ({version!r})", "check `docker version`.")
    missing = [why for fixed, why in ENGINE_FIXES if found < fixed]
    if not missing:
        return Check(name, PASS, f"Docker Engine {version}")
    needed = _dotted(ENGINE_FIXES[-1][0])
    return Check(
        name,
        WARN,
        f"Docker Engine {version} is older than {needed}: " + "; ".join(missing) + ". That exposes the gateway, "
        "Prometheus and Grafana to the LAN.",
        f"upgrade Docker Engine to {needed} or later (Docker's own packages; Debian's docker.io lags), or drop "
        "packets from other hosts to Docker's bridge networks in the host's firewall.",
    )


def compose_plugin(version: str | None) -> Check:
    name = "Compose plugin"
    if version is None:
        return Check(name, PASS, "no `docker compose`: `llmfleet up` runs the fleet as local processes")
    found = parse_version(version)
    needed = max(v for v, _ in COMPOSE_FEATURES)
    if found is None:
        return Check(name, WARN, f"cannot read Compose's version ({version!r})", "check `docker compose version`.")
    missing = [f"{what} needs {_dotted(v)}" for v, what in COMPOSE_FEATURES if found < v]
    if not missing:
        return Check(name, PASS, f"Compose {version}")
    return Check(
        name,
        WARN,
        f"Compose {version} cannot read our Compose files: " + "; ".join(missing) + ".",
        f"upgrade the Compose plugin to {_dotted(needed)} or later (Docker's docker-compose-plugin package).",
    )


def is_wsl() -> bool:
    try:
        return "microsoft" in Path("/proc/version").read_text().lower()
    except OSError:
        return False


def wsl(host: Host) -> Check:
    if not host.wsl:
        return Check("WSL2", PASS, "not WSL")
    problems, fixes = [], []
    if host.has_gpu and not WSL_LIBCUDA.exists():
        problems.append(f"{WSL_LIBCUDA} is missing (the Windows driver provides it)")
        fixes.append("update the NVIDIA driver on Windows, then `wsl --shutdown` and reopen WSL")
    if str(host.hub.home).startswith("/mnt/"):
        problems.append(f"HF_CACHE ({host.hub.home}) is on a Windows drive: loading weights over it is slow")
        fixes.append("set HF_CACHE in .env to a folder inside WSL, e.g. ~/.cache/huggingface")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    detail = f"WSL2, {memory:.0f} GiB of memory (.wslconfig sets it)"
    if problems:
        return Check("WSL2", WARN, detail + "; " + "; ".join(problems), "; ".join(fixes))
    return Check("WSL2", PASS, detail)
