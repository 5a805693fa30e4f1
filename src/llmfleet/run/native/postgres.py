"""PostgreSQL for the key store, run natively: Debian's server binaries, a data folder that outlives the run dir.

PostgreSQL refuses to run as root. Started by root, the server runs as the `postgres` user the Debian package
creates (setpriv execs it, so the pid the runner tracks is the server's own); started by anyone else, as them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from llmfleet.errors import FleetError

USER = "llmfleet"
SERVER_USER = "postgres"  # Debian's postgresql package creates it
DEBIAN_BINARIES = Path("/usr/lib/postgresql")


def bindir(configured: str = "") -> Path:
    """The server's binaries (initdb, postgres): POSTGRES_BIN_DIR, else pg_config's answer, else Debian's newest."""
    if configured:
        if not (Path(configured) / "postgres").is_file():
            raise FleetError(
                f"POSTGRES_BIN_DIR is {configured}, which has no `postgres` server binary.",
                "point it at PostgreSQL's bin folder (Debian: /usr/lib/postgresql/15/bin), or leave it empty.",
                ".env: POSTGRES_BIN_DIR",
            )
        return Path(configured)
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if found and (Path(found) / "postgres").is_file():
            return Path(found)
    versions = sorted(DEBIAN_BINARIES.glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit()
                      else 0)  # fmt: skip
    if versions:
        return versions[-1].parent
    raise FleetError(
        "PostgreSQL's server is not installed; the key store (llmfleet keys) needs it.",
        "run `make setup` (Debian: apt-get install postgresql), or set POSTGRES_BIN_DIR in .env.",
        "POSTGRES_BIN_DIR",
    )


def as_server_user(argv: list[str]) -> list[str]:
    """`argv` as the user the server may run as: unchanged unless this process is root."""
    if os.geteuid() != 0:
        return argv
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise FleetError(
            f"PostgreSQL cannot run as root, and there is no {SERVER_USER!r} user to run it as.",
            "install Debian's postgresql package (it creates the user), or run llmfleet as another user.",
            "POSTGRES_BIN_DIR",
        ) from None
    return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups", "--", *argv]


def hand_over(folder: Path) -> None:
    """The folder (and what is in it) to the server's user, when root starts it."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SERVER_USER)
    for path in (folder, *folder.rglob("*")):
        os.chown(path, entry.pw_uid, entry.pw_gid)


def check_reachable(data: Path) -> None:
    """Started by root, the server runs as `postgres`: every folder above its data must let others through."""
    if os.geteuid() != 0:
        return
    closed = [p for p in data.parents if p.exists() and not p.stat().st_mode & 0o001]
    if closed:
        raise FleetError(
            f"the key database's folder {data} is below {closed[0]}, which the {SERVER_USER} user PostgreSQL runs "
            "as cannot enter.",
            "set POSTGRES_DATA_DIR in .env to a folder under one that others may enter (the default for root is "
            "/var/lib/llmfleet/postgres).",
            "POSTGRES_DATA_DIR",
        )


def initialize(bin_dir: Path, data: Path, password: str) -> bool:
    """Create the cluster in `data` on first use (user llmfleet, password authentication); False if it exists."""
    if (data / "PG_VERSION").is_file():
        return False
    check_reachable(data)
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    hand_over(data)
    # The password in a private file that only the server's user reads, gone when initdb is done: never on a
    # command line (stdin is a pipe the server's user may not reopen when root started it).
    with tempfile.TemporaryDirectory(prefix="llmfleet-initdb-") as private:
        secret = Path(private) / "password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        hand_over(Path(private))
        result = subprocess.run(
            as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={secret}",
                            "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"]),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise FleetError(
            f"initdb failed for the key database in {data}:\n{result.stderr.strip()[-1500:]}",
            f"fix the cause shown, or remove {data} if it is a broken first attempt.",
            "POSTGRES_DATA_DIR",
        )
    return True


def server_argv(bin_dir: Path, data: Path, port: int) -> list[str]:
    """The server on 127.0.0.1 only, over TCP (no unix socket: no folder of the run dir to share with it), started
    through this module's launcher (below), which clears the lock a crashed server left."""
    server = as_server_user([
        str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
        "-c", "unix_socket_directories=", "-c", "max_connections=50",
    ])  # fmt: skip
    return [sys.executable, "-m", "llmfleet.run.native.postgres", str(data), "--", *server]


def clear_stale_lock(data: Path) -> bool:
    """Remove postmaster.pid when the server it names is gone or a zombie (a SIGKILLed server whose parent exited
    is reaped only if the host's init reaps orphans; PostgreSQL takes a zombie for a live server and would refuse
    to start). True if it was removed."""
    lock = data / "postmaster.pid"
    try:
        pid = int(lock.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        state = "gone"
    if state not in ("gone", "Z", "X"):
        return False
    lock.unlink(missing_ok=True)
    return True


def _launch(argv: list[str]) -> None:
    """`python -m llmfleet.run.native.postgres DATA -- SERVER...`: clear a stale lock, then become the server (exec:
    the pid the runner tracks is the server's own)."""
    data, server = Path(argv[0]), argv[2:]
    if clear_stale_lock(data):
        print(f"llmfleet: removed a stale {data / 'postmaster.pid'} (its server had ended)", flush=True)
    os.chdir("/")  # the run dir may be closed to the server's user
    os.execvp(server[0], server)  # noqa: S606 - the server command line the runner built, not user input


def dsn(port: int, password: str) -> str:
    return f"host=127.0.0.1 port={port} dbname=postgres user={USER} password={password} connect_timeout=3"


if __name__ == "__main__":
    _launch(sys.argv[1:])
