"""The plan (fleet.yaml): which GPU serves which model with which vLLM settings.

Everything that depends on the plan (Compose services, the gateway's model list, Prometheus targets) is
rendered from it by `llmfleet render`; the native runner builds its processes from it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from llmfleet import paths
from llmfleet.errors import FleetError, first_problem, yaml_path
from llmfleet.plan.budget import Budget, estimate
from llmfleet.plan.catalog import Catalog, Model, load_catalog
from llmfleet.yamltext import to_yaml

PLAN_FILE = "fleet.yaml"
CPU_SERVERS = 2  # two servers, so routing, failover and per-backend metrics are exercised on a CPU host too


class Gpu(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    name: str
    memory_gib: float = Field(gt=0)
    uuid: str | None = None


class Server(BaseModel):
    """One vLLM server: on one GPU, on several (tensor parallel), or on the CPU when `gpus` is empty."""

    model_config = ConfigDict(extra="forbid")

    gpus: list[int] = Field(default_factory=list)
    model: str
    max_model_len: int = Field(gt=0)
    max_num_seqs: int = Field(gt=0)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=0.98)
    extra_args: list[str] = Field(default_factory=list)

    @property
    def tensor_parallel_size(self) -> int:
        return max(1, len(self.gpus))


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: Literal["cuda", "cpu"]
    gpus: list[Gpu] = Field(default_factory=list)
    servers: list[Server] = Field(min_length=1)
    # Model -> the context (tokens) a request needs for it to be useful, where the catalog's figure does not suit
    # this fleet. `llmfleet plan` reads it from the plan it replaces and keeps it.
    usable_context: dict[str, PositiveInt] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _gpus_are_consistent(self) -> Plan:
        known = {g.index for g in self.gpus}
        used: set[int] = set()
        for i, server in enumerate(self.servers):
            if self.device == "cpu" and server.gpus:
                raise ValueError(f"servers[{i}] names GPUs {server.gpus} but the plan's device is cpu")
            if self.device == "cuda" and not server.gpus:
                raise ValueError(f"servers[{i}] names no GPU; give it `gpus: [INDEX]`")
            if self.device == "cuda" and server.gpu_memory_utilization is None:
                raise ValueError(f"servers[{i}] needs gpu_memory_utilization (0 to 0.98)")
            for index in server.gpus:
                if index not in known:
                    raise ValueError(f"servers[{i}] uses GPU {index}, which is not in `gpus`")
                if index in used:
                    raise ValueError(f"GPU {index} is given to two servers; each GPU serves one")
                used.add(index)
            sizes = {g.memory_gib for g in self.gpus if g.index in server.gpus}
            if len(sizes) > 1:
                raise ValueError(f"servers[{i}] splits a model over GPUs of different sizes; use cards of one size")
        return self

    def server_name(self, i: int) -> str:
        """vllm-gpu0, vllm-gpu2-3 for a tensor-parallel pair, vllm-cpu0 on a CPU host."""
        server = self.servers[i]
        if not server.gpus:
            return f"vllm-cpu{i}"
        return "vllm-gpu" + "-".join(str(g) for g in server.gpus)

    def named_servers(self) -> list[tuple[str, Server]]:
        return [(self.server_name(i), s) for i, s in enumerate(self.servers)]

    def model_groups(self) -> dict[str, list[str]]:
        """Model name -> the servers that serve it; the gateway exposes one endpoint per group."""
        groups: dict[str, list[str]] = {}
        for name, server in self.named_servers():
            groups.setdefault(server.model, []).append(name)
        return groups

    def gpu(self, index: int) -> Gpu:
        return next(g for g in self.gpus if g.index == index)

    def budget(self, i: int, catalog: Catalog) -> Budget | None:
        """The VRAM budget of servers[i] (per card, on its smallest card); None for a CPU server."""
        server = self.servers[i]
        if not server.gpus or server.gpu_memory_utilization is None:
            return None
        smallest = min((self.gpu(g) for g in server.gpus), key=lambda g: g.memory_gib)
        return estimate(
            catalog.models[server.model],
            smallest.memory_gib,
            card_name=smallest.name,
            tensor_parallel_size=server.tensor_parallel_size,
            utilization=server.gpu_memory_utilization,
            max_model_len=server.max_model_len,
            max_num_seqs=server.max_num_seqs,
        )

    def check_budgets(self, catalog: Catalog, file: str = PLAN_FILE) -> None:
        """Refuse what vLLM would refuse at start, after a long download: weights and runtime that do not fit the
        card, or a KV cache that cannot hold one request of max_model_len tokens."""
        for i, server in enumerate(self.servers):
            budget = self.budget(i, catalog)
            if budget is None:
                continue
            gpus = ", ".join(str(g) for g in server.gpus)
            what = (f"servers[{i}] ({server.model} on GPU {gpus}, {budget.memory_gib:g} GiB) needs "
                    f"weights {budget.weights_gib:.1f} + runtime {budget.runtime_gib:.1f} GiB")  # fmt: skip
            if budget.kv_cache_gib <= 0:
                raise FleetError(
                    f"{what}, {-budget.kv_cache_gib:.1f} GiB more than the {budget.usable_gib:.1f} GiB vLLM may use "
                    "there, before any KV cache.",
                    "choose a smaller model (`llmfleet plan` chooses one that fits), or raise gpu_memory_utilization.",
                    yaml_path(file, ("servers", i, "model")),
                )
            if budget.kv_tokens < server.max_model_len:
                raise FleetError(
                    f"{what}, which leaves KV cache for {budget.kv_tokens:,} tokens: less than one request of "
                    f"max_model_len {server.max_model_len:,}, and vLLM refuses to start.",
                    f"set max_model_len to {budget.kv_tokens // 2 // 1024 * 1024:,} or less (half the cache, so two "
                    "such requests fit), or run `llmfleet plan`.",
                    yaml_path(file, ("servers", i, "max_model_len")),
                )

    def check_models(self, catalog: Catalog, file: str = PLAN_FILE) -> dict[str, Model]:
        """Every server's model exists in the catalog, and the synthetic model only runs on CPU."""
        models = {}
        for name in self.usable_context:
            catalog.get(name, yaml_path(file, ("usable_context", name)))
        for i, server in enumerate(self.servers):
            model = catalog.get(server.model, yaml_path(file, ("servers", i, "model")))
            if model.synthetic and self.device != "cpu":
                raise FleetError(
                    f"{model.name} is a synthetic smoke-test model; it is not served on GPUs.",
                    "choose a real model for this server, e.g. Qwen2.5-7B-Instruct-AWQ.",
                    yaml_path(file, ("servers", i, "model")),
                )
            if server.max_model_len > model.native_context:
                raise FleetError(
                    f"servers[{i}].max_model_len is {server.max_model_len}, beyond {model.name}'s native context "
                    f"of {model.native_context} tokens.",
                    f"set max_model_len to {model.native_context} or less.",
                    yaml_path(file, ("servers", i, "max_model_len")),
                )
            models[server.model] = model
        return models


