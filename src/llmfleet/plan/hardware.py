"""The GPUs of this host, read from NVML (the NVIDIA driver's own library, through nvidia-ml-py).

A description such as `--gpus 2x12GiB:RTX3060` (gpuspec.py) yields the same GpuInfo, with what a description
cannot know (UUID, free memory, sometimes the compute capability) left as None.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_gib: float
    uuid: str | None = None
    memory_free_gib: float | None = None
    compute_capability: float | None = None  # 8.6 for an RTX 3060; None when a description does not say


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[GpuInfo, ...]
    driver: str | None
    why_none: str | None  # when there are no GPUs: what NVML said, in words a user can act on


def inventory() -> Inventory:
    try:
        import pynvml
    except ImportError:  # pragma: no cover - a dependency of llmfleet
        return Inventory((), None, "nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return Inventory((), None, f"no NVIDIA driver answered ({e})")
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(GpuInfo(
                index=index,
                name=_text(pynvml.nvmlDeviceGetName(handle)),
                uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                memory_total_gib=memory.total / GIB,
                memory_free_gib=memory.free / GIB,
                compute_capability=major + minor / 10,
            ))  # fmt: skip
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
    finally:
        pynvml.nvmlShutdown()
    return Inventory(tuple(gpus), driver, None if gpus else "the NVIDIA driver reports no GPU")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
