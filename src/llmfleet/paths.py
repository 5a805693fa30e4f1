"""Where llmfleet keeps things: the checkout it runs from, and caches that outlive a checkout."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The directory holding fleet.yaml and .env: $LLMFLEET_ROOT, else the nearest parent of the cwd with both."""
    if root := os.environ.get("LLMFLEET_ROOT"):
        return Path(root).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "fleet.yaml").is_file() and (candidate / "compose.yaml").is_file():
            return candidate
    return here


def cache_dir() -> Path:
    """Caches shared by every checkout on this host: runtimes, the synthetic model, compile caches."""
    if cache := os.environ.get("LLMFLEET_CACHE_DIR"):
        return Path(cache)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmfleet"
