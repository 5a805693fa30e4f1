"""What a failed download says: each Hugging Face Hub or network error as its cause and its fix."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from llmfleet.errors import FleetError
from llmfleet.models import hfcache

if TYPE_CHECKING:
    from llmfleet.models.hfcache import HubSettings

from llmfleet.models.wanted import GIB, Wanted, free_bytes


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
    if disk_full(e) is not None:
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
    if network(e):
        return FleetError(
            f"cannot reach {hub.endpoint} to download {w.label} ({root_cause(e)}).",
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


def network(e: BaseException) -> bool:
    """A connection that failed: refused, timed out, DNS, TLS, proxy; seen anywhere in the exception's chain."""
    import httpx2
    from huggingface_hub.errors import DryRunError, LocalEntryNotFoundError

    for link in _chain(e):
        if isinstance(link, httpx2.TransportError | ConnectionError | TimeoutError):
            return True
        if isinstance(link, DryRunError | LocalEntryNotFoundError) and "connection" in str(link).lower():
            return True
    return False


def root_cause(e: BaseException) -> str:
    last = list(_chain(e))[-1]
    return f"{type(last).__name__}: {_first_line(last)}"


def disk_full(e: BaseException) -> OSError | None:
    return next((x for x in _chain(e) if isinstance(x, OSError) and x.errno == errno.ENOSPC), None)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
