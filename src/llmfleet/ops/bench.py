"""`llmfleet bench gateway`: what the gateway costs, against the same backends asked directly, under the same load.

Each cell of the grid (users, output length, way in) runs closed-loop users for a fixed time: every user
sends a streamed chat request, reads it to the end and sends the next. The same client, prompts and token counts
go to every way in, so the differences are the gateway's. Figures, not pass/fail: they are appended, with the
machine's facts, to benchmarks/gateway.md.

The load generator shares the host's cores with the servers; on a 2-core machine that caps every way in alike.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psutil

from llmfleet.ops.loadtest.stream import Answer, ask_streamed

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class WayIn:
    """One way to reach the model: the backends directly, our gateway, or an alternative under evaluation."""

    name: str
    urls: list[str]  # chat-completions URLs; users take them in turn (direct: one per backend)
    key: str
    # The processes whose CPU time is charged to it (each with its children), by what each is: "door", "router"...
    pids: dict[str, int] = field(default_factory=dict)


@dataclass
class Cell:
    way_in: str
    concurrency: int
    max_tokens: int
    seconds: float
    requests: int
    failures: int
    tokens: int
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    cpu_s: float | None  # the way in's own CPU seconds over the cell
    first_error: str | None = None
    cpu_s_by_process: dict[str, float] = field(default_factory=dict)  # the same, split by its charged processes

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def cpu_s_per_1k_tokens(self) -> float | None:
        return None if self.cpu_s is None or not self.tokens else self.cpu_s / self.tokens * 1000

    def process_cpu_s_per_1k_tokens(self) -> dict[str, float]:
        return {name: s / self.tokens * 1000 for name, s in self.cpu_s_by_process.items()} if self.tokens else {}


@dataclass
class Comparison:
    """A cell through a way in, beside the same cell direct."""

    cell: Cell
    direct: Cell

    @property
    def added_ttft_p50_ms(self) -> float | None:
        return _minus(self.cell.ttft_p50_ms, self.direct.ttft_p50_ms)

    @property
    def added_ttft_p99_ms(self) -> float | None:
        return _minus(self.cell.ttft_p99_ms, self.direct.ttft_p99_ms)

    @property
    def requests_ratio(self) -> float | None:
        return self.cell.requests_per_s / self.direct.requests_per_s if self.direct.requests else None

    @property
    def tokens_ratio(self) -> float | None:
        return self.cell.tokens_per_s / self.direct.tokens_per_s if self.direct.tokens else None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def cpu_seconds(pid: int | None) -> float | None:
    """User and system CPU time of a process and all its children (the gateway's workers)."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return None


def charged_cpu_seconds(pids: dict[str, int]) -> dict[str, float] | None:
    """The CPU seconds of each charged process, by its name; None if there is none, or one cannot be seen (no
    partial sums)."""
    times = {name: cpu_seconds(pid) for name, pid in pids.items()}
    seen = {name: t for name, t in times.items() if t is not None}
    return seen if seen and len(seen) == len(times) else None


def listener_pid(port: int) -> int | None:
    """The process listening on a local port (an alternative's CPU is charged to it); None if it cannot be seen."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except psutil.AccessDenied:
        pass
    return None


async def run_cell(way_in: WayIn, model: str, concurrency: int, max_tokens: int, seconds: float) -> Cell:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,  # every answer exactly max_tokens long, so the ways in compare
    }
    urls = itertools.cycle(way_in.urls)
    answers: list[Answer] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=5), limits=limits) as client:
        headers = {"Authorization": f"Bearer {way_in.key}"}
        await ask_streamed(client, way_in.urls[0], headers, {**body, "max_tokens": 2}, time.perf_counter)  # warm up
        cpu_before = charged_cpu_seconds(way_in.pids)
        started = time.perf_counter()
        deadline = started + seconds

        async def user() -> None:
            while time.perf_counter() < deadline:
                answers.append((await ask_streamed(client, next(urls), headers, body, time.perf_counter)).answer)

        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu_after = charged_cpu_seconds(way_in.pids)
    by_process = None if cpu_before is None or cpu_after is None else {
        name: cpu_after[name] - cpu_before[name] for name in cpu_before
    }  # fmt: skip
    ok = [a for a in answers if a.ok]
    ttfts = [a.ttft for a in ok if a.ttft is not None]
    return Cell(
        way_in=way_in.name,
        concurrency=concurrency,
        max_tokens=max_tokens,
        seconds=elapsed,
        requests=len(ok),
        failures=len(answers) - len(ok),
        tokens=sum(a.output_tokens for a in ok),
        ttft_p50_ms=float(np.percentile(ttfts, 50)) * 1000 if ttfts else None,
        ttft_p99_ms=float(np.percentile(ttfts, 99)) * 1000 if ttfts else None,
        cpu_s=None if by_process is None else sum(by_process.values()),
        first_error=next((a.error for a in answers if a.error), None),
        cpu_s_by_process=by_process or {},
    )


def idle_cpu_per_s(ways_in: list[WayIn], seconds: float) -> dict[str, dict[str, float]]:
    """Each way in's processes' CPU seconds per second while no request is sent: what they spend anyway (health
    checks, load polls), which a cell of few tokens per second divides by few tokens."""
    charged = [w for w in ways_in if w.pids]
    before = {w.name: charged_cpu_seconds(w.pids) for w in charged}
    time.sleep(seconds)
    rates: dict[str, dict[str, float]] = {}
    for w in charged:
        start, end = before[w.name], charged_cpu_seconds(w.pids)
        if start is not None and end is not None:
            rates[w.name] = {name: max(0.0, end[name] - start[name]) / seconds for name in end}
    return rates


@dataclass
class Grid:
    concurrencies: list[int]
    outputs: dict[str, int]  # "short" -> 16 tokens
    seconds: float
    idle_seconds: float = 0  # measured before the runs, when above 0
    cells: list[Cell] = field(default_factory=list)
    idle: dict[str, dict[str, float]] = field(default_factory=dict)  # way in -> process -> CPU s per s, no load

    def idle_cpu_s_per_1k_tokens(self, cell: Cell) -> float | None:
        """The CPU per 1,000 tokens a cell's way in would have spent with no request at all."""
        rates = self.idle.get(cell.way_in)
        return None if rates is None or not cell.tokens else sum(rates.values()) * cell.seconds / cell.tokens * 1000

    def run(self, ways_in: list[WayIn], model: str, on_cell: Callable[[Cell], None]) -> list[Cell]:
        if self.idle_seconds > 0:
            self.idle = idle_cpu_per_s(ways_in, self.idle_seconds)
        # Ways in alternate inside each (concurrency, output) pair, so a slow drift of the host hits them alike.
        for concurrency, max_tokens in itertools.product(self.concurrencies, self.outputs.values()):
            for way_in in ways_in:
                cell = asyncio.run(run_cell(way_in, model, concurrency, max_tokens, self.seconds))
                self.cells.append(cell)
                on_cell(cell)
        return self.cells

    def comparisons(self) -> list[Comparison]:
        direct = {(c.concurrency, c.max_tokens): c for c in self.cells if c.way_in == "direct"}
        return [
            Comparison(c, direct[(c.concurrency, c.max_tokens)])
            for c in self.cells
            if c.way_in != "direct" and (c.concurrency, c.max_tokens) in direct
        ]


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "python": platform.python_version(),
    }


