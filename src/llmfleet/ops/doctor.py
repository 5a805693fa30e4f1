"""`llmfleet doctor`: everything that commonly stops a fleet from starting, checked before it does.

Each check passes, warns or fails, and says what it saw and how to fix it. A host without a GPU (or without
Docker) is a supported host, not a broken one: it runs the CPU plan natively, and the checks say so. Only what
would make `llmfleet up` fail on this host fails here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from llmfleet import paths
from llmfleet.errors import FleetError
from llmfleet.models import download, hfcache, runtimes, verify
from llmfleet.plan import hardware
from llmfleet.plan.catalog import Catalog, load_catalog
from llmfleet.plan.hardware import Inventory
from llmfleet.plan.planner import MIN_COMPUTE_CAPABILITY, check_host
from llmfleet.plan.schema import Plan, cpu_plan, load_plan
from llmfleet.run.native.ports import port_is_free
from llmfleet.run.state import State
from llmfleet.settings import Settings, load_settings

PASS, WARN, FAIL = "pass", "warn", "fail"
GIB = 1024**3
# vLLM 0.32's CUDA wheels and the vllm/vllm-openai image are built with CUDA 12.9 (docs: gpu.cuda.inc.md,
# "pre-compiled C++ and CUDA (12.9) binaries"); a driver that supports less may not run them.
MIN_CUDA = (12, 9)
MIN_DRIVER_FOR_CUDA = "575"
# vLLM's install page (same file) says "GPU: compute capability 7.5 or higher"; the planner allows 7.0 (Volta).
DOCUMENTED_CAPABILITY = 7.5
# platforms/cuda.py:649 "Bfloat16 is only supported on GPUs with compute capability of at least 8.0"
BF16_CAPABILITY = 8.0
ENDPOINT_TIMEOUT = 5.0
# Engines older than these make ports published on 127.0.0.1 (the gateway, Prometheus, Grafana) reachable from the
# LAN: a neighbour routes packets for the container's address through this host (moby#45610, fixed in 28.0.0: "only
# engine < 28.0.0 allows remote access to ports published to the localhost address", docker/docs#22086), or, after a
# firewalld reload, through the lost rules (CVE-2025-54388, fixed in 28.3.3).
ENGINE_FIXES = (
    ((28, 0, 0), "moby#45610: a LAN neighbour can reach ports published on 127.0.0.1 by routing to the container"),
    ((28, 3, 3), "CVE-2025-54388: after a firewalld reload, ports published on 127.0.0.1 are reachable from the LAN"),
)
# What our Compose files use, and the Compose release that first reads it (docs.docker.com summary bars).
COMPOSE_FEATURES = (
    ((2, 20, 0), "`include` (compose.yaml)"),
    ((2, 24, 0), "`env_file` with `required` (every service with secrets)"),
    ((2, 24, 4), "the `!override` tag (compose.cpu.yaml)"),
)
WSL_LIBCUDA = Path("/usr/lib/wsl/lib/libcuda.so.1")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, warn or fail
    detail: str  # what was seen, with its values
    fix: str = ""  # what to do, for warn and fail


@dataclass(frozen=True)
class Host:
    """What the checks share, read once."""

    inventory: Inventory
    settings: Settings
    hub: hfcache.HubSettings
    catalog: Catalog
    plan: Plan | None  # fleet.yaml, or None when it cannot be read (the plan check says why)
    plan_problem: FleetError | None
    wsl: bool

    @property
    def has_gpu(self) -> bool:
        return bool(self.inventory.gpus)

    def plan_to_run(self) -> Plan:
        """The plan `llmfleet up` would run here: fleet.yaml where there are GPUs, the CPU plan where there are none."""
        return self.plan if self.has_gpu and self.plan is not None else cpu_plan()


def run() -> list[Check]:
    host = _read_host()
    return [
        driver(host),
        gpus(host),
        vram(host),
        libcuda(host),
        container_toolkit(host),
        docker_engine(docker_version(["docker", "version", "--format", "{{.Server.Version}}"])),
        compose_plugin(docker_version(["docker", "compose", "version", "--short"])),
        wsl(host),
        plan_matches(host),
        ports(host),
        hf_cache(host),
        hub_endpoint(host),
        disk(host),
        runtime(host),
    ]


def _read_host() -> Host:
    settings = load_settings()
    hub = hfcache.load_hub_settings()
    catalog = load_catalog(paths.project_root())
    try:
        plan, problem = load_plan(), None
    except FleetError as e:
        plan, problem = None, e
    return Host(hardware.inventory(), settings, hub, catalog, plan, problem, is_wsl())


# --- the NVIDIA driver and the cards --------------------------------------------------------------------------------


def driver(host: Host) -> Check:
    inv = host.inventory
    if not inv.driver:
        return Check(
            "NVIDIA driver",
            WARN,
            f"none: {inv.why_none}. `llmfleet up` runs the CPU plan (smollm2-135m on vLLM's CPU build) on this host.",
            "on a GPU host, install the NVIDIA driver until `nvidia-smi` works; in WSL2 install the Windows driver "
            "only (never a Linux one inside WSL).",
        )
    cuda = cuda_driver_version()
    shown = f"{cuda[0]}.{cuda[1]}" if cuda else "unknown"
    if cuda and cuda < MIN_CUDA:
        # CUDA's minor-version compatibility often carries a 12.x build on an older 12.x driver, so warn only.
        return Check(
            "NVIDIA driver",
            WARN,
            f"driver {inv.driver} supports CUDA up to {shown}; vLLM 0.32 is built with CUDA "
            f"{MIN_CUDA[0]}.{MIN_CUDA[1]}.",
            f"if a server fails with 'CUDA driver version is insufficient', update the NVIDIA driver to "
            f"{MIN_DRIVER_FOR_CUDA} or newer (`nvidia-smi` shows its CUDA version).",
        )
    return Check("NVIDIA driver", PASS, f"driver {inv.driver}, CUDA {shown}")


def cuda_driver_version() -> tuple[int, int] | None:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        version = pynvml.nvmlSystemGetCudaDriverVersion_v2()
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()
    return version // 1000, (version % 1000) // 10


def gpus(host: Host) -> Check:
    if not host.has_gpu:
        return Check("GPUs", WARN, "none visible: the CPU plan will be used.", "see the NVIDIA driver check.")
    rows, problems, fixes = [], [], []
    for g in host.inventory.gpus:
        rows.append(f"{g.index}: {g.name}, {g.memory_free_gib or 0:.1f} of {g.memory_total_gib:.1f} GiB free, "
                    f"compute capability {g.compute_capability}")  # fmt: skip
        capability = g.compute_capability or 0.0
        if capability < MIN_COMPUTE_CAPABILITY:
            problems.append(f"GPU {g.index} ({g.name}) has compute capability {capability}; vLLM needs "
                            f"{MIN_COMPUTE_CAPABILITY} or later")  # fmt: skip
            fixes.append(f"leave GPU {g.index} out of fleet.yaml (`llmfleet plan` does)")
        elif capability < DOCUMENTED_CAPABILITY:
            fixes.append(f"GPU {g.index} is below the {DOCUMENTED_CAPABILITY} vLLM's install page lists: if its "
                         "server fails with 'no kernel image', leave the card out")  # fmt: skip
        if MIN_COMPUTE_CAPABILITY <= capability < BF16_CAPABILITY:
            fixes.append(f"GPU {g.index} cannot use bfloat16: give its server `extra_args: [--dtype, half]`")
    status = FAIL if problems else (WARN if fixes else PASS)
    return Check("GPUs", status, "; ".join(problems + rows), "; ".join(fixes))


@dataclass(frozen=True)
class VramHolder:
    gpu: int
    pid: int
    name: str
    used_gib: float | None


def vram_holders() -> list[VramHolder]:
    """Processes holding GPU memory, by NVML (compute and graphics contexts both count)."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    found = []
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            seen = set()
            for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
                try:
                    procs = getter(handle)
                except pynvml.NVMLError:
                    continue
                for p in procs:
                    if p.pid in seen:
                        continue
                    seen.add(p.pid)
                    used = p.usedGpuMemory / GIB if isinstance(p.usedGpuMemory, int) else None
                    found.append(VramHolder(index, p.pid, _process_name(p.pid), used))
    finally:
        pynvml.nvmlShutdown()
    return found


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return "?"  # another PID namespace (a container) or gone


