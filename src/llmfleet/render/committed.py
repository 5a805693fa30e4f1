"""`llmfleet render`: every committed rendering at once, written or (with `check`) compared."""

from __future__ import annotations

from pathlib import Path

from llmfleet import paths
from llmfleet.errors import FleetError
from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.schema import load_plan
from llmfleet.render import kubernetes, write_files
from llmfleet.render.files import compose_files, stale_files


def render(check: bool, target: str = "all") -> list[Path]:
    """Write (or with `check`, compare) the committed renderings: Compose's of fleet.yaml (`compose`), the
    Kubernetes manifests of kubernetes/plans/*.yaml (`kubernetes`), or both (`all`)."""
    if target not in ("all", "compose", "kubernetes"):
        raise FleetError(f"render target {target!r} is unknown.", "use compose, kubernetes or all.", "--target")
    root = paths.project_root()
    written: list[Path] = []
    if target in ("all", "compose"):  # first: the Kubernetes rules read slo.rules.yaml, rendered here
        plan, catalog = load_plan(), load_catalog(root)
        if check:
            stale = stale_files(plan, catalog, root)
            if stale:
                names = ", ".join(str(p.relative_to(root)) for p in stale)
                raise FleetError(
                    f"{names} differ from a fresh rendering of fleet.yaml.", "run `llmfleet render`.", names
                )
        else:
            written += write_files(compose_files(plan, catalog, root))
    if target in ("all", "kubernetes"):
        written += kubernetes.check(root) if check else kubernetes.write(root)
    return written
