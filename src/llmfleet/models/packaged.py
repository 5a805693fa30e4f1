"""Where a model that comes in a wheel (the CPU plan's real model) is converted to on this host.

Its own module, below both the converter (realmodel.py) and `verify`, which each need the folder's name.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmfleet import paths
from llmfleet.errors import FleetError
from llmfleet.models import runtimes
from llmfleet.plan.catalog import Model


def pinned_version(package: str, root: Path) -> str:
    """The wheel's version as the vLLM CPU runtime's lock pins it: it names the converted folder."""
    lock = runtimes.VLLM_CPU.lock(root)
    for line in lock.read_text(encoding="utf-8").splitlines():
        if m := re.match(rf"^{re.escape(package)}==(\S+)", line.strip()):
            return m[1]
    raise FleetError(
        f"{package} is not pinned in {lock.relative_to(root)}.",
        f"add `{package}==VERSION --hash=sha256:...` to requirements/vllm-cpu.in and the lock.",
        str(lock.relative_to(root)),
    )


def folder_name(model: Model, root: Path) -> str:
    assert model.package, f"catalog entry {model.name} has no package"
    return f"{model.name}-{pinned_version(model.package, root)}"


def model_dir(model: Model, root: Path | None = None) -> Path:
    """The converted folder of `model` on this host, whether or not it exists yet."""
    return paths.cache_dir() / "models" / folder_name(model, root or paths.project_root())
