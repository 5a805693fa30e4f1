"""`llmfleet doctor`: everything that commonly stops a fleet from starting, checked before it does.

Each check passes, warns or fails, and says what it saw and how to fix it. A host without a GPU (or without
Docker) is a supported host, not a broken one: it runs the CPU plan natively, and the checks say so. Only what
would make `llmfleet up` fail on this host fails here."""

from __future__ import annotations

from llmfleet import paths
from llmfleet.errors import FleetError
from llmfleet.models import hfcache
from llmfleet.ops.doctor.common import Check, Host
from llmfleet.ops.doctor.docker import compose_plugin, container_toolkit, docker_engine, docker_version, is_wsl, wsl
from llmfleet.ops.doctor.fleet import disk, hf_cache, hub_endpoint, plan_matches, ports, runtime
from llmfleet.ops.doctor.gpu import driver, gpus, libcuda, vram
from llmfleet.plan import hardware
from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.schema import load_plan
from llmfleet.settings import load_settings


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