CPU_MODEL = "smollm2-135m"  # a real model: it answers questions (src/llmfleet/models/realmodel.py)
TINY_MODEL = "fleet-tiny"  # the synthetic one: random weights, ready in seconds, for the stack's own tests


def cpu_plan() -> Plan:
    """The plan for a host with no GPU: two vLLM CPU servers with a real model, SmolLM2 135M Instruct.

    max_num_seqs 16: at 22.5 kB of KV cache per token (30 layers x 3 KV heads x 64 x 2 x bf16), 16 requests of
    2,048 tokens take 0.7 of the 1 GiB VLLM_CPU_KVCACHE_SPACE gives each server, and two requests of the full
    4,096 fit ten times over.
    """
    return Plan(
        device="cpu",
        servers=[Server(model=CPU_MODEL, max_model_len=4096, max_num_seqs=16) for _ in range(CPU_SERVERS)],
    )


def cpu_tiny_plan() -> Plan:
    """Two vLLM CPU servers with the synthetic fleet-tiny: the stack's tests, which need an engine faster than a
    real model and never judge its answers (`llmfleet up --plan cpu-tiny`)."""
    return Plan(
        device="cpu",
        servers=[Server(model=TINY_MODEL, max_model_len=2048, max_num_seqs=16) for _ in range(CPU_SERVERS)],
    )


# `--plan NAME`: the plans built into llmfleet, by the name the command line gives them.
BUILTIN_PLANS = {"cpu": cpu_plan, "cpu-tiny": cpu_tiny_plan}


def plan_path() -> Path:
    return paths.project_root() / PLAN_FILE


ModelT = TypeVar("ModelT", bound=BaseModel)


def read_checked(path: Path, name: str, model: type[ModelT], kind: str, fix: str) -> ModelT:
    """A YAML file read into `model`: a syntax error names the line, a wrong field its path (plans, cluster plans)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FleetError(
            f"{name} is not valid YAML{at}: {getattr(e, 'problem', e)}.", "fix the YAML syntax there.", name
        ) from None
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problem, loc = first_problem(e.errors())
        raise FleetError(f"{name} is not a valid {kind}: {problem}.", fix, yaml_path(name, loc)) from None


def load_plan(path: Path | None = None, name: str = PLAN_FILE) -> Plan:
    """Read and check a plan; `name` is how messages refer to the file (as the user wrote it)."""
    path = path or plan_path()
    if not path.is_file():
        raise FleetError(f"{name} does not exist.", "run `llmfleet plan --write` to write it.", name)
    plan = read_checked(
        path, name, Plan, "plan", "correct that field; `llmfleet plan` writes a valid plan for this host."
    )
    catalog = load_catalog()
    plan.check_models(catalog, name)
    plan.check_budgets(catalog, name)
    return plan


def read_usable_context(path: Path) -> dict[str, int]:
    """The `usable_context:` overrides of the plan at `path`, which planning again keeps; {} without a plan there. The
    rest of that plan is not checked: it is about to be replaced."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    found = raw.get("usable_context") if isinstance(raw, dict) else None
    if not found:
        return {}
    try:
        return Plan.model_validate({"device": "cpu", "servers": [{"model": "-", "max_model_len": 1, "max_num_seqs": 1}],
                                    "usable_context": found}).usable_context  # fmt: skip
    except ValidationError as e:
        problem, loc = first_problem(e.errors())
        raise FleetError(
            f"{path.name}'s usable_context is not valid: {problem}.",
            "give each model a number of tokens, e.g. `usable_context: {Qwen3-32B-AWQ: 16384}`.",
            yaml_path(path.name, loc),
        ) from None


def dump_plan(plan: Plan, header: str) -> str:
    return header + to_yaml(plan.model_dump(exclude_defaults=True))
