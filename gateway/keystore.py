"""Per-user API keys in PostgreSQL: one row per key, the key itself never stored (only its sha256).

Two users of this module, one implementation:
- the gateway's custom auth (auth.py) looks keys up and counts their usage (usage.py), inside LiteLLM;
- `llmfleet keys` runs it as a program in the gateway's runtime (`python keystore.py create NAME ...`), which has
  psycopg: create, list, revoke, export and import.

The connection comes from LLMFLEET_KEYS_DSN (a libpq connection string), with the password from POSTGRES_PASSWORD
where the string has none (Compose and Kubernetes hand the password as a secret of its own). Every statement is
parameterized.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

DSN_ENV = "LLMFLEET_KEYS_DSN"
T = TypeVar("T")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
KEY_PREFIX = "sk-fleet-"
CONNECT_TIMEOUT_S = 3  # a database that does not answer is a 503 within seconds, never a hung request
SCOPES = ("inference", "metrics")  # metrics: may read /metrics and nothing else (Prometheus' own key)

# Each migration runs once, in order, inside one transaction; the version is the index + 1.
MIGRATIONS = (
    """
    CREATE TABLE llmfleet_keys (
        name text PRIMARY KEY,
        key_sha256 text NOT NULL UNIQUE,
        key_hint text NOT NULL,
        scope text NOT NULL DEFAULT 'inference',
        models text[] NOT NULL DEFAULT '{}',
        rpm integer CHECK (rpm > 0),
        tpm integer CHECK (tpm > 0),
        expires_at timestamptz,
        revoked_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_used_at timestamptz,
        requests bigint NOT NULL DEFAULT 0,
        prompt_tokens bigint NOT NULL DEFAULT 0,
        completion_tokens bigint NOT NULL DEFAULT 0
    )
    """,
)


@dataclass(frozen=True)
class Key:
    """A key as the gateway sees it: never the key itself."""

    name: str
    scope: str
    models: list[str]  # empty: every model the fleet serves
    rpm: int | None
    tpm: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    requests: int
    prompt_tokens: int
    completion_tokens: int

    def refusal(self, now: datetime) -> str | None:
        """Why this key may not be used now, or None."""
        if self.revoked_at is not None:
            return f"The key {self.name!r} was revoked."
        if self.expires_at is not None and self.expires_at <= now:
            return f"The key {self.name!r} expired at {self.expires_at:%Y-%m-%d %H:%M} UTC."
        return None


class KeyError_(Exception):
    """A request to the key store that cannot be done: the message says what to change, `flag` where."""

    def __init__(self, message: str, flag: str) -> None:
        super().__init__(message)
        self.flag = flag


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def connect(dsn: str | None = None) -> psycopg.Connection[dict[str, Any]]:
    conninfo = dsn or os.environ[DSN_ENV]
    given = os.environ.get("POSTGRES_PASSWORD")
    password = {"password": given} if given and "password" not in conninfo_to_dict(conninfo) else {}
    return psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S, row_factory=dict_row, autocommit=True,
                           **password)  # fmt: skip


class Shared:
    """One connection per gateway worker, kept open: a new one per request would cost a password handshake each
    time. Used from worker threads (asyncio.to_thread), one at a time; a broken connection is opened again once.
    The first connection brings the schema up to date, so a gateway whose database was just created (Compose,
    Kubernetes) answers a wrong key with 401 before anyone ran `llmfleet keys`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._migrated = False

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = connect()
                try:
                    if not self._migrated:
                        migrate(self._conn)
                        self._migrated = True
                    return work(self._conn)
                except psycopg.OperationalError:
                    self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")


SHARED = Shared()  # the gateway worker's connection (auth.py, usage.py), opened at first use; the CLI connects per run


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema to the latest version; return it. Safe to run at every `up`, by several at once."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7418)")  # two gateways starting together migrate once
        conn.execute("CREATE TABLE IF NOT EXISTS llmfleet_schema (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) AS v FROM llmfleet_schema").fetchone()
        current = (row or {}).get("v") or 0
        for version, statement in enumerate(MIGRATIONS[current:], start=current + 1):
            conn.execute(statement)
            conn.execute("INSERT INTO llmfleet_schema (version) VALUES (%s)", (version,))
    return len(MIGRATIONS)


def _key(row: dict[str, Any]) -> Key:
    return Key(**{field: row[field] for field in Key.__dataclass_fields__})


def lookup(conn: psycopg.Connection[Any], key: str) -> Key | None:
    row = conn.execute("SELECT * FROM llmfleet_keys WHERE key_sha256 = %s", (digest(key),)).fetchone()
    return _key(row) if row else None


