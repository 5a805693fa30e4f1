"""Secrets are generated on first use, private to the user, and kept once made."""

from __future__ import annotations

import stat
from pathlib import Path

from llmfleet.secrets import GENERATORS, ensure_secrets


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
