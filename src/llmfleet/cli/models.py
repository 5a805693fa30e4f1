"""`download` and `verify`: models in the Hugging Face cache."""

from __future__ import annotations

from typing import Annotated

import typer

from llmfleet.cli import report


def download(
    models: Annotated[
        list[str] | None, typer.Argument(help="Catalog models or repo ids (default: fleet.yaml's).")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="huggingface or modelscope (default: VLLM_USE_MODELSCOPE in .env).")
    ] = None,
    offline: Annotated[
        bool | None, typer.Option("--offline/--online", help="Only use the cache (default: HF_HUB_OFFLINE in .env).")
    ] = None,
    list_models: Annotated[bool, typer.Option("--list", help="List the catalog: sizes, cards, cache state.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: print JSON.")] = False,
) -> None:
    """Download models into the shared HF cache (resumable, disk checked first), then verify them."""
    from llmfleet.models import download as models_download
    from llmfleet.models import listing

    if list_models:
        report.model_list(listing.catalog_rows(), as_json)
        return
    models_download.download(models or [], source=source, offline=offline)


def verify(
    model_or_path: Annotated[str, typer.Argument(help="A catalog model, a repo id, or a model folder.")],
) -> None:
    """Check a downloaded model's files (every shard, config, tokenizer); exit 1 naming what is missing."""
    from llmfleet.models import verify as model_verify

    report.verified(model_or_path, model_verify.verify_named(model_or_path))
