"""`llmfleet keys`: one key per person or app, kept in the fleet's PostgreSQL (gateway/keystore.py).

A key is printed once, at `create`; the database holds only its sha256. The master key stays the administrator's.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from llmfleet import output
from llmfleet.errors import FleetError
from llmfleet.render.door import AUTH_CACHE_S
from llmfleet.run.runner import Runner, for_state
from llmfleet.run.state import State, running_state
from llmfleet.settings import load_settings

keys = typer.Typer(
    no_args_is_help=True, help="Per-user API keys: create, list, revoke, back up; rotate the master key."
)

REVOCATION_S = 2 * AUTH_CACHE_S  # the door's cache of accepted keys, then each gateway worker's (gateway/auth.py)


def _runner() -> Runner:
    settings = load_settings()
    return for_state(running_state(settings, "manage keys in", "llmfleet keys"), settings)


def _run(*args: str, stdin: str | None = None) -> Any:
    return _runner().keystore(*args, stdin=stdin)


@keys.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for: lowercase letters, digits, . _ -")],
    models: Annotated[str, typer.Option(help="Models it may use, comma-separated (default: all).")] = "",
    rpm: Annotated[int | None, typer.Option(help="Requests per minute it may send (default: no limit).")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute it may use (default: no limit).")] = None,
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d, 12h, 90m (default: never).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {name, key} as JSON.")] = False,
) -> None:
    """Create a key and print it once: it is stored only as a hash, and cannot be shown again."""
    settings = load_settings()
    state = State.load(settings.run_dir)
    wanted = [m for m in models.split(",") if m]
    unknown = [m for m in wanted if state is not None and m not in state.models]
    if unknown:
        raise FleetError(f"--models names {', '.join(unknown)}, which this fleet does not serve.",
                         f"name models it serves: {', '.join(state.models if state else [])}.", "--models")  # fmt: skip
    args = ["create", name, "--models", ",".join(wanted)]
    args += [*(["--rpm", str(rpm)] if rpm is not None else []), *(["--tpm", str(tpm)] if tpm is not None else [])]
    made = _run(*args, *(["--expires", expires] if expires else []))
    if as_json:
        output.json(made)
        return
    output.result(made["key"])
    output.info(f"Key {name!r} created. It is shown only now: store it where its user keeps secrets.")


@keys.command("list")
def list_keys(as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False) -> None:
    """Every key: its models, limits, last use and usage, never the key itself."""
    rows = _run("list")
    if as_json:
        output.json(rows)
        return
    now = datetime.now(UTC)
    table = output.table("name", "state", "models", "rpm", "tpm", "expires", "last used", "requests", "prompt tokens",
                         "completion tokens")  # fmt: skip
    for row in rows:
        limits = (str(row["rpm"] or "-"), str(row["tpm"] or "-"))
        when = ((row["expires_at"] or "never")[:16], (row["last_used_at"] or "never")[:19])
        usage = (str(row["requests"]), str(row["prompt_tokens"]), str(row["completion_tokens"]))
        table.add_row(row["name"], _state(row, now), ",".join(row["models"]) or "all", *limits, *when, *usage)
    output.out.print(table)


def _state(row: dict[str, Any], now: datetime) -> str:
    if row["revoked_at"]:
        return "revoked"
    if row["expires_at"] and datetime.fromisoformat(row["expires_at"]) <= now:
        return "expired"
    return "active"


@keys.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The key's name (`llmfleet keys list`).")]) -> None:
    """Revoke a key: refused everywhere within the gateway's cache time."""
    _run("revoke", name)
    output.info(f"Key {name!r} revoked; the gateway refuses it within {REVOCATION_S} s.")


@keys.command("export")
def export(file: Annotated[Path | None, typer.Argument(help="Where to write (default: stdout).")] = None) -> None:
    """Back up every key (as hashes, with limits and usage) as JSON; `keys import` restores them."""
    text = json.dumps(_run("export"), indent=2) + "\n"
    if file is None:
        sys.stdout.write(text)
        return
    file.write_text(text, encoding="utf-8")
    file.chmod(0o600)
    output.info(f"Wrote {file}.")


@keys.command("import")
def import_keys(file: Annotated[Path, typer.Argument(help="A file `keys export` wrote.")]) -> None:
    """Restore keys from an export: each key named there is replaced by the exported one."""
    if not file.is_file():
        raise FleetError(f"{file} does not exist.", "name a file `llmfleet keys export` wrote.", "FILE")
    done = _run("import", stdin=file.read_text(encoding="utf-8"))
    output.info(f"Restored {done['imported']} key(s) from {file}.")


@keys.command("rotate-master")
def rotate_master() -> None:
    """Replace LITELLM_MASTER_KEY in .env.secrets and restart the gateway with it."""
    settings = load_settings()
    _runner().rotate_master()
    output.info(f"A new master key is in {settings.secrets_file}; the old one is refused within {AUTH_CACHE_S} s.")