def vram(host: Host) -> Check:
    """vLLM refuses to start when free memory is below gpu_memory_utilization x total (v1/worker/utils.py:763)."""
    if not host.has_gpu:
        return Check("free VRAM", PASS, "no GPU: nothing to check.")
    holders = vram_holders()
    by_gpu = {g.index: g for g in host.inventory.gpus}
    problems, fixes = [], []
    plan = host.plan
    for i, server in enumerate(plan.servers if plan else []):
        for index in server.gpus:
            g = by_gpu.get(index)
            if g is None or g.memory_free_gib is None or server.gpu_memory_utilization is None:
                continue
            wanted = server.gpu_memory_utilization * g.memory_total_gib
            if g.memory_free_gib < wanted:
                mine = [h for h in holders if h.gpu == index]
                who = ", ".join(f"pid {h.pid} ({h.name}, {h.used_gib or 0:.1f} GiB)" for h in mine) or "unknown"
                fits = max(0.0, int((g.memory_free_gib / g.memory_total_gib - 0.02) * 100) / 100)
                problems.append(
                    f"GPU {index} has {g.memory_free_gib:.1f} GiB free; servers[{i}] asks for {wanted:.1f} GiB "
                    f"(gpu_memory_utilization {server.gpu_memory_utilization}); held by: {who}"
                )
                fixes.append(
                    f"stop those processes (`kill PID`), or set servers[{i}].gpu_memory_utilization to {fits} "
                    "in fleet.yaml"
                )
    listed = "; ".join(f"GPU {h.gpu}: pid {h.pid} {h.name} ({h.used_gib or 0:.1f} GiB)" for h in holders)
    if problems:
        return Check("free VRAM", FAIL, "; ".join(problems), "; ".join(fixes))
    detail = f"enough for the plan; other processes on the cards: {listed}" if listed else "no other process uses them"
    return Check("free VRAM", PASS, detail)


