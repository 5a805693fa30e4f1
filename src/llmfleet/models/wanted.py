"""What a download is of: the wanted model, its repo and size, and the sources it can come from."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmfleet.plan.catalog import Model

if TYPE_CHECKING:
    pass


GIB = 1024**3

# Files vLLM never reads when safetensors are there: other formats' weights and the originals some repos carry.
IGNORE = ["*.pth", "*.pt", "*.bin", "*.gguf", "*.onnx", "*.h5", "*.msgpack", "*.ot", "original/*"]

SOURCES = ("huggingface", "modelscope")

# Room kept free beyond the files themselves: the filesystem, logs, and huggingface_hub's Xet chunk cache.
HEADROOM = 0.05

HEADROOM_MIN = GIB // 2


@dataclass(frozen=True)
class Wanted:
    label: str  # what the user named: a catalog model or a repo id
    repo: str
    model: Model | None  # the catalog entry, when there is one

    @property
    def estimate(self) -> int | None:
        """Bytes of weights the catalog says the repo holds (None for a repo not in the catalog)."""
        return int(self.model.weights_gib * GIB) if self.model is not None else None


def free_bytes(where: Path) -> tuple[int, Path]:
    """Free bytes on the filesystem that holds `where` (or would: its nearest existing parent)."""
    probe = where
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free, probe
