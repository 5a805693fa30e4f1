"""`llmfleet soak`: steady load for a bounded time, watching for errors and for the gateway's memory creeping up.

LiteLLM's memory has grown over days in some releases (see research/anchor-litellm.md §5.3); a soak run shows
whether ours does under our traffic. Growth is measured from after a warm-up, since the first requests fill
caches and pools that a leak would not explain.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from llmfleet import output
from llmfleet.errors import FleetError
from llmfleet.ops.loadtest import run
from llmfleet.run.runner import Runner

MAX_GROWTH = 0.10  # the gateway may hold at most 10 % more memory at the end than after the warm-up
SAMPLE_S = 5


@dataclass
class MemoryWatch:
    """The gateway's resident memory (its process and every child: workers), sampled in a thread."""

    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def rss(self) -> int:
        try:
            root = psutil.Process(self.pid)
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            return 0

    def __enter__(self) -> MemoryWatch:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _watch(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.samples.append((time.time(), self.rss()))


def gateway_pid(runner: Runner) -> int:
    pids = [runner.gateway_pid()]
    if not pids or pids[0] is None:
        raise FleetError("the gateway is not running.", "start the fleet with `llmfleet up`.", "llmfleet soak")
    return pids[0]


def soak(options: run.Options, warmup_s: int, key: str, root: Path, runner: Runner) -> dict[str, Any]:
    """Warm up, then load for `options.duration_s` while sampling the gateway's memory; return the figures."""
    watch = MemoryWatch(gateway_pid(runner))
    warmup = dataclasses.replace(options, duration_s=warmup_s, out=options.out / "warmup")
    output.info(f"Warm-up: {warmup_s} s")
    run.loadtest(warmup, key, root)
    start_rss = watch.rss()
    with watch:
        summary = run.loadtest(options, key, root)
    end_rss = statistics.median(rss for _, rss in watch.samples[-3:]) if watch.samples else watch.rss()
    growth = (end_rss - start_rss) / start_rss if start_rss else None
    return {
        "duration_s": options.duration_s,
        "requests": summary["requests"],
        "errors": summary["failures"],
        "failures_by_reason": summary["failures_by_reason"],
        "gateway_rss_start_mib": round(start_rss / 2**20, 1),
        "gateway_rss_end_mib": round(end_rss / 2**20, 1),
        "gateway_rss_max_mib": round(max((r for _, r in watch.samples), default=end_rss) / 2**20, 1),
        "gateway_memory_growth": None if growth is None else round(growth, 4),
        "ttft_ms": summary["ttft_ms"],
        "e2e_ms": summary["e2e_ms"],
        "output_tokens_per_s": summary["output_tokens_per_s"],
    }


def judge(figures: dict[str, Any]) -> None:
    problems = []
    if figures["errors"]:
        problems.append(f"{figures['errors']} requests failed ({figures['failures_by_reason']})")
    growth = figures["gateway_memory_growth"]
    if growth is None or growth > MAX_GROWTH:
        problems.append(f"the gateway's memory grew {growth if growth is None else f'{growth:.1%}'} (at most 10 %)")
    if problems:
        raise FleetError(
            "the soak run failed: " + "; ".join(problems) + ".",
            "read report.html beside summary.json; `llmfleet logs gateway` shows the gateway's side.",
            "llmfleet soak",
        )
