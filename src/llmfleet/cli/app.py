"""The `llmfleet` typer app: its options (--version) and the options several commands share. The commands are
registered in cli/main.py, one module per command group."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from llmfleet import output

# Locals may hold the master key: never show them in a traceback. add_completion: --install-completion and
# --show-completion (bash, zsh, fish, PowerShell).
app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=True)


def installed_version() -> str:
    """llmfleet's version as installed (pyproject.toml's), or `unknown` when run from an uninstalled tree."""
    try:
        return metadata.version("llmfleet")
    except metadata.PackageNotFoundError:
        return "unknown"


def _print_version(asked: bool) -> None:
    if asked:
        output.result(f"llmfleet {installed_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """One OpenAI-compatible gateway in front of one vLLM server per GPU: plan, start, watch and load it."""


PlanOption = Annotated[
    str | None,
    typer.Option(
        help="`cpu` for the built-in CPU plan (smollm2-135m), `cpu-tiny` for its synthetic twin (fleet-tiny), or a "
        "plan file. Default: fleet.yaml if this host has GPUs."
    ),
]
