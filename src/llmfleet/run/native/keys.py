"""The key store of the native fleet: gateway/keystore.py run in the gateway's runtime (which has psycopg), with
the database's address and password from the settings and .env.secrets. `up` migrates it and gives Prometheus a
key of its own; `llmfleet keys` manages the users' keys through it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from llmfleet import paths, secrets
from llmfleet.errors import FleetError
from llmfleet.models import runtimes
from llmfleet.run.native import postgres
from llmfleet.run.state import State, running_state
from llmfleet.settings import Settings

METRICS_KEY_NAME = "prometheus"  # Prometheus' own key: it may read /metrics and nothing else


def prometheus_key_file(settings: Settings) -> Path:
    return settings.run_dir / "secrets" / "gateway.key"


def keystore(settings: Settings, secrets: dict[str, str], *args: str, stdin: str | None = None) -> Any:
    """Run `keystore.py ARGS`; its JSON answer, or a FleetError naming the flag to change."""
    root = paths.project_root()
    python = runtimes.GATEWAY.python(root)
    dsn = postgres.dsn(settings.POSTGRES_PORT, secrets["POSTGRES_PASSWORD"])
    result = subprocess.run(
        [str(python), str(root / "gateway" / "keystore.py"), *args], input=stdin, capture_output=True, text=True,
        env={**os.environ, "LLMFLEET_KEYS_DSN": dsn}, timeout=120, check=False,
    )  # fmt: skip
    try:
        answer = json.loads(result.stdout)
    except json.JSONDecodeError:
        answer = {"error": (result.stderr or result.stdout).strip()[-800:] or f"exit code {result.returncode}"}
    if result.returncode == 0:
        return answer
    flag = answer.get("flag") or "llmfleet keys"
    if result.returncode == 3:  # the database does not answer
        raise FleetError(answer["error"], "start the fleet (`llmfleet up`); `llmfleet status` shows postgres.",
                         ".env: POSTGRES_PORT")  # fmt: skip
    raise FleetError(answer["error"], "change what the message names and run the command again.", flag)


def after_database_start(settings: Settings, secrets: dict[str, str]) -> None:
    """Once PostgreSQL answers: bring the schema up to date, and give Prometheus a fresh metrics-only key (a key is
    never stored, so each `up` issues a new one and revokes the last)."""
    keystore(settings, secrets, "migrate")
    made = keystore(settings, secrets, "create", METRICS_KEY_NAME, "--scope", "metrics", "--replace")
    path = prometheus_key_file(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(made["key"])


def running_keystore(settings: Settings) -> dict[str, str]:
    """The secrets of a running native fleet, whose key database `llmfleet keys` talks to."""
    state = running_state(settings, "manage keys in", "llmfleet keys")
    if state.runner != "native":
        raise FleetError(
            "keys live in the native runner's PostgreSQL in this release; the Compose stack has no key database "
            "yet and serves the master key only.",
            "run the fleet with `llmfleet up --runner native` to issue per-user keys.",
            "llmfleet keys",
        )
    return secrets.read_secrets(settings.secrets_file)


def rotate_master(settings: Settings) -> None:
    """A new LITELLM_MASTER_KEY in .env.secrets, and the gateway restarted with it (the door may accept the old one
    for its cache time)."""
    current = running_keystore(settings)
    fresh = secrets.GENERATORS["LITELLM_MASTER_KEY"]()
    secrets.replace_secret(settings.secrets_file, "LITELLM_MASTER_KEY", fresh)
    state = State.load(settings.run_dir)
    assert state is not None  # running_keystore found it
    for service in state.services:
        if service.env.get("LITELLM_MASTER_KEY") == current["LITELLM_MASTER_KEY"]:
            service.env["LITELLM_MASTER_KEY"] = fresh
    state.save(settings.run_dir)
