"""Settings come from .env, overridden by the environment; a bad value names where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmfleet.errors import FleetError
from llmfleet.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMFLEET_ROOT", str(tmp_path))
    for name in ("GATEWAY_PORT", "RUNNER", "LLMFLEET_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_committed_env_file_gives_the_documented_defaults(project: Path) -> None:
    (project / ".env").write_text((ROOT / ".env").read_text())
    settings = load_settings()
    assert (settings.GATEWAY_PORT, settings.PROMETHEUS_PORT, settings.GRAFANA_PORT) == (4000, 9090, 3000)
    assert settings.run_dir == project / ".run"


def test_every_committed_setting_has_a_comment(project: Path) -> None:
    lines = (ROOT / ".env").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f".env line {i + 1} ({line}) has no comment above it"


def test_environment_overrides_env_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / ".env").write_text("GATEWAY_PORT=4000\n")
    monkeypatch.setenv("GATEWAY_PORT", "4100")
    assert load_settings().GATEWAY_PORT == 4100


def test_bad_value_in_env_file_names_file_and_setting(project: Path) -> None:
    (project / ".env").write_text("GATEWAY_PORT=four thousand\n")
    with pytest.raises(FleetError) as caught:
        load_settings()
    assert caught.value.where == ".env: GATEWAY_PORT"
    assert "'four thousand'" in caught.value.what


def test_bad_value_in_environment_names_the_variable(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER", "kubernetes")
    with pytest.raises(FleetError) as caught:
        load_settings()
    assert caught.value.where == "environment variable RUNNER"
