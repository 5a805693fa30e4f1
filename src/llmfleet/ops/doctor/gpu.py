"""The NVIDIA checks: driver, CUDA, GPUs, who holds their memory, libcuda."""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from pathlib import Path

from llmfleet.ops.doctor.common import (
    BF16_CAPABILITY,
    DOCUMENTED_CAPABILITY,
    FAIL,
    GIB,
    MIN_CUDA,
    MIN_DRIVER_FOR_CUDA,
    PASS,
    WARN,
    Check,
    Host,
)
from llmfleet.plan.planner import MIN_COMPUTE_CAPABILITY


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
                    found.append(VramHolder(index, p.pid, process_name(p.pid), used))
    finally:
        pynvml.nvmlShutdown()
    return found


def process_name(pid: int) -> str:
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
