"""The native runner behind the Runner protocol (run/runner.py): local processes, their pids and log files."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from llmfleet import output, paths, secrets
from llmfleet.plan.catalog import Catalog
from llmfleet.plan.schema import Plan
from llmfleet.run import procs
from llmfleet.run.native import keys, lifecycle
from llmfleet.run.state import ServiceStatus, State
from llmfleet.settings import Settings


class NativeRunner:
    name = "native"
    publishes_backends = True  # every vLLM server listens on a port of its own on 127.0.0.1

    def __init__(self, settings: Settings, state: State | None, root: Path | None = None) -> None:
        self.settings = settings
        self.state = state
        self.root = root or (Path(state.root) if state else paths.project_root())

    def up(self, asked: str | None, plan: Plan, label: str, catalog: Catalog, keys: dict[str, str]) -> State:
        return lifecycle.up(plan, label, catalog, self.settings, self.root, keys)

    def running(self) -> list[str]:
        return [s.name for s in self.state.running()] if self.state else []

    def down(self) -> list[str]:
        return [s.name for s in lifecycle.down(self.settings)]

    def status(self) -> list[ServiceStatus]:
        return lifecycle.status(self.settings)

    def logs(self, service: str | None, lines: int, follow: bool) -> None:
        files = lifecycle.log_files(self.settings, service)
        for path in files:
            if len(files) > 1:
                output.heading(path.stem)
            text = path.read_text(errors="replace").splitlines()
            output.out.print("\n".join(text[-lines:]), markup=False, highlight=False)
        if follow:
            _follow(files)

    def restart(self, services: list[str]) -> None:
        lifecycle.restart(self.settings, services, timeout=self.settings.VLLM_START_TIMEOUT)

    def backends(self) -> list[str]:
        return sorted(r.name for r in self.status() if r.name.startswith("vllm-"))

    def signal(self, name: str, sig: signal.Signals) -> None:
        for pid in self._pids(name):
            os.kill(pid, sig)

    def _pids(self, name: str) -> list[int]:
        state = State.load(self.settings.run_dir)
        service = next(s for s in (state.services if state else []) if s.name == name)
        return procs.group_members(service.pid, service.started)

    def bring_back(self, names: list[str]) -> None:
        lifecycle.restart(self.settings, names)

    def gateway_pid(self) -> int | None:
        return next((s.pid for s in (self.state.running() if self.state else []) if s.name == "gateway"), None)

    def keystore(self, *args: str, stdin: str | None = None) -> Any:
        return keys.keystore(self.settings, secrets.read_secrets(self.settings.secrets_file), *args, stdin=stdin)

    def rotate_master(self) -> None:
        assert self.state is not None, "the master key of a running fleet is rotated"
        keys.rotate_master(self.settings, self.state)
        self.restart(["gateway"])


def _follow(files: list[Path]) -> None:
    handles = {path: path.open("r", errors="replace") for path in files}
    for handle in handles.values():
        handle.seek(0, 2)
    try:
        while True:
            for path, handle in handles.items():
                for line in handle:
                    prefix = f"{path.stem} | " if len(files) > 1 else ""
                    output.out.print(prefix + line.rstrip("\n"), markup=False, highlight=False)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
