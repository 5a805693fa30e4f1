"""Is a downloaded model complete? Checked offline, from the files alone.

Sizes are decided by the files' own headers, not by the network: a safetensors file starts with 8 bytes (the
header's length, little-endian), then a JSON header giving every tensor's byte range (`data_offsets`, relative
to the end of the header). So a complete shard is exactly 8 + header length + the largest end offset bytes; the
safetensors loader refuses any other length. A shard cut short by an interrupted copy or download is caught
without knowing anything else about the repo. The index's `metadata.total_size` is the sum of tensor bytes as its
exporter counted them (some write it wrong), so it decides nothing here. When huggingface_hub left its listing of
the repo (trees/COMMIT.json, with each file's size on the Hub), every file is also compared with that.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from llmfleet import paths
from llmfleet.errors import FleetError
from llmfleet.models import hfcache
from llmfleet.plan import synthetic
from llmfleet.plan.catalog import Catalog, Model, load_catalog

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
BIN_INDEX = "pytorch_model.bin.index.json"
MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit on a header
# Any one of these is a tokenizer transformers (and so vLLM) can load, with tokenizer_config.json beside it.
TOKENIZER_SETS = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"), ("tiktoken.model",))


class BadShard(Exception):
    """A safetensors file whose header cannot be read or does not match the file."""


@dataclass(frozen=True)
class Problem:
    file: str
    what: str


@dataclass
class Result:
    path: Path
    problems: list[Problem] = field(default_factory=list)
    shards: int = 0
    weight_bytes: int = 0
    notes: list[str] = field(default_factory=list)  # true but not a problem: e.g. sizes checked against the Hub

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, label: str) -> str:
        """What was verified, for a person: the model, its shards and size, and where it is."""
        weights = (
            f"{self.shards} shard(s), {self.weight_bytes / 1024**3:.2f} GiB, each the size its header gives"
            if self.shards
            else "no weight files (random weights)"
        )
        notes = "".join(f"; {n}" for n in self.notes)
        return f"{label}: complete: config and tokenizer present, {weights}{notes}.\n  {self.path}"


def expected_size(path: Path) -> tuple[int, set[str]]:
    """The exact size a safetensors file must have, from its header, and the tensor names it holds."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise BadShard(f"{size} bytes: too short to hold a safetensors header")
        length = int.from_bytes(head, "little")
        if length > MAX_HEADER:
            raise BadShard("not a safetensors file (its first 8 bytes are not a header length)")
        if length > size - 8:
            raise BadShard(f"truncated inside its header: {size} bytes, the header alone needs {8 + length}")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadShard(f"its header is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(header, dict):
        raise BadShard("its header is not a JSON object")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    try:
        end = max((int(t["data_offsets"][1]) for t in tensors.values()), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise BadShard("its header lacks data_offsets for a tensor") from None
    return 8 + length + end, set(tensors)


def check_dir(path: Path, *, weights_required: bool = True) -> Result:
    """Every problem with the model folder at `path` (a snapshot of the HF cache, or a plain --local-dir)."""
    result = Result(path)
    _check_json(path, "config.json", result)
    _check_tokenizer(path, result)
    if weights_required:
        _check_weights(path, result)
    _check_against_hub_listing(path, result)
    return result


def _missing(path: Path, name: str) -> str | None:
    """Why `name` is not there, or None. A cache snapshot holds symlinks to blobs: a dangling one is missing."""
    f = path / name
    if f.is_file():
        return None
    if f.is_symlink():
        return "missing: its link points at a blob that is not in the cache"
    return "missing"


def _check_json(path: Path, name: str, result: Result) -> None:
    if why := _missing(path, name):
        result.problems.append(Problem(name, why))
        return
    try:
        json.loads((path / name).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        size = (path / name).stat().st_size
        result.problems.append(Problem(name, f"not valid JSON ({size} bytes): truncated or corrupt"))


def _check_tokenizer(path: Path, result: Result) -> None:
    _check_json(path, "tokenizer_config.json", result)
    present = [s for s in TOKENIZER_SETS if all((path / f).is_file() for f in s)]
    if not present:
        wanted = " or ".join(" + ".join(s) for s in TOKENIZER_SETS)
        result.problems.append(Problem("tokenizer", f"missing: none of {wanted}"))
    elif ("tokenizer.json",) in present:
        _check_json(path, "tokenizer.json", result)


def _check_weights(path: Path, result: Result) -> None:
    if (path / INDEX).exists() or (path / INDEX).is_symlink():
        _check_index(path, result)
        return
    shards = sorted(p.name for p in path.glob("*.safetensors"))
    if shards:
        # Without the index, shard names still say how many there are: model-00001-of-00004.safetensors.
        for name in sorted(set(shards) | _named_siblings(shards)):
            _check_shard(path, name, None, result)
        return
    if (path / BIN_INDEX).exists() or list(path.glob("pytorch_model*.bin")):
        result.notes.append("weights are PyTorch .bin files: their presence is checked, their sizes cannot be")
        if not (path / BIN_INDEX).exists():
            return
        _check_json(path, BIN_INDEX, result)
        if all(p.file != BIN_INDEX for p in result.problems):
            weight_map = json.loads((path / BIN_INDEX).read_text(encoding="utf-8")).get("weight_map", {})
            for name in sorted(set(weight_map.values())):
                if why := _missing(path, name):
                    result.problems.append(Problem(name, why))
        return
    result.problems.append(Problem("weights", f"missing: no {INDEX}, {SINGLE} or *.safetensors"))


_SHARD_NAME = re.compile(r"^(?P<stem>.+)-(?P<i>\d+)-of-(?P<n>\d+)\.safetensors$")


def _named_siblings(names: list[str]) -> set[str]:
    """Every shard that names like model-00002-of-00004.safetensors imply exist."""
    implied = set()
    for name in names:
        if m := _SHARD_NAME.match(name):
            width, count = len(m["i"]), int(m["n"])
            implied |= {f"{m['stem']}-{i:0{width}d}-of-{m['n']}.safetensors" for i in range(1, count + 1)}
    return implied


def _check_index(path: Path, result: Result) -> None:
    _check_json(path, INDEX, result)
    if any(p.file == INDEX for p in result.problems):
        return
    index = json.loads((path / INDEX).read_text(encoding="utf-8"))
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        result.problems.append(Problem(INDEX, "has no weight_map: it does not say which shards make the model"))
        return
    by_shard: dict[str, set[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(shard, set()).add(tensor)
    for shard in sorted(by_shard):
        _check_shard(path, shard, by_shard[shard], result)


def _check_shard(path: Path, name: str, tensors: set[str] | None, result: Result) -> None:
    if why := _missing(path, name):
        result.problems.append(Problem(name, why))
        return
    file = path / name
    actual = file.stat().st_size
    try:
        expected, held = expected_size(file)
    except BadShard as e:
        result.problems.append(Problem(name, str(e)))
        return
    except OSError as e:
        result.problems.append(Problem(name, f"cannot be read ({e.strerror})"))
        return
    if actual < expected:
        result.problems.append(Problem(name, f"truncated: {actual:,} of {expected:,} bytes"))
    elif actual > expected:
        result.problems.append(Problem(name, f"{actual:,} bytes, but its header accounts for {expected:,}: corrupt"))
    elif tensors is not None and (absent := tensors - held):
        example = sorted(absent)[0]
        result.problems.append(Problem(name, f"lacks {len(absent)} tensor(s) the index puts there, e.g. {example}"))
    else:
        result.shards += 1
        result.weight_bytes += actual


def _check_against_hub_listing(path: Path, result: Result) -> None:
    """In the HF cache (hub/models--ORG--NAME/snapshots/COMMIT), compare sizes with the Hub's listing of the repo,
    which huggingface_hub keeps beside the snapshot (trees/COMMIT.json) since it downloaded it."""
    snapshots = path.parent
    repo_folder = snapshots.parent
    if snapshots.name != "snapshots" or not repo_folder.name.startswith("models--"):
        return
    from huggingface_hub import get_cached_repo_tree  # imported here: it takes half a second
    from huggingface_hub.errors import CachedRepoTreeNotFoundError, HFValidationError

    repo = repo_folder.name.removeprefix("models--").replace("--", "/", 1)
    try:
        listing = get_cached_repo_tree(repo, revision=path.name, cache_dir=repo_folder.parent)
    except (CachedRepoTreeNotFoundError, HFValidationError):
        listing = []
    checked = 0
    for entry in listing:
        f = path / entry.path
        if not f.is_file() or any(p.file == entry.path for p in result.problems):
            continue  # absent files are judged above: the download leaves out files vLLM does not need
        checked += 1
        if f.stat().st_size != entry.size:
            result.problems.append(Problem(entry.path, f"{f.stat().st_size:,} bytes, the Hub lists {entry.size:,}"))
    if checked:
        result.notes.append(f"{checked} files have the sizes the Hub lists")
    partial = list((repo_folder / "blobs").glob("*.incomplete"))
    if partial and result.problems:
        result.notes.append(
            f"{len(partial)} unfinished download(s) (*.incomplete) are in {repo_folder / 'blobs'}: "
            "downloading again resumes them"
        )


# --- finding what MODEL_OR_PATH names -----------------------------------------------------------------------------


def locate(model_or_path: str, catalog: Catalog, hub: hfcache.HubSettings) -> tuple[Path, Model | None]:
    """The folder to check: a path as given, or the cached snapshot of a catalog model or repo id."""
    given = Path(model_or_path).expanduser()
    if given.exists():
        if not given.is_dir():
            raise FleetError(
                f"{model_or_path} is a file; verify checks a model's folder.",
                "give the folder that holds config.json (a snapshot in the HF cache, or a --local-dir download).",
                model_or_path,
            )
        return _snapshot_of_repo_folder(given), None
    model = catalog.models.get(model_or_path)
    if model is not None and model.synthetic:
        return synthetic.model_dir(), model
    if model is not None and model.package:
        from llmfleet.models import packaged

        converted = packaged.model_dir(model)
        if not converted.is_dir():
            raise FleetError(
                f"{model.name} has not been converted on this host yet (looked for {converted}).",
                "run `llmfleet setup`: it converts the model from its wheel into that folder.",
                str(converted),
            )
        return converted, model
    repo = model.repo if model is not None else model_or_path
    if not repo or "/" not in repo:
        raise FleetError(
            f"{model_or_path!r} is neither a folder, a catalog model nor a repo id (ORG/NAME).",
            f"name a catalog model ({', '.join(catalog.models)}), a repo such as Qwen/Qwen2.5-7B-Instruct-AWQ, "
            "or a folder.",
            "llmfleet verify MODEL_OR_PATH",
        )
    found = hfcache.snapshot_dir(hub.hub, repo) or hfcache.modelscope_dir(hub.modelscope, repo)
    if found is None:
        name = model.name if model is not None else repo
        raise FleetError(
            f"{repo} is not in the model cache (looked in {hfcache.repo_folder(hub.hub, repo)} and {hub.modelscope}).",
            f"run `llmfleet download {name}`; if it is elsewhere, give its folder: `llmfleet verify PATH`.",
            "HF_CACHE in .env",
        )
    return found, model


def _snapshot_of_repo_folder(path: Path) -> Path:
    """Accept hub/models--ORG--NAME itself too: check the snapshot its refs/main names."""
    if path.name.startswith("models--") and (path / "snapshots").is_dir():
        repo = path.name.removeprefix("models--").replace("--", "/", 1)
        return hfcache.snapshot_dir(path.parent, repo) or path
    return path


def verify(model_or_path: str, catalog: Catalog, hub: hfcache.HubSettings) -> Result:
    """Check the model's files; raise naming every problem, or return what was checked."""
    path, model = locate(model_or_path, catalog, hub)
    result = check_dir(path, weights_required=not (model is not None and model.synthetic))
    if result.ok:
        return result
    raise incomplete(model_or_path, result, model)


def incomplete(label: str, result: Result, model: Model | None) -> FleetError:
    listed = "\n".join(f"  {p.file}: {p.what}" for p in result.problems)
    notes = "".join(f"\n  ({n})" for n in result.notes)
    if model is not None and model.synthetic:
        fix = f"delete {result.path}; the next `llmfleet up` recreates it."
    elif model is not None and model.package:
        fix = f"delete {result.path}; the next `llmfleet setup` (or `up`) converts {model.name} from its wheel again."
    elif model is not None:
        fix = f"run `llmfleet download {model.name}`: it fetches what is missing and resumes unfinished files."
    else:
        fix = (
            "download it again (`llmfleet download MODEL`, or `hf download REPO --local-dir DIR` for a folder): "
            "downloads resume and replace what is missing or cut short."
        )
    return FleetError(f"{label} is incomplete ({result.path}):\n{listed}{notes}", fix, str(result.path))


def verify_named(model_or_path: str) -> Result:
    """`llmfleet verify`: the catalog and the cache as this checkout's .env sets them."""
    return verify(model_or_path, load_catalog(paths.project_root()), hfcache.load_hub_settings())