def create(conn: psycopg.Connection[Any], name: str, *, models: list[str], rpm: int | None, tpm: int | None,
           expires: timedelta | None, scope: str = "inference") -> str:  # fmt: skip
    """A new key named `name`; returns the key, which is shown once and never stored."""
    if not NAME.match(name):
        raise KeyError_(f"{name!r} is not a key name: use 1-63 lowercase letters, digits, '.', '_' or '-'.", "NAME")
    if scope not in SCOPES:
        raise KeyError_(f"scope {scope!r} is unknown; use one of {', '.join(SCOPES)}.", "--scope")
    for value, flag in ((rpm, "--rpm"), (tpm, "--tpm")):
        if value is not None and value < 1:
            raise KeyError_(f"{flag} {value} is not a limit: give a whole number of 1 or more.", flag)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + expires if expires else None
    # A revoked key's name may be given to a new key; its usage totals stay with the name.
    done = conn.execute(
        "INSERT INTO llmfleet_keys (name, key_sha256, key_hint, scope, models, rpm, tpm, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET key_sha256 = EXCLUDED.key_sha256, key_hint = EXCLUDED.key_hint,"
        " scope = EXCLUDED.scope, models = EXCLUDED.models, rpm = EXCLUDED.rpm, tpm = EXCLUDED.tpm,"
        " expires_at = EXCLUDED.expires_at, revoked_at = NULL, created_at = now()"
        " WHERE llmfleet_keys.revoked_at IS NOT NULL",
        (name, digest(key), key[: len(KEY_PREFIX) + 4], scope, models, rpm, tpm, expires_at),
    )
    if done.rowcount == 0:
        raise KeyError_(f"a key named {name!r} exists already: revoke it first, or choose another name.", "NAME")
    return key


def revoke(conn: psycopg.Connection[Any], name: str) -> None:
    done = conn.execute("UPDATE llmfleet_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,))
    if done.rowcount == 0:
        raise KeyError_(f"there is no key named {name!r} that is not revoked already; `keys list` shows them.", "NAME")


def listed(conn: psycopg.Connection[Any]) -> list[Key]:
    return [_key(r) for r in conn.execute("SELECT * FROM llmfleet_keys ORDER BY name").fetchall()]


def record_usage(conn: psycopg.Connection[Any], name: str, prompt_tokens: int, completion_tokens: int,
                 requests: int = 1) -> None:  # fmt: skip
    conn.execute(
        "UPDATE llmfleet_keys SET requests = requests + %s, prompt_tokens = prompt_tokens + %s,"
        " completion_tokens = completion_tokens + %s, last_used_at = now() WHERE name = %s",
        (requests, prompt_tokens, completion_tokens, name),
    )


def export_rows(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every row, its key as the sha256 only: a backup that restores every key without holding one."""
    rows = conn.execute("SELECT * FROM llmfleet_keys ORDER BY name").fetchall()
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()} for row in rows]


def import_rows(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> int:
    """Restore an export: a row whose name exists already is replaced by the exported one."""
    columns = ("name", "key_sha256", "key_hint", "scope", "models", "rpm", "tpm", "expires_at", "revoked_at",
               "created_at", "last_used_at", "requests", "prompt_tokens", "completion_tokens")  # fmt: skip
    statement = sql.SQL(
        "INSERT INTO llmfleet_keys ({columns}) VALUES ({values}) ON CONFLICT (name) DO UPDATE SET {updates}"
    ).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        updates=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns[1:]),
    )
    with conn.transaction():
        for row in rows:
            conn.execute(statement, tuple(row.get(c) for c in columns))
    return len(rows)


def parse_expiry(text: str | None) -> timedelta | None:
    """`30d`, `12h`, `90m`, or nothing (never expires)."""
    if not text:
        return None
    match = re.fullmatch(r"(\d+)([dhm])", text)
    if not match or int(match.group(1)) == 0:
        raise KeyError_(f"--expires {text!r} is not a duration: write it as 30d, 12h or 90m.", "--expires")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})


# --- `python keystore.py ...`: what `llmfleet keys` runs in the gateway's runtime; one JSON document on stdout ---


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="keystore.py")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate")
    made = commands.add_parser("create")
    made.add_argument("name")
    made.add_argument("--models", default="")
    made.add_argument("--rpm", type=int)
    made.add_argument("--tpm", type=int)
    made.add_argument("--expires")
    made.add_argument("--scope", default="inference")
    made.add_argument("--replace", action="store_true", help="revoke a key of that name first (a service's key)")
    commands.add_parser("list")
    revoked = commands.add_parser("revoke")
    revoked.add_argument("name")
    commands.add_parser("export")
    commands.add_parser("import")
    args = parser.parse_args(argv)
    try:
        with connect() as conn:
            migrate(conn)
            if args.command == "migrate":
                result: Any = {"schema": len(MIGRATIONS)}
            elif args.command == "create":
                models = [m for m in args.models.split(",") if m]
                if args.replace:
                    conn.execute("UPDATE llmfleet_keys SET revoked_at = now() WHERE name = %s", (args.name,))
                key = create(conn, args.name, models=models, rpm=args.rpm, tpm=args.tpm,
                             expires=parse_expiry(args.expires), scope=args.scope)  # fmt: skip
                result = {"name": args.name, "key": key}
            elif args.command == "list":
                result = [asdict(k) for k in listed(conn)]
            elif args.command == "revoke":
                revoke(conn, args.name)
                result = {"revoked": args.name}
            elif args.command == "export":
                result = export_rows(conn)
            else:
                result = {"imported": import_rows(conn, json.load(sys.stdin))}
    except KeyError_ as problem:
        json.dump({"error": str(problem), "flag": problem.flag}, sys.stdout)
        return 2
    except psycopg.OperationalError as problem:
        json.dump({"error": f"the key database does not answer: {str(problem).strip()}", "flag": DSN_ENV}, sys.stdout)
        return 3
    json.dump(result, sys.stdout, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
