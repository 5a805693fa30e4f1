"""The plan as `llmfleet plan` shows it: per card, what it serves, the kernel vLLM will pick, the budget and the vLLM
command line, and the layouts weighed. A typed value; `to_json()` is `plan --json`."""

from __future__ import annotations

from dataclasses import dataclass

from llmfleet.plan.budget import Budget
from llmfleet.plan.catalog import Catalog, Model
from llmfleet.plan.hardware import GpuInfo
from llmfleet.plan.layouts import Comparison
from llmfleet.plan.planner import HostPlan
from llmfleet.plan.schema import Plan, Server
from llmfleet.plan.serving import VLLM_CONTAINER_PORT, model_path, vllm_args


def kernel(model: Model, card: GpuInfo | None) -> str:
    """The weight kernel vLLM picks by itself; the plan never passes --quantization (that could force a slow one)."""
    if model.quantization == "awq":
        return "awq_marlin"  # vLLM 0.32 maps awq checkpoints to its Marlin kernel on compute capability >= 7.5
    if model.quantization == "fp8":
        if card is not None and card.compute_capability is not None and card.compute_capability < 8.9:
            return "fp8 weight-only (Marlin)"  # no FP8 tensor cores before Ada
        return "fp8"
    return "bf16"


@dataclass(frozen=True)
class Serving:
    """What one GPU serves: its server's settings, the kernel, the budget and the vLLM command line."""

    server: str
    model: str
    tensor_parallel_size: int
    max_model_len: int
    max_num_seqs: int
    gpu_memory_utilization: float | None
    quantization: str | None
    kernel: str
    budget: Budget | None
    vllm_args: list[str]

    def to_json(self) -> dict[str, object]:
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return fields | {"budget": self.budget.as_dict() if self.budget else None}


@dataclass(frozen=True)
class GpuPlan:
    """One card of the host, and what it serves (None: not used)."""

    index: int
    name: str
    memory_gib: float
    compute_capability: float | None
    serving: Serving | None

    def to_json(self) -> dict[str, object]:
        card = {"index": self.index, "name": self.name, "memory_gib": self.memory_gib,
                "compute_capability": self.compute_capability}  # fmt: skip
        return card | (self.serving.to_json() if self.serving else {"server": None})


@dataclass(frozen=True)
class Description:
    """The plan of one host (or node pool) as `llmfleet plan` shows it; `to_json()` is `plan --json`."""

    host: str
    device: str
    gpus: tuple[GpuPlan, ...]
    model_groups: dict[str, list[str]]
    notes: tuple[str, ...]
    layouts: tuple[Comparison, ...]
    plan: Plan
    node_selector: tuple[dict[str, object], ...] | None = None  # a node pool's: the node labels its pods require

    def to_json(self) -> dict[str, object]:
        described: dict[str, object] = {
            "host": self.host,
            "device": self.device,
            "gpus": [g.to_json() for g in self.gpus],
            "model_groups": self.model_groups,
            "notes": list(self.notes),
            "layouts": [c.as_dict() for c in self.layouts],
            "plan": self.plan.model_dump(mode="json", exclude_defaults=True),
        }
        if self.node_selector is not None:
            described["node_selector"] = list(self.node_selector)
        return described


def describe(host: HostPlan, catalog: Catalog) -> Description:
    """The plan for people and machines (`llmfleet plan [--json]`): one entry per GPU, with settings and budget."""
    plan = host.plan
    by_gpu: dict[int, tuple[str, Server, Budget | None]] = {}
    for i, (name, server) in enumerate(plan.named_servers()):
        for g in server.gpus:
            by_gpu[g] = (name, server, host.budgets[i])
    gpus = []
    for card in host.gpus:
        serving = None
        if card.index in by_gpu:
            name, server, budget = by_gpu[card.index]
            model = catalog.models[server.model]
            args = vllm_args(server, model, model_path=model_path(model, "MODEL_DIR", "MODEL_DIR"),
                             host="0.0.0.0", port=VLLM_CONTAINER_PORT)  # noqa: S104  # fmt: skip
            serving = Serving(name, server.model, server.tensor_parallel_size, server.max_model_len,
                              server.max_num_seqs, server.gpu_memory_utilization, model.quantization,
                              kernel(model, card), budget, args)  # fmt: skip
        gpus.append(GpuPlan(card.index, card.name, round(card.memory_total_gib, 2), card.compute_capability, serving))
    return Description(host.label, plan.device, tuple(gpus), plan.model_groups(), tuple(host.notes),
                       tuple(host.comparisons), plan)  # fmt: skip
