"""Secrets are generated on first use, private to the user, and kept once made."""

from __future__ import annotations

import stat
from pathlib import Path

from dotenv import dotenv_values

from llmfleet.secrets import (
    GENERATORS,
    SERVICE_SECRETS,
    ensure_secrets,
    read_secrets,
    replace_secret,
    rotate_secret,
    service_files_dir,
)


def test_first_use_generates_every_secret_into_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / ".env.secrets"
    values = ensure_secrets(path)
    assert set(values) == set(GENERATORS)
    assert all(len(v) >= 20 for v in values.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert values["LITELLM_MASTER_KEY"].startswith("sk-")


def test_existing_values_are_kept_and_missing_ones_added(tmp_path: Path) -> None:
    path = tmp_path / ".env.secrets"
    path.write_text("LITELLM_MASTER_KEY=sk-kept-value\n")
    values = ensure_secrets(path)
    assert values["LITELLM_MASTER_KEY"] == "sk-kept-value"
    assert ensure_secrets(path) == values  # a second call changes nothing
    assert path.read_text().count("LITELLM_MASTER_KEY=") == 1


def test_two_hosts_get_different_keys(tmp_path: Path) -> None:
    a, b = ensure_secrets(tmp_path / "a"), ensure_secrets(tmp_path / "b")
    assert all(a[name] != b[name] for name in GENERATORS)


def test_each_compose_service_gets_a_file_with_only_its_own_secrets(tmp_path: Path) -> None:
    path = tmp_path / ".env.secrets"
    values = ensure_secrets(path)
    folder = service_files_dir(path)
    for service, names in SERVICE_SECRETS.items():
        held = dotenv_values(folder / f"{service}.env")
        assert held == {name: values[name] for name in names}, service
    vllm = dotenv_values(folder / "vllm.env")
    assert "LITELLM_MASTER_KEY" not in vllm and "REDIS_PASSWORD" not in vllm


def test_modes_are_tightened_again_and_a_replaced_secret_reaches_the_service_files(tmp_path: Path) -> None:
    path = tmp_path / ".env.secrets"
    ensure_secrets(path)
    folder = service_files_dir(path)
    for loosened in [path, folder / "gateway.env"]:
        loosened.chmod(0o644)
    folder.chmod(0o755)
    ensure_secrets(path)  # as every up does
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in folder.iterdir())
    replace_secret(path, "LITELLM_MASTER_KEY", "sk-rotated")
    assert dotenv_values(folder / "gateway.env")["LITELLM_MASTER_KEY"] == "sk-rotated"
    assert "LITELLM_MASTER_KEY" not in dotenv_values(
        folder / "prometheus.env"
    )  # it reads metrics with a key of its own
    replace_secret(path, "GATEWAY_METRICS_KEY", "sk-metrics-rotated")
    for service in ("gateway", "prometheus"):
        assert dotenv_values(folder / f"{service}.env")["GATEWAY_METRICS_KEY"] == "sk-metrics-rotated"


def test_a_rotated_secret_is_new_reaches_the_service_files_and_returns_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / ".env.secrets"
    before = ensure_secrets(path)["LITELLM_MASTER_KEY"]
    old, fresh = rotate_secret(path, "LITELLM_MASTER_KEY")
    assert old == before and fresh != before and fresh.startswith("sk-")
    assert read_secrets(path)["LITELLM_MASTER_KEY"] == fresh
    assert dotenv_values(service_files_dir(path) / "gateway.env")["LITELLM_MASTER_KEY"] == fresh