def libcuda(host: Host) -> Check:
    found = ctypes.util.find_library("cuda")
    try:
        ctypes.CDLL("libcuda.so.1")
        loads = True
    except OSError:
        loads = False
    if loads:
        return Check("libcuda", PASS, f"libcuda.so.1 loads ({found or 'found by the loader'})")
    if not host.has_gpu:
        return Check("libcuda", PASS, "not found, and not needed without a GPU")
    fix = (
        "add /usr/lib/wsl/lib to LD_LIBRARY_PATH (export LD_LIBRARY_PATH=/usr/lib/wsl/lib:$LD_LIBRARY_PATH)"
        if host.wsl
        else "`ldconfig -p | grep libcuda` must list it: reinstall the driver's libraries (e.g. libnvidia-compute-"
        f"{(host.inventory.driver or 'XXX').split('.')[0]}) and run `sudo ldconfig`"
    )
    return Check(
        "libcuda", FAIL, "the NVIDIA driver answers, but libcuda.so.1 does not load: vLLM cannot use CUDA", fix
    )


# --- Docker and the NVIDIA Container Toolkit ---------------------------------------------------------------------


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


# --- the host ------------------------------------------------------------------------------------------------------


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


def plan_matches(host: Host) -> Check:
    name = "plan vs hardware"
    if host.plan is None:
        e = host.plan_problem
        assert e is not None
        return Check(name, FAIL, e.what, e.fix)
    plan, found = host.plan, {g.index: g for g in host.inventory.gpus}
    if plan.device == "cpu":
        return Check(name, PASS, "fleet.yaml is a CPU plan")
    planned = ", ".join(f"{g.index}: {g.name} {g.memory_gib:.0f} GiB" for g in plan.gpus)
    if not found:
        return Check(name, WARN, f"fleet.yaml plans GPUs ({planned}); this host has none: `llmfleet up` runs the "
                     "CPU plan instead.", "run on the GPU host, or `llmfleet up --plan cpu` here.")  # fmt: skip
    try:
        check_host(plan, host.inventory.gpus)  # the same refusal `llmfleet up` gives
    except FleetError as e:
        return Check(name, FAIL, e.what, e.fix)
    unused = sorted(set(found) - {g.index for g in plan.gpus})
    note = f"; GPU(s) {unused} unused by the plan" if unused else ""
    return Check(name, PASS, f"fleet.yaml fits the GPUs ({planned}){note}")


# --- ports -----------------------------------------------------------------------------------------------------------


def ports(host: Host) -> Check:
    s = host.settings
    wanted = [
        ("GATEWAY_PORT", s.GATEWAY_PORT),
        ("LITELLM_PORT", s.LITELLM_PORT),
        ("PROMETHEUS_PORT", s.PROMETHEUS_PORT),
    ]
    wanted += [(f"VLLM_PORT_BASE+{i}", s.VLLM_PORT_BASE + i) for i in range(len(host.plan_to_run().servers))]
    state = State.load(s.run_dir)
    if state is not None and (state.runner == "docker" or state.running()):
        return Check("ports", PASS, f"llmfleet is running ({state.runner} runner): its ports are in use by it")
    taken = []
    for setting, port in wanted:
        if not port_is_free(port):
            holder = listener(port)
            taken.append(f"{port} ({setting}) is taken{f' by {holder}' if holder else ''}")
    listed = ", ".join(str(p) for _, p in wanted)
    if taken:
        return Check("ports", FAIL, "; ".join(taken),
                     "stop what listens there, or choose other ports in .env (the setting is named).")  # fmt: skip
    return Check("ports", PASS, f"{listed} are free on 127.0.0.1")


def listener(port: int) -> str | None:
    """'pid N (command)' of the process listening on `port`, from /proc (None if not ours to see)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if str(fd.readlink()) in inodes:
                    return f"pid {proc.name} ({_process_name(int(proc.name)) or '?'})"
        except OSError:
            continue
    return None


# --- models, cache and disk ----------------------------------------------------------------------------------------


def _plan_repos(host: Host) -> list[tuple[str, str]]:
    """(catalog name, repo) of fleet.yaml's real models: what `llmfleet download` fetches by default."""
    if host.plan is None:
        return []
    names = sorted({s.model for s in host.plan.servers})
    return [(n, m.repo) for n in names if (m := host.catalog.models.get(n)) is not None and m.repo]


