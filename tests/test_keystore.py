"""The key store (gateway/keystore.py) against a real PostgreSQL: what `llmfleet keys` and the gateway rely on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, free_port

from llmfleet import paths
from llmfleet.models import runtimes
from llmfleet.run.native import postgres


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A PostgreSQL server of its own, as the native runner starts one; its DSN."""
    folder = Path(tempfile.mkdtemp(prefix="llmfleet-keys-"))  # in /tmp: pytest's own folder is closed to others
    folder.chmod(0o755)  # the data folder inside is the server's own, 0700
    bin_dir, port, password = postgres.bindir(), free_port(), "test-password"
    assert postgres.initialize(bin_dir, folder / "data", password)
    assert not postgres.initialize(bin_dir, folder / "data", password)  # a second start keeps the cluster
    server = subprocess.Popen(postgres.server_argv(bin_dir, folder / "data", port),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True, check=False).returncode != 0:  # fmt: skip
            assert server.poll() is None and time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.2)
        yield postgres.dsn(port, password)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def keys(dsn: str, *args: str, stdin: str | None = None) -> tuple[int, object]:
    python = runtimes.GATEWAY.python(paths.project_root())
    result = subprocess.run([str(python), str(ROOT / "gateway" / "keystore.py"), *args], input=stdin, text=True,
                            capture_output=True, env={**os.environ, "LLMFLEET_KEYS_DSN": dsn}, timeout=60)  # fmt: skip
    assert result.stderr == "", result.stderr
    return result.returncode, json.loads(result.stdout)


def test_a_key_is_shown_once_and_stored_only_as_its_hash(database: str) -> None:
    code, made = keys(database, "create", "laptop-1", "--rpm", "10", "--models", "fleet-tiny")
    assert code == 0 and made["key"].startswith("sk-fleet-")  # type: ignore[index]
    code, exported = keys(database, "export")
    assert made["key"] not in json.dumps(exported)  # type: ignore[index]
    (row,) = [r for r in exported if r["name"] == "laptop-1"]  # type: ignore[union-attr]
    assert row["rpm"] == 10 and row["models"] == ["fleet-tiny"] and len(row["key_sha256"]) == 64


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("create", "Bad Name"), "NAME"),
        (("create", "ok-name", "--rpm", "0"), "--rpm"),
        (("create", "ok-name", "--expires", "3 weeks"), "--expires"),
        (("create", "ok-name", "--scope", "admin"), "--scope"),
        (("revoke", "nobody"), "NAME"),
    ],
)
def test_bad_input_is_refused_naming_the_flag(database: str, args: tuple[str, ...], flag: str) -> None:
    code, answer = keys(database, *args)
    assert code == 2 and answer["flag"] == flag, answer  # type: ignore[index]


def test_a_duplicate_name_is_refused_until_the_first_key_is_revoked(database: str) -> None:
    assert keys(database, "create", "ci-bot")[0] == 0
    code, answer = keys(database, "create", "ci-bot")
    assert code == 2 and "exists already" in answer["error"]  # type: ignore[index]
    assert keys(database, "revoke", "ci-bot")[0] == 0
    assert keys(database, "create", "ci-bot")[0] == 0  # the name is free again


def test_an_export_restores_every_key_after_the_rows_are_lost(database: str) -> None:
    keys(database, "create", "restore-me", "--tpm", "5000")
    _, exported = keys(database, "export")
    psql = postgres.bindir() / "psql"
    subprocess.run([str(psql), database.replace(" connect_timeout=3", ""), "-c", "DELETE FROM llmfleet_keys"],
                   check=True, capture_output=True)  # fmt: skip
    assert keys(database, "list")[1] == []
    code, answer = keys(database, "import", stdin=json.dumps(exported))
    assert code == 0 and answer == {"imported": len(exported)}  # type: ignore[arg-type]
    assert {k["name"] for k in keys(database, "list")[1]} == {r["name"] for r in exported}  # type: ignore[union-attr,index]


def test_a_database_that_does_not_answer_is_named_with_its_setting() -> None:
    code, answer = keys(postgres.dsn(free_port(), "x"), "list")
    assert code == 3 and "does not answer" in answer["error"] and answer["flag"] == "LLMFLEET_KEYS_DSN"  # type: ignore[index]


def test_the_gateways_shared_connection_is_opened_again_after_the_server_drops_it(database: str) -> None:
    python = runtimes.GATEWAY.python(paths.project_root())
    script = """
import sys
sys.path.insert(0, sys.argv[1])
import keystore
first = keystore.SHARED.run(lambda conn: conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])
with keystore.connect() as admin:  # what a database restart does to an open connection
    admin.execute("SELECT pg_terminate_backend(%s)", (first,))
second = keystore.SHARED.run(lambda conn: conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])
again = keystore.SHARED.run(lambda conn: conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])
print(first != second, second == again)
"""
    result = subprocess.run([str(python), "-c", script, str(ROOT / "gateway")], capture_output=True, text=True,
                            env={**os.environ, "LLMFLEET_KEYS_DSN": database}, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]  # a new connection once, then kept
