"""The Docker runner behind the Runner protocol (run/runner.py): the committed Compose files on a Docker engine."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from llmfleet import secrets
from llmfleet.errors import FleetError
from llmfleet.models import realmodel
from llmfleet.plan.catalog import Catalog
from llmfleet.plan.schema import Plan
from llmfleet.render.files import stale_files
from llmfleet.run.docker import lifecycle
from llmfleet.run.keystore import SCRIPT, answer
from llmfleet.run.state import ServiceStatus, State
from llmfleet.settings import Settings


class DockerRunner:
    name = "docker"
    publishes_backends = False  # backends are reached only through the gateway

    def __init__(self, settings: Settings, state: State | None, root: Path) -> None:
        self.settings = settings
        self.state = state
        self.root = root

    def up(self, asked: str | None, plan: Plan, label: str, catalog: Catalog, keys: dict[str, str]) -> State:
        if asked not in (None, "cpu"):
            raise FleetError(
                f"the docker runner runs the committed renderings (of fleet.yaml, and of the built-in cpu plan in "
                f"compose.cpu.yaml), not {asked}.",
                f"copy {asked} to fleet.yaml and run `llmfleet render`, or use `--runner native`.",
                "--plan",
            )
        realmodel.prepare_models(plan, catalog, self.root)  # Compose mounts the converted folders from the cache
        if plan.device == "cuda" and stale_files(plan, catalog, self.root):
            raise FleetError("the Compose files differ from fleet.yaml.", "run `llmfleet render` first.", "fleet.yaml")
        env_file = {k: v for k, v in dotenv_values(self.root / ".env").items() if v is not None}
        return lifecycle.up(
            label,
            sorted(plan.model_groups()),
            plan.device == "cpu",
            self.settings,
            self.root,
            env_file,
            keys["LITELLM_MASTER_KEY"],
        )

    def _state(self) -> State:
        assert self.state is not None, "a Docker runner acts on the fleet its state records"
        return self.state

    def running(self) -> list[str]:
        return [row.name for row in self.status() if row.running]

    def down(self) -> list[str]:
        return lifecycle.down(self._state(), self.root, self.settings)

    def status(self) -> list[ServiceStatus]:
        return lifecycle.status(self._state(), self.root)

    def logs(self, service: str | None, lines: int, follow: bool) -> None:
        lifecycle.logs(self._state(), self.root, service, lines, follow)

    def restart(self, services: list[str]) -> None:
        lifecycle.compose(self._state(), self.root, "restart", *services)

    def backends(self) -> list[str]:
        return sorted(r.name for r in self.status() if r.name.startswith("vllm-"))

    def signal(self, name: str, sig: signal.Signals) -> None:
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            pause = "pause" if sig == signal.SIGSTOP else "unpause"
            lifecycle.compose(self._state(), self.root, pause, name, capture=True)
            return  # the cgroup freezer: the whole container stops, as SIGSTOP stops a process group
        for pid in [r.pid for r in self.status() if r.name == name and r.pid]:
            # The container's main process, from the host: a crash, which its restart policy answers.
            os.kill(pid, sig)

    def bring_back(self, names: list[str]) -> None:
        """Nothing to do: Docker restarts a crashed container itself (restart policy)."""

    def gateway_pid(self) -> int | None:
        return next((r.pid for r in self.status() if r.name == "gateway" and r.pid), None)

    def keystore(self, *args: str, stdin: str | None = None) -> Any:
        """keystore.py inside the gateway's container, which holds the key database's address and password."""
        command = ("exec", "-T", "gateway", "python3", f"/etc/litellm/{SCRIPT}", *args)
        result = lifecycle.compose(self._state(), self.root, *command, capture=True, stdin=stdin)
        return answer(result, "gateway/compose.yaml: LLMFLEET_KEYS_DSN")

    def rotate_master(self) -> None:
        secrets.rotate_secret(self.settings.secrets_file, "LITELLM_MASTER_KEY")
        # A new container reads its env file again (`restart` would keep the old key); the others keep theirs.
        result = lifecycle.compose(self._state(), self.root, "up", "-d", "--no-deps", "--wait", "gateway", capture=True)
        if result.returncode != 0:
            raise FleetError(
                "the gateway did not come back with the new master key:\n" + result.stderr.strip()[-800:],
                "see `llmfleet logs gateway`; the new key is in .env.secrets already.",
                "docker compose up gateway",
            )
