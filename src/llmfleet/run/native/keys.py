"""The key store of the native fleet: gateway/keystore.py run in the gateway's runtime (which has psycopg), with
the database's address and password from the settings and .env.secrets. `up` migrates it and gives Prometheus a
key of its own; `llmfleet keys` manages the users' keys through it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from llmfleet import paths, secrets
from llmfleet.models import runtimes
from llmfleet.run.keystore import SCRIPT, answer
from llmfleet.run.native import postgres
from llmfleet.run.state import State
from llmfleet.settings import Settings

METRICS_KEY_NAME = "prometheus"  # Prometheus' own key: it may read /metrics and nothing else


def prometheus_key_file(settings: Settings) -> Path:
    return settings.run_dir / "secrets" / "gateway.key"


def keystore(settings: Settings, secrets: dict[str, str], *args: str, stdin: str | None = None) -> Any:
    """Run `keystore.py ARGS` in the gateway's runtime; its JSON answer, or a FleetError naming the flag to change."""
    root = paths.project_root()
    python = runtimes.GATEWAY.python(root)
    dsn = postgres.dsn(settings.POSTGRES_PORT, secrets["POSTGRES_PASSWORD"])
    result = subprocess.run(
        [str(python), str(root / "gateway" / SCRIPT), *args], input=stdin, capture_output=True, text=True,
        env={**os.environ, "LLMFLEET_KEYS_DSN": dsn}, timeout=120, check=False,
    )  # fmt: skip
    return answer(result, ".env: POSTGRES_PORT")


def after_database_start(settings: Settings, secrets: dict[str, str]) -> None:
    """Once PostgreSQL answers: bring the schema up to date, and give Prometheus a fresh metrics-only key (a key is
    never stored, so each `up` issues a new one and revokes the last)."""
    keystore(settings, secrets, "migrate")
    made = keystore(settings, secrets, "create", METRICS_KEY_NAME, "--scope", "metrics", "--replace")
    path = prometheus_key_file(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(made["key"])


def rotate_master(settings: Settings, state: State) -> None:
    """A new LITELLM_MASTER_KEY in .env.secrets and in the recorded gateway's environment; the caller restarts it
    (the door may accept the old one for its cache time)."""
    old, fresh = secrets.rotate_secret(settings.secrets_file, "LITELLM_MASTER_KEY")
    for service in state.services:
        if service.env.get("LITELLM_MASTER_KEY") == old:
            service.env["LITELLM_MASTER_KEY"] = fresh
    state.save(settings.run_dir)
