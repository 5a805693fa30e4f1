"""The Hugging Face cache the stack shares, and the settings that say where models come from.

Compose mounts `HF_CACHE` (from .env) into every vLLM container at /root/.cache/huggingface, so that folder is
the one place models live: `llmfleet download` fills it, `verify` and `doctor` read it, and the native runner's
servers get it as HF_HOME (see `server_env`). ModelScope downloads go to its `modelscope/` subfolder, so they
sit on the same disk and inside the same mount.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from llmfleet import paths
from llmfleet.settings import load_env_settings

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MIRROR = "https://hf-mirror.com"
CONTAINER_HF_HOME = "/root/.cache/huggingface"  # where Compose mounts HF_CACHE (render/compose.py)


class HubSettings(BaseSettings):
    """The .env settings about models (every one documented there); the environment overrides each."""

    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8")

    HF_CACHE: str = "~/.cache/huggingface"
    HF_ENDPOINT: str = HF_DEFAULT_ENDPOINT
    HF_TOKEN: str = ""  # never shown; only whether it is set
    HF_HUB_OFFLINE: bool = False
    VLLM_USE_MODELSCOPE: bool = False

    @property
    def home(self) -> Path:
        """The cache root (what HF_HOME means to huggingface_hub); relative paths are from the project root."""
        p = Path(self.HF_CACHE).expanduser()
        return p if p.is_absolute() else paths.project_root() / p

    @property
    def hub(self) -> Path:
        """Where huggingface_hub keeps models--ORG--NAME folders."""
        return self.home / "hub"

    @property
    def modelscope(self) -> Path:
        """MODELSCOPE_CACHE for ModelScope downloads: inside HF_CACHE, so Compose's one mount covers both."""
        return self.home / "modelscope"

    @property
    def endpoint(self) -> str:
        return self.HF_ENDPOINT.rstrip("/") or HF_DEFAULT_ENDPOINT

    @property
    def source(self) -> str:
        return "modelscope" if self.VLLM_USE_MODELSCOPE else "huggingface"


def load_hub_settings() -> HubSettings:
    return load_env_settings(HubSettings)


def server_env(hub: HubSettings, *, in_container: bool = False) -> dict[str, str]:
    """What a vLLM server needs to find the same models `llmfleet download` put in the cache.

    Native servers get HF_HOME pointing at HF_CACHE; in Compose the mount already puts it at HF_HOME's default.
    """
    home = CONTAINER_HF_HOME if in_container else str(hub.home)
    env = {
        "HF_HOME": home,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_OFFLINE": "1" if hub.HF_HUB_OFFLINE else "0",
    }
    if hub.HF_TOKEN:
        env["HF_TOKEN"] = hub.HF_TOKEN
    if hub.VLLM_USE_MODELSCOPE:
        # vLLM then calls modelscope's snapshot_download, which finds what `llmfleet download` stored there.
        env["VLLM_USE_MODELSCOPE"] = "True"
        env["MODELSCOPE_CACHE"] = f"{home}/modelscope"
    return env


def repo_folder(hub: Path, repo: str) -> Path:
    """huggingface_hub's folder for a model repo: models--ORG--NAME."""
    return hub / ("models--" + repo.replace("/", "--"))


@dataclass(frozen=True)
class CachedBytes:
    complete: int  # bytes of finished blobs
    partial: int  # bytes in *.incomplete blobs: an interrupted or running download
    partial_files: int
    newest_partial_write: float | None = None  # mtime of the unfinished file written last: a hung download stops


def cached_bytes(hub: Path, repo: str) -> CachedBytes:
    """How much of a repo is on disk. A download in progress shows up as growing `partial`."""
    complete = partial = files = 0
    newest: float | None = None
    blobs = repo_folder(hub, repo) / "blobs"
    if blobs.is_dir():
        for blob in blobs.iterdir():
            try:
                stat = blob.stat()
            except OSError:  # removed while we looked (a download finishing)
                continue
            size = stat.st_size
            if blob.name.endswith(".incomplete"):
                partial += size
                files += 1
                newest = max(newest or 0.0, stat.st_mtime)
            else:
                complete += size
    return CachedBytes(complete, partial, files, newest)


def snapshot_dir(hub: Path, repo: str, revision: str = "main") -> Path | None:
    """The snapshot folder a download of `repo` produced: the one refs/REVISION names, else the newest."""
    folder = repo_folder(hub, repo)
    ref = folder / "refs" / revision
    if ref.is_file():
        candidate = folder / "snapshots" / ref.read_text().strip()
        if candidate.is_dir():
            return candidate
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return None
    found = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def modelscope_dir(root: Path, repo: str) -> Path | None:
    """Where ModelScope's snapshot_download put `repo` under MODELSCOPE_CACHE=root (its layouts, newest first)."""
    owner, _, name = repo.partition("/")
    candidates = [
        *sorted((root / "models" / f"{owner}--{name}" / "snapshots").glob("*"), key=_mtime, reverse=True),
        root / "models" / owner / name.replace(".", "___"),
        root / "models" / owner / name,
        root / owner / name,
    ]
    return next((c for c in candidates if (c / "config.json").exists()), None)


def _mtime(p: Path) -> float:
    return p.stat().st_mtime
