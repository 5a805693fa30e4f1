"""Hardening (issue 17): what `make setup`, `down`, the native runner, Compose and the image builds must never do.

Nothing here starts a server or touches the host: scripts run against stub commands, runners are read as the argv
and Compose commands they would run."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from conftest import ROOT

# --- make setup (scripts/system-deps.sh)


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_system_deps_never_stops_or_disables_a_service_the_host_runs(tmp_path: Path) -> None:
    """With redis-server already running and Prometheus missing, the script installs and leaves every service be.

    Every command it may run is a stub on a PATH of stubs only, so the host's apt and systemd are never reached."""
    calls = tmp_path / "calls"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    record = f'echo "${{0##*/}} $*" >> {calls}'
    _stub(stubs, "id", "echo 0")
    _stub(stubs, "apt-get", record)
    _stub(stubs, "redis-server", record)
    _stub(stubs, "systemctl", record + "\nexit 0  # every service reads as active")
    result = subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "system-deps.sh")],
        env={"PATH": str(stubs)}, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ran = calls.read_text().splitlines()
    assert any(line.startswith("apt-get install") for line in ran)  # the install path was taken
    assert [line for line in ran if line.startswith("systemctl") and "is-active" not in line] == []
