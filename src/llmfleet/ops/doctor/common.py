"""What every check of `llmfleet doctor` shares: its result (Check), what it reads of the host (Host), the minimums."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmfleet.errors import FleetError
from llmfleet.models import hfcache
from llmfleet.plan.catalog import Catalog
from llmfleet.plan.hardware import Inventory
from llmfleet.plan.schema import Plan, cpu_plan
from llmfleet.settings import Settings

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
