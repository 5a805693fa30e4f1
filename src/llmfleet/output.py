"""Where llmfleet's words go: results to stdout, figures, progress, warnings and errors to stderr.

The sink every module may use. It imports nothing else of llmfleet, so core modules (runners, download, drills)
can report progress without importing the display code (report.py), which imports their types.
"""

from __future__ import annotations

import json as _json
import os
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console, ConsoleDimensions
from rich.live import Live
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

# Off a terminal (a pipe, a file, a log) nothing reads the width, and rich's default of 80 columns would cut table
# cells ("Qwen2.5-7B-Ins…"): there a table takes the width its content needs.
UNBOUNDED = 100_000


class _Console(Console):
    """A rich Console that is as wide as a terminal on a terminal, and unbounded elsewhere."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(UNBOUNDED, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


# soft_wrap: long lines (paths, commands, log tails) stay whole, so they can be copied.
out = _Console(highlight=False, soft_wrap=True)
err = _Console(stderr=True, highlight=False, soft_wrap=True)


def table(*headers: str, **options: Any) -> Table:
    """A table whose cells fold rather than end in "…" when a terminal is too narrow: names stay whole."""
    made = Table(**options)
    for header in headers:
        made.add_column(header, overflow="fold")
    return made


def heading(title: str) -> None:
    """A section title in results: a rule on a terminal, `==> title <==` (as `tail` writes) elsewhere."""
    if out.is_terminal:
        out.print(Rule(title))
    else:
        out.print(f"==> {title} <==", markup=False)


def result(text: str) -> None:
    """A line of results, as written (no markup)."""
    out.print(text, markup=False)


def json(data: object) -> None:
    """The one JSON document a `--json` command prints on stdout (dataclasses as their fields)."""
    out.print_json(_json.dumps(data, default=_fields))


def _fields(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def figures(as_json: bool) -> Console:
    """Where a long command's running figures go: stdout, unless stdout carries the `--json` document."""
    return err if as_json else out


def info(message: str) -> None:
    err.print(message)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")


class Problem(Protocol):
    """What the user can fix (errors.FleetError), described without importing it."""

    what: str
    fix: str
    where: str | None


def error(problem: Problem) -> None:
    err.print(f"[bold red]error:[/] {problem.what}", markup=True, highlight=False)
    err.print(f"  [bold]fix:[/] {problem.fix}")
    if problem.where:
        err.print(f"  [bold]where:[/] {problem.where}")


@contextmanager
def step(title: str, unless: bool = False) -> Iterator[None]:
    """Show a spinner for a slow step (skipped when `unless` says the step has nothing to do)."""
    if unless:
        yield
        return
    started = time.monotonic()
    with err.status(title + " ..."):
        yield
    err.print(f"{title}: done in {time.monotonic() - started:.0f} s")


class Phase(Protocol):
    """What a starting server is doing (startup.Phase): its name (`ready`, `failed`, ...) and, as text, details."""

    @property
    def name(self) -> str: ...


def phase_text(phase: Phase) -> str:
    """A start-up phase as one table cell, e.g. 'loading weights, shard 2/5' or 'downloading, 1.20 GiB ...'."""
    style = {"ready": "green", "failed": "red"}.get(phase.name, "yellow")
    return f"[{style}]{escape(str(phase))}[/]"


class Progress:
    """A live table of servers starting: each one's phase, until it is healthy."""

    def __init__(self, names: list[str], live: Live) -> None:
        self.started = time.monotonic()
        self.ready: dict[str, float] = {}
        self.phases: dict[str, Phase] = {}
        self.names = names
        self.live = live

    def done(self, name: str) -> None:
        self.ready[name] = time.monotonic() - self.started
        self.live.update(self.table())

    def phase(self, name: str, phase: Phase) -> None:
        """What a starting server is doing (downloading, loading weights, ...), read from its log."""
        self.phases[name] = phase
        self.live.update(self.table())

    def table(self) -> Table:
        rows = Table(box=None, show_header=False, pad_edge=False)
        for name in self.names:
            elapsed = time.monotonic() - self.started
            if name in self.ready:
                rows.add_row(name, f"[green]healthy[/] after {self.ready[name]:.0f} s")
            elif name in self.phases:
                rows.add_row(name, f"{phase_text(self.phases[name])} ({elapsed:.0f} s)")
            else:
                rows.add_row(name, f"starting ({elapsed:.0f} s)")
        return rows


@contextmanager
def progress(names: list[str]) -> Iterator[Progress]:
    """Servers starting, shown live on stderr (once, at the end, off a terminal)."""
    with Live(console=err, refresh_per_second=2, transient=not err.is_terminal) as live:
        shown = Progress(names, live)
        live.update(shown.table())
        yield shown
        live.update(shown.table())


def save_traceback() -> Path:
    """The current exception's traceback, in a file the user can attach to an issue."""
    fd, name = tempfile.mkstemp(prefix="llmfleet-bug-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(traceback.format_exc())
    return Path(name)


def bug(path: Path) -> None:
    err.print(f"[bold red]error:[/] llmfleet hit a bug. The traceback is in {path}; please attach it to an issue.")
