"""`llmfleet download --list`: the catalog's models, their sizes, the cards each fits and the cache's state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmfleet import paths
from llmfleet.models import hfcache, verify
from llmfleet.plan.catalog import Model, load_catalog

if TYPE_CHECKING:
    from llmfleet.models.hfcache import HubSettings

from llmfleet.models.wanted import GIB

# Cards our users run, as `llmfleet plan --gpus` would describe them: (GiB, name, compute capability).
CARDS = (
    (8, "RTX 4060", 8.9),
    (12, "RTX 3060", 8.6),
    (16, "RTX 4080", 8.9),
    (24, "RTX 4090", 8.9),
    (48, "RTX 6000 Ada", 8.9),
    (80, "H100 80GB", 9.0),
)


@dataclass(frozen=True)
class CatalogRow:
    name: str
    repo: str | None
    weights_gib: float
    fits: str  # the cards (by memory) the planner's budget fits it on, with the context on the smallest
    cached: str  # complete, incomplete (N problems), partial (X GiB), - , built in


def catalog_rows() -> list[CatalogRow]:
    """`download --list`: each catalog model, its size, the cards it fits (by planner.size) and its cache state."""
    from llmfleet.plan.hardware import GpuInfo
    from llmfleet.plan.planner import size

    hub = hfcache.load_hub_settings()
    rows = []
    for model in load_catalog(paths.project_root()).models.values():
        if model.synthetic:
            rows.append(CatalogRow(model.name, None, model.weights_gib, "CPU (smoke tests)", "built in"))
            continue
        fitting = []
        for gib, card, capability in CARDS:
            if capability < model.min_compute_capability:
                continue
            budget = size(model, GpuInfo(index=0, name=card, memory_total_gib=gib, compute_capability=capability))
            if budget is not None:
                fitting.append((gib, card, budget.max_model_len))
        if fitting:
            gib, card, context = fitting[0]
            fits = f"{gib} GiB and up ({context // 1024}k context on a {gib} GiB {card})"
        else:
            fits = "two or more cards (tensor parallel)"
        if model.cpu:
            fits += "; CPU"
        rows.append(CatalogRow(model.name, model.repo, model.weights_gib, fits, _cache_state(model, hub)))
    return rows


def _cache_state(model: Model, hub: HubSettings) -> str:
    if model.package:
        from llmfleet.models import realmodel

        converted = realmodel.model_dir(model)
        if not converted.is_dir():
            return "- (llmfleet setup converts it)"
        return "converted" if verify.check_dir(converted).ok else "incomplete (delete it; setup converts again)"
    assert model.repo
    snapshot = hfcache.snapshot_dir(hub.hub, model.repo) or hfcache.modelscope_dir(hub.modelscope, model.repo)
    if snapshot is None:
        have = hfcache.cached_bytes(hub.hub, model.repo)
        return f"partial ({have.partial / GIB:.1f} GiB)" if have.partial else "-"
    result = verify.check_dir(snapshot)
    return "complete" if result.ok else f"incomplete ({len(result.problems)} problem(s))"
