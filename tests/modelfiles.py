"""Real model folders for the model-operation tests, built from tests/data/tiny-model/.

tiny-model holds two safetensors shards written by the safetensors library (tests/data/make_tiny_model.py), their
index, and the synthetic model's config and tokenizer. `hf_cache` lays them out as huggingface_hub does:

    HF_CACHE/hub/models--ORG--NAME/blobs/<sha256>          the bytes (hash: sha256 for LFS files, git sha1 else)
    HF_CACHE/hub/models--ORG--NAME/snapshots/<commit>/F    a relative symlink to ../../blobs/<hash>
    HF_CACHE/hub/models--ORG--NAME/refs/main               the commit
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

TINY = Path(__file__).parent / "data" / "tiny-model"
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "Qwen/Qwen2.5-7B-Instruct-AWQ"  # the catalog's model, so `llmfleet` finds it by name


@dataclass
class CachedModel:
    home: Path  # what HF_CACHE is set to
    snapshot: Path

    @property
    def repo_folder(self) -> Path:
        return self.snapshot.parent.parent

    def blob(self, name: str) -> Path:
        """The blob a snapshot file links to."""
        return (self.snapshot / name).resolve()


def hf_cache(home: Path, repo: str = REPO) -> CachedModel:
    folder = home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / COMMIT
    (folder / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    for f in sorted(TINY.iterdir()):
        data = f.read_bytes()
        digest = hashlib.sha256(data).hexdigest() if f.suffix == ".safetensors" else _git_sha1(data)
        (folder / "blobs" / digest).write_bytes(data)
        (snapshot / f.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    return CachedModel(home, snapshot)


def local_dir(target: Path) -> Path:
    """A `--local-dir` style download: the files themselves in one folder."""
    shutil.copytree(TINY, target)
    return target


def truncate(path: Path, by: int) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - by)


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
