"""Load-test options from a command's choices, .env's SLOs and the fleet's addresses (loadtest and soak)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmfleet import paths
from llmfleet.ops.loadtest import run
from llmfleet.ops.loadtest.summary import Slo
from llmfleet.settings import Settings


def load_options(
    settings: Settings,
    out: str | None,
    kind: str,
    *,
    duration: str,
    slo: tuple[float | None, float | None, float | None],
    **choices: Any,
) -> run.Options:
    """Load-test options from the command's choices, .env's SLOs and the fleet's addresses."""
    root = paths.project_root()
    folder = Path(out) if out else root / "loadtest-results" / f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    ttft, itl, errors = slo
    return run.Options(
        duration_s=run.parse_duration(duration),
        out=folder,
        gateway=f"http://127.0.0.1:{settings.GATEWAY_PORT}",
        prometheus=f"http://127.0.0.1:{settings.PROMETHEUS_PORT}",
        slo=Slo(
            ttft or settings.SLO_TTFT_P95_SECONDS,
            itl or settings.SLO_ITL_P95_SECONDS,
            errors if errors is not None else settings.SLO_ERROR_RATE,
        ),
        **choices,
    )
