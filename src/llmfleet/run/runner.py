"""What the commands that act on a fleet need of its runner, whichever started it: the Runner protocol, and the
runner of a run state. Native and Docker implement it (run/native/runner.py, run/docker/runner.py), so `status`,
`drill`, `soak` and `bench` never ask which one runs."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Protocol

from llmfleet.plan.catalog import Catalog
from llmfleet.plan.schema import Plan
from llmfleet.run.docker.runner import DockerRunner
from llmfleet.run.native.runner import NativeRunner
from llmfleet.run.state import ServiceStatus, State
from llmfleet.settings import Settings


class Runner(Protocol):
    name: str  # as the run state records it: native or docker
    publishes_backends: bool  # whether each vLLM server has a port of its own here (the gateway benchmark's need)

    def up(self, asked: str | None, plan: Plan, label: str, catalog: Catalog, keys: dict[str, str]) -> State:
        """Start `plan` (`asked`: the --plan given, if any) and return once the gateway answers."""
        ...

    def running(self) -> list[str]:
        """The names of the services of the recorded fleet that still run."""
        ...

    def down(self) -> list[str]:
        """Stop what `up` started; the names of the services stopped."""
        ...

    def status(self) -> list[ServiceStatus]: ...

    def logs(self, service: str | None, lines: int, follow: bool) -> None: ...

    def restart(self, services: list[str]) -> None: ...

    def backends(self) -> list[str]:
        """The names of the fleet's vLLM servers."""
        ...

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Send a service `sig`: SIGKILL is a crash, SIGSTOP and SIGCONT freeze and thaw it."""
        ...

    def bring_back(self, names: list[str]) -> None:
        """Start crashed services again (where nothing restarts them by itself)."""
        ...

    def gateway_pid(self) -> int | None: ...

    def keystore(self, *args: str, stdin: str | None = None) -> Any:
        """Run gateway/keystore.py against the fleet's key database; its JSON answer."""
        ...

    def rotate_master(self) -> None:
        """A new LITELLM_MASTER_KEY in .env.secrets, and the gateway running with it."""
        ...


def for_state(state: State | None, settings: Settings, root: Path | None = None) -> Runner:
    """The runner that started `state`; native when nothing was started (its run folder is where `down` looks).
    `root`: the checkout Compose runs in (default: the state's)."""
    if state is not None and state.runner == "docker":
        return DockerRunner(settings, state, root or Path(state.root))
    return NativeRunner(settings, state)


def named(name: str, settings: Settings, root: Path) -> Runner:
    """The runner `up` chose (run/choose.py), before any state exists."""
    return DockerRunner(settings, None, root) if name == "docker" else NativeRunner(settings, None, root)
