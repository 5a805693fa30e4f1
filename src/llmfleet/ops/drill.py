"""`llmfleet drill`: fault drills on a running fleet, under steady load, with the figures a user would judge it by.

The drills: a backend killed (SIGKILL) and frozen (SIGSTOP) under load, one killed in the middle of a stream, all
of them down, and each brought back. Each prints its figures against its target:

- no request fails when a backend dies before the request's first token (a retry lands on another backend);
- during a drill, p99 latency stays within 2 s of the baseline's, over the requests that begin in its window (the
  steady users', and a newcomer's who starts at the strike: a frozen server holds the streams it had begun);
- with every backend down, a client gets a clear 503 within 1 s;
- a backend that returns gets traffic again within 30 s of being healthy;
- a stream cut after output started ends with an explicit error event, never a silent, truncated success.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from llmfleet.errors import FleetError
from llmfleet.ops.loadtest.stream import Answer, StreamTimer, ask_streamed, backend_of, sse_lines
from llmfleet.run.runner import Runner
from llmfleet.run.state import ServiceStatus
from llmfleet.settings import Settings

P99_MARGIN_S = 2.0
ALL_DOWN_WITHIN_S = 1.0
TRAFFIC_AGAIN_WITHIN_S = 30.0
# The cut stream: as long as the CPU model's 2,048-token context allows, so the kill lands mid-answer; a kill that
# comes after the server's last token is tried again, this many times in all.
CUT_MAX_TOKENS = 1900
CUT_ATTEMPTS = 3
# Users who arrive after a strike, beside the steady ones: every steady user may be on a stream the frozen server
# holds (nothing outside a stopped process ends it), and then none would send a request in the window.
NEWCOMERS = 1


@dataclass
class Outcome:
    start: float
    end: float
    backend: str | None  # the server that answered (stream.backend_of)
    first_token: float | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Figure:
    drill: str
    name: str
    value: float | str | None
    target: str
    met: bool | None  # None: a figure to read, with no target


class SteadyLoad:
    """`users` closed-loop streams of short answers through the gateway, in a thread of its own."""

    def __init__(self, gateway: str, key: str, model: str, users: int, max_tokens: int) -> None:
        self.url = f"{gateway}/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.body = {
            "model": model,
            "messages": [{"role": "user", "content": "Count to three."}],
            "max_tokens": max_tokens,
            "stream": True,
            "ignore_eos": True,
        }
        self.users = users
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=5)) as client:
            await asyncio.gather(*(self._user(client) for _ in range(self.users)))

    async def _user(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            self.outcomes.append(await ask(client, self.url, self.headers, self.body))

    def window(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.start < end]


async def ask(client: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any]) -> Outcome:
    streamed = await ask_streamed(client, url, headers, body, time.monotonic)
    answer, start = streamed.answer, streamed.started
    first = None if answer.ttft is None else start + answer.ttft
    return Outcome(start, start + answer.e2e, streamed.backend, first, answer.error)


def p99(outcomes: list[Outcome]) -> float | None:
    latencies = [o.end - o.start for o in outcomes if o.ok]
    return float(np.percentile(latencies, 99)) if latencies else None


# --- acting on the backends, whichever runner started them ------------------------------------------------------


class Backends:
    """Kill, freeze and thaw the vLLM servers of the running fleet, and bring them back, whichever runner."""

    def __init__(self, runner: Runner, settings: Settings) -> None:
        self.runner = runner
        self.settings = settings
        self.names = runner.backends()

    def status(self) -> list[ServiceStatus]:
        return self.runner.status()

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.runner.signal(name, sig)

    def bring_back(self, names: list[str]) -> float:
        """Start them again (native; Docker restarts a crashed container itself) and wait until every one is
        healthy; return that moment."""
        self.runner.bring_back(names)
        deadline = time.monotonic() + self.settings.VLLM_START_TIMEOUT
        while not all(r.healthy for r in self.status() if r.name in names):
            if time.monotonic() > deadline:
                raise FleetError(
                    f"{', '.join(names)} did not come back within {self.settings.VLLM_START_TIMEOUT} s.",
                    "see `llmfleet logs SERVICE`.",
                    "VLLM_START_TIMEOUT",
                )
            time.sleep(1)
        return time.monotonic()


# --- the drills -------------------------------------------------------------------------------------------------


@dataclass
class Drill:
    gateway: str
    key: str
    model: str
    backends: Backends
    users: int = 4
    max_tokens: int = 16
    window_s: float = 15
    figures: list[Figure] = field(default_factory=list)
    on_figure: Callable[[Figure], None] = lambda figure: None  # shows each figure as it is measured (report.py)

    def figure(
        self, drill: str, name: str, value: float | str | None, target: str = "", met: bool | None = None
    ) -> None:
        self.figures.append(Figure(drill, name, value, target, met))
        self.on_figure(self.figures[-1])

    @contextmanager
    def load(self, users: int | None = None) -> Iterator[SteadyLoad]:
        with SteadyLoad(self.gateway, self.key, self.model, users or self.users, self.max_tokens) as load:
            yield load

    def run(self) -> list[Figure]:
        with self.load() as load:
            time.sleep(self.window_s)
        baseline = p99(load.outcomes)
        if baseline is None:
            raise FleetError(
                "no request succeeded during the baseline: the fleet is not serving.",
                "check `llmfleet status` and fix what it shows before a drill.",
                "llmfleet drill",
            )
        self.figure("baseline", "p99 latency (s)", round(baseline, 3))
        self.figure("baseline", "requests", len(load.outcomes))
        victim = self.backends.names[-1]
        self.stream_cut()
        self.wait_until_every_backend_serves()
        self.under_load("kill", victim, signal.SIGKILL, baseline)
        self.wait_until_every_backend_serves()
        self.under_load("freeze", victim, signal.SIGSTOP, baseline)
        self.wait_until_every_backend_serves()
        self.all_down()
        return self.figures

    def wait_until_every_backend_serves(self) -> None:
        """Each drill starts from a whole fleet: a backend brought back is healthy before the gateway's cooldown of
        it ends, and a drill that strikes the other one then would measure two failures, not one."""
        body = {"model": self.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        headers = {"Authorization": f"Bearer {self.key}"}
        unseen = set(self.backends.names)
        deadline = time.monotonic() + TRAFFIC_AGAIN_WITHIN_S + 30
        with httpx.Client(timeout=30) as client:
            while unseen and time.monotonic() < deadline:
                response = client.post(f"{self.gateway}/v1/chat/completions", json=body, headers=headers)
                if response.status_code == 200:
                    unseen.discard(backend_of(response.headers) or "")
                else:
                    time.sleep(0.5)
        if unseen:
            raise FleetError(
                f"the gateway sent no request to {', '.join(sorted(unseen))} within "
                f"{TRAFFIC_AGAIN_WITHIN_S + 30:g} s of the last drill.",
                "check `llmfleet status` and the gateway's log, then run the drill again.",
                "llmfleet drill",
            )

    def under_load(self, drill: str, victim: str, sig: signal.Signals, baseline: float) -> None:
        with self.load() as load:
            time.sleep(self.window_s / 3)
            struck = time.monotonic()
            self.backends.signal(victim, sig)
            with self.load(NEWCOMERS) as newcomers:
                time.sleep(self.window_s)
                if sig == signal.SIGSTOP:
                    self.backends.signal(victim, signal.SIGCONT)
                    healthy = time.monotonic()
                else:
                    healthy = self.backends.bring_back([victim])
            back = self._first_served_by(load, victim, healthy)
        arrived = newcomers.window(struck, struck + self.window_s)
        window = sorted(load.window(struck, struck + self.window_s) + arrived, key=lambda o: o.start)
        early = [o for o in window if not o.ok and o.first_token is None]
        late = [o for o in window if not o.ok and o.first_token is not None]
        worst = p99(window)
        self.figure(drill, "requests in the window", len(window))
        self.figure(drill, "of them from a user who arrived after the strike", len(arrived))
        self.figure(drill, "failed before their first token", len(early), "0", not early)
        if early:
            self.figure(drill, "the first of them", early[0].error)
        self.figure(drill, "cut after output started (reported in-stream)", len(late))
        if sig == signal.SIGSTOP:
            # Streams the frozen server had begun wait for it: nothing outside a stopped process ends them on the
            # router lane (SMG keeps them open), and their users send nothing new meanwhile.
            held = [o for o in load.outcomes if o.backend == victim and o.start < struck < o.end and o.end >= healthy]
            self.figure(drill, "streams it had begun, held until it ran again", len(held))
        self.figure(
            drill,
            "p99 latency (s)",
            None if worst is None else round(worst, 3),
            f"<= baseline + {P99_MARGIN_S:g} s",
            worst is not None and worst <= baseline + P99_MARGIN_S,
        )
        self.figure(
            drill,
            f"{victim} serving again after (s)",
            None if back is None else round(back, 1),
            f"<= {TRAFFIC_AGAIN_WITHIN_S:g}",
            back is not None and back <= TRAFFIC_AGAIN_WITHIN_S,
        )

    def _first_served_by(self, load: SteadyLoad, name: str, since: float) -> float | None:
        deadline = since + TRAFFIC_AGAIN_WITHIN_S + 10
        while time.monotonic() < deadline:
            served = [o.end for o in load.outcomes if o.backend == name and o.ok and o.start >= since]
            if served:
                return min(served) - since
            time.sleep(0.5)
        return None

    def stream_cut(self) -> None:
        """A long answer; kill the backend that serves it once tokens flow; the client must see an error event.

        A small CPU model writes its whole answer in seconds, faster than the gateway relays it: a kill can come
        after the server sent its last token, and the answer then arrives whole. That cut came too late to cut
        anything, so the drill tries again; only [DONE] after fewer tokens than asked is a silent truncation.
        """
        for attempt in range(1, CUT_ATTEMPTS + 1):
            answer, chunks, victim = self._cut_one_stream()
            if answer is None:
                return
            self.backends.bring_back([victim])
            whole = answer.ok and answer.output_tokens >= CUT_MAX_TOKENS
            if whole and attempt < CUT_ATTEMPTS:
                continue
            explicit = answer.error is not None and "error event" in answer.error
            self.figure("stream cut", "tries (a whole answer means the kill came too late)", attempt)
            self.figure("stream cut", "content chunks received", chunks)
            ended = answer.error or f"success ([DONE]) after {answer.output_tokens} of {CUT_MAX_TOKENS} tokens"
            self.figure("stream cut", "ended with", ended, "an error event", explicit)
            return

    def _cut_one_stream(self) -> tuple[Answer | None, int, str]:
        """Ask for a long answer, kill the backend the gateway names after three content chunks, read to the end.
        None: no answer to cut (its figure is written)."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": "Write a long story."}],
            "max_tokens": CUT_MAX_TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},  # the server's token count: a whole answer is told apart
            "ignore_eos": True,
        }
        headers = {"Authorization": f"Bearer {self.key}"}
        with (
            httpx.Client(timeout=120) as client,
            client.stream("POST", f"{self.gateway}/v1/chat/completions", json=body, headers=headers) as response,
        ):
            victim = backend_of(response.headers) or ""
            if response.status_code != 200:
                problem = f"HTTP {response.status_code} before any token"
            elif victim not in self.backends.names:
                problem = f"the gateway named no backend of the fleet ({victim or 'no header naming one'})"
            else:
                problem = None
            if problem:
                self.figure("stream cut", "ended with", problem, "an error event", False)
                return None, 0, victim
            timer = StreamTimer(time.monotonic(), time.monotonic)
            killed = False
            try:
                for line in sse_lines(response):
                    timer.feed(line)
                    if timer.chunks >= 3 and not killed:
                        self.backends.signal(victim, signal.SIGKILL)
                        killed = True
            except httpx.HTTPError as e:  # cut short with no word: a figure that misses its target, not a crash
                timer.error = timer.error or f"the connection closed mid-stream, unexplained: {e}"
            return timer.finish(), timer.chunks, victim

    def all_down(self) -> None:
        for name in self.backends.names:
            self.backends.signal(name, signal.SIGKILL)
        time.sleep(1)
        with httpx.Client(timeout=30) as client:
            start = time.monotonic()
            response = client.post(
                f"{self.gateway}/v1/chat/completions",
                headers={"Authorization": f"Bearer {self.key}"},
                json={"model": self.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            )
            took = time.monotonic() - start
        clear = response.status_code == 503 and "backend" in response.text
        self.figure("all down", "answer", f"HTTP {response.status_code}", "503 saying why", clear)
        self.figure(
            "all down", "answered after (s)", round(took, 3), f"<= {ALL_DOWN_WITHIN_S:g}", took <= ALL_DOWN_WITHIN_S
        )
        with self.load() as load:
            healthy = self.backends.bring_back(self.backends.names)
            for name in self.backends.names:
                back = self._first_served_by(load, name, healthy)
                self.figure(
                    "all back",
                    f"{name} serving again after (s)",
                    None if back is None else round(back, 1),
                    f"<= {TRAFFIC_AGAIN_WITHIN_S:g}",
                    back is not None and back <= TRAFFIC_AGAIN_WITHIN_S,
                )