def number(value: float | None, spec: str) -> str:
    """A figure formatted with `spec`, or a dash where there is none (in the Markdown and the terminal's table)."""
    return "–" if value is None else format(value, spec)


def markdown(grid: Grid, facts: dict[str, str], setup: dict[str, str]) -> str:
    """One run as a Markdown section: the facts, every cell, then each way in against direct."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {when}", ""]
    lines += [f"- {k}: {v}" for k, v in {**facts, **setup}.items()]
    lines += [
        "",
        "| way in | users | max tokens | requests/s | tokens/s | TTFT p50 ms | TTFT p99 ms | failures "
        "| CPU s / 1k tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in grid.cells:
        lines.append(
            f"| {c.way_in} | {c.concurrency} | {c.max_tokens} | {c.requests_per_s:.1f} | {c.tokens_per_s:.0f} "
            f"| {number(c.ttft_p50_ms, '.1f')} | {number(c.ttft_p99_ms, '.1f')} | {c.failures} "
            f"| {number(c.cpu_s_per_1k_tokens, '.2f')} |"
        )
    lines += [
        "",
        "| way in | users | max tokens | added TTFT p50 ms | added TTFT p99 ms | requests/s vs direct "
        "| tokens/s vs direct |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cmp in grid.comparisons():
        c = cmp.cell
        lines.append(
            f"| {c.way_in} | {c.concurrency} | {c.max_tokens} | {number(cmp.added_ttft_p50_ms, '+.1f')} "
            f"| {number(cmp.added_ttft_p99_ms, '+.1f')} | {number(cmp.requests_ratio, '.2f')} "
            f"| {number(cmp.tokens_ratio, '.2f')} |"
        )
    split = [c for c in grid.cells if len(c.cpu_s_by_process) > 1]
    if split:
        names = list(dict.fromkeys(name for c in split for name in c.cpu_s_by_process))
        idle = ["of it idle"] if grid.idle else []
        lines += ["", "CPU s / 1k tokens, by process:", "",
                  "| way in | users | max tokens | " + " | ".join(names + idle) + " |",
                  "|---|---:|---:|" + "---:|" * len(names + idle)]  # fmt: skip
        for c in split:
            figures = c.process_cpu_s_per_1k_tokens()
            cells = [number(figures.get(name), ".3f") for name in names]
            cells += [number(grid.idle_cpu_s_per_1k_tokens(c), ".3f")] if idle else []
            lines.append(f"| {c.way_in} | {c.concurrency} | {c.max_tokens} | " + " | ".join(cells) + " |")
        if grid.idle:
            lines += ["", f"\"of it idle\": what the same processes spent with no request, measured for "
                      f"{grid.idle_seconds:g} s before the runs (CPU ms per second: "
                      + "; ".join(f"{way}: " + ", ".join(f"{name} {rate * 1000:.1f}" for name, rate in rates.items())
                                  for way, rates in grid.idle.items()) + ")."]  # fmt: skip
    return "\n".join(lines) + "\n\n"


RESULTS_HEADER = """# Gateway benchmark results

Appended by `make bench-gateway` (`llmfleet bench gateway`): the same closed-loop streamed load sent directly to
the backends and through each way in. "added TTFT" is the way in's time to first token minus direct's; the ratios
are its throughput over direct's; "CPU s / 1k tokens" is the way in's own CPU time (the gateway process and its
workers) per 1,000 streamed tokens. Goals (issue 8): tokens/s through the gateway ≥ 0.8× direct, and TTFT p50 at
1 user no more than 3 ms above direct.

"""


def append_results(path: Path, section: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(RESULTS_HEADER)
    before = path.read_text()
    gap = "" if before.endswith("\n\n") else "\n" if before.endswith("\n") else "\n\n"  # a hand-edited end
    with path.open("a") as f:
        f.write(gap + section.lstrip("\n"))