def hf_cache(host: Host) -> Check:
    hub = host.hub
    notes, fixes, status = [f"HF_CACHE={hub.home}", f"source: {hub.source}"], [], PASS
    notes.append("HF_TOKEN is set" if hub.HF_TOKEN or os.environ.get("HF_TOKEN") else "no HF_TOKEN")
    for var in ("HF_HOME", "HF_HUB_CACHE"):
        value = os.environ.get(var)
        expected = hub.home if var == "HF_HOME" else hub.hub
        if value and Path(value).expanduser().resolve() != expected.resolve():
            status = WARN
            notes.append(f"{var}={value} in the environment differs")
            fixes.append(f"unset {var}, or set HF_CACHE in .env to the same folder: llmfleet and Compose use HF_CACHE")
    for name, repo in _plan_repos(host):
        snapshot = hfcache.snapshot_dir(hub.hub, repo) or hfcache.modelscope_dir(hub.modelscope, repo)
        if snapshot is None:
            partial = hfcache.cached_bytes(hub.hub, repo).partial
            notes.append(f"{name}: not downloaded" + (f" ({partial / GIB:.1f} GiB unfinished)" if partial else ""))
            status = WARN
            fixes.append(f"`llmfleet download {name}` (vLLM would otherwise download it, silently, at its first start)")
            continue
        result = verify.check_dir(snapshot)
        if result.ok:
            notes.append(f"{name}: complete")
        else:
            status = WARN
            notes.append(f"{name}: incomplete ({'; '.join(f'{p.file}: {p.what}' for p in result.problems[:3])})")
            fixes.append(f"`llmfleet download {name}` resumes it")
    return Check("HF cache", status, "; ".join(notes), "; ".join(fixes))


def hub_endpoint(host: Host) -> Check:
    hub = host.hub
    name = "model source"
    if hub.HF_HUB_OFFLINE:
        return Check(name, PASS, "offline mode (HF_HUB_OFFLINE=1): only the cache is used")
    if hub.source == "modelscope":
        try:
            import modelscope  # noqa: F401
        except ImportError:
            return Check(name, FAIL, "VLLM_USE_MODELSCOPE=True, but the modelscope package is not installed",
                         "`.venv/bin/pip install modelscope` (and into the vLLM environment or image)")  # fmt: skip
        url = "https://modelscope.cn"
    else:
        url = hub.endpoint
    try:
        httpx.head(url, timeout=ENDPOINT_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as e:
        fix = (
            f"check the network or proxy; in China set HF_ENDPOINT={hfcache.MIRROR} in .env (or VLLM_USE_MODELSCOPE="
            "True); with every model already downloaded, set HF_HUB_OFFLINE=1"
        )
        return Check(name, WARN, f"{url} cannot be reached ({type(e).__name__}: {e}): downloads will fail", fix)
    return Check(name, PASS, f"{url} answers")


def disk(host: Host) -> Check:
    hub = host.hub
    free, probe = download.free_bytes(hub.hub)
    need = 0
    for name, _repo in _plan_repos(host):
        w = download.Wanted(name, _repo, host.catalog.models[name])
        need += download.remaining_estimate(w, hub) or 0
    detail = f"{free / GIB:.1f} GiB free at {probe}"
    if need and free < need * (1 + download.HEADROOM):
        status = FAIL if host.has_gpu else WARN
        return Check("disk", status, f"{detail}; fleet.yaml's models need {need / GIB:.1f} GiB more",
                     "free space there, or set HF_CACHE in .env to a folder on a larger disk.")  # fmt: skip
    return Check("disk", PASS, detail + (f"; fleet.yaml's models need {need / GIB:.1f} GiB more" if need else ""))


def runtime(host: Host) -> Check:
    root = paths.project_root()
    plan = host.plan_to_run()
    needed = [runtimes.GATEWAY]
    if not host.settings.VLLM_PYTHON:
        needed.append(runtimes.VLLM_CPU if plan.device == "cpu" else runtimes.VLLM_CUDA)
    try:
        missing = [r.name for r in needed if not r.is_installed(root)]
    except OSError as e:  # a lock file missing from the checkout
        return Check("runtimes", FAIL, f"cannot read a runtime lock: {e}", "restore requirements/ from git.")
    if missing:
        return Check("runtimes", WARN, f"not installed yet: {', '.join(missing)}",
                     "the first `llmfleet up` installs them (minutes), or `make setup` now.")  # fmt: skip
    return Check("runtimes", PASS, f"installed: {', '.join(r.name for r in needed)}")
