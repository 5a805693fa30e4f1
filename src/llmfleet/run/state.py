"""What a running fleet is: which runner started it, from which plan, and (native) which processes.

Written by `up` into the run directory, read by `down`, `status` and `logs`, whichever runner is in use.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmfleet.errors import FleetError
from llmfleet.run import procs
from llmfleet.run.startup import Phase
from llmfleet.settings import Settings

STATE_FILE = "state.json"


@dataclass
class Started:
    name: str
    pid: int
    started: int  # the process's start time, so a reused pid is never taken for ours
    port: int
    health_url: str
    log: str
    repo: str | None = None  # a vLLM server's model repo: its download progress shows in the HF cache
    argv: list[str] = field(default_factory=list)  # how to start it again (`llmfleet restart`, drills)
    env: dict[str, str] = field(default_factory=dict)  # its own variables, over the runner's environment


@dataclass
class State:
    root: str
    plan: str  # "cpu (built-in)" or the plan file the stack was started from
    models: list[str]
    services: list[Started] = field(default_factory=list)  # native: the processes started
    runner: str = "native"
    compose: list[str] = field(default_factory=list)  # docker: `docker compose` arguments that name the project
    compose_env: dict[str, str] = field(default_factory=dict)  # docker: image and profile choices made at `up`

    @classmethod
    def load(cls, run_dir: Path) -> State | None:
        try:
            raw = json.loads((run_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(**{**raw, "services": [Started(**s) for s in raw["services"]]})

    def save(self, run_dir: Path) -> None:
        tmp = run_dir / (STATE_FILE + ".tmp")
        # 0600: a service's environment holds the key the gateway uses towards the backends.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(json.dumps(asdict(self), indent=2))
        tmp.replace(run_dir / STATE_FILE)

    def running(self) -> list[Started]:
        return [s for s in self.services if procs.is_running(s.pid, s.started)]

    def clear(self, run_dir: Path) -> None:
        (run_dir / STATE_FILE).unlink(missing_ok=True)


@dataclass
class ServiceStatus:
    name: str
    pid: int | None  # None once stopped
    port: int | None  # None for a container that publishes no port
    running: bool
    healthy: bool
    phase: Phase | None = None  # a starting vLLM server's phase, from its log


def running_state(settings: Settings, doing: str, where: str) -> State:
    """The running fleet's state, for commands that act on a running fleet; an error naming `up` if none runs."""
    state = State.load(settings.run_dir)
    if state is None:
        raise FleetError(f"llmfleet is not running: there is nothing to {doing}.", "run `llmfleet up` first.", where)
    return state
