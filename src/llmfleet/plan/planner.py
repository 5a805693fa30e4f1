"""Choosing a model, a context and a concurrency for every card, by the budget in budget.py.

The rule, per card:

1. Context. Prefer the model's native context, capped at MAX_CONTEXT (32k: long enough for documents, a long chat
   or a Qwen3 thinking trace, and it is Qwen2.5's native length). Step down (24k, 16k, ... 2k) only until the KV
   cache holds MIN_FULL_SEQUENCES requests of that length at once, so one long request never owns the card and a
   second one runs beside it instead of queueing.
2. Concurrency. max_num_seqs = how many TYPICAL_REQUEST_TOKENS-token requests (a chat turn with some history) the
   KV cache holds, rounded down to a multiple of 8 (vLLM captures CUDA graphs for batch sizes in steps of 8) and at
   most vLLM's default of 256. More running requests than the cache holds make vLLM preempt running ones and
   compute their prompts again later; fewer would leave cache idle under a load of chat-sized requests.
3. Model. The highest-ranked catalog model that reaches the preferred context; if none does, the highest-ranked
   that reaches USEFUL_CONTEXT; if none does, the highest-ranked that fits at all. A bigger model with a short
   context loses to a smaller one with a useful context: on 12 GiB Qwen3-8B-AWQ keeps only ~28k tokens of KV cache,
   so Qwen2.5-7B-Instruct-AWQ (32k context, 2.4 such requests at once) is the better service.

A model's usable context (vllm/catalog.yaml, or `usable_context:` in fleet.yaml) is the least a request needs for
it to be useful: a thinking model needs room for its reasoning. Below it a model is a poor choice, said in a note.

4. Layout. The cards of one kind given one model (by rule 3, or all of them by `--model`) are served one replica
   per card, in tensor-parallel pairs or in 4-way groups, whichever layouts.py judges best; a model that fits no
   layout is refused with the numbers. Cards with the same model form one model group behind the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from llmfleet.errors import FleetError
from llmfleet.plan import gpuspec, layouts
from llmfleet.plan.budget import CUDA_VISIBLE, DEFAULT_UTILIZATION, Budget, estimate, kv_gib
from llmfleet.plan.catalog import Catalog, Model
from llmfleet.plan.hardware import GpuInfo, Inventory
from llmfleet.plan.schema import CPU_SERVERS, Gpu, Plan, Server, cpu_plan

MAX_CONTEXT = 32768
CONTEXT_STEPS = (32768, 24576, 16384, 12288, 8192, 6144, 4096, 2048)
MIN_FULL_SEQUENCES = 2
TYPICAL_REQUEST_TOKENS = 2048
MAX_NUM_SEQS = 256  # vLLM's default for cards under 70 GiB
MIN_COMPUTE_CAPABILITY = 7.0  # vLLM 0.32's CUDA build needs Volta or later
CPU_CONTEXT = 4096  # a real model on the CPU build: short prompts, a smoke test more than a service
CPU_NUM_SEQS = 16
POOLS_NOTE = (
    "Node pools are not written to fleet.yaml, which plans one host; `--out kubernetes/plans/NAME.yaml` writes "
    "them as a cluster plan for `llmfleet render --target kubernetes`."
)


@dataclass(frozen=True)
class HostPlan:
    """A plan for one host (or one node pool), with the budget behind each server and what a person should know."""

    label: str  # the --gpus text it was made from, or "this host"
    plan: Plan
    gpus: tuple[GpuInfo, ...]
    budgets: tuple[Budget | None, ...]  # one per server; None for CPU servers
    notes: tuple[str, ...] = ()
    comparisons: tuple[layouts.Comparison, ...] = ()  # the layouts weighed for each model and kind of card


def plan_gpus(spec: str | None, inventory: Inventory | None, catalog: Catalog, model: str | None = None,
              utilization: float = DEFAULT_UTILIZATION, usable: Mapping[str, int] | None = None,
              ) -> dict[str, HostPlan]:  # fmt: skip
    """Plans keyed by node pool; a single host is the key "". Without `spec`, the GPUs `inventory` found.
    `usable`: usable contexts that override the catalog's, by model (a plan's `usable_context:`)."""
    if spec is not None:
        parsed = gpuspec.parse_spec(spec)
        hosts = {pool: plan_host(gpus, catalog, model, utilization, spec, usable=usable)
                 for pool, gpus in parsed.pools.items()}  # fmt: skip
        if parsed.is_cluster:  # not fleet.yaml: the cluster plan file goes with the Kubernetes rendering
            hosts = {pool: replace(host, notes=(*host.notes, POOLS_NOTE)) for pool, host in hosts.items()}
        return hosts
    assert inventory is not None, "plan_gpus needs a SPEC or an inventory"
    why = None if inventory.gpus else f"No NVIDIA GPU here ({inventory.why_none})"
    return {"": plan_host(inventory.gpus, catalog, model, utilization, "this host", why, usable)}


def plan_host(gpus: Sequence[GpuInfo], catalog: Catalog, model: str | None = None,
              utilization: float = DEFAULT_UTILIZATION, label: str = "this host",
              why_no_gpu: str | None = None, usable: Mapping[str, int] | None = None) -> HostPlan:  # fmt: skip
    if not gpus:
        return _cpu_host(catalog, model, label, why_no_gpu or "No GPU in the description")
    fit = [g for g in gpus if (g.compute_capability or MIN_COMPUTE_CAPABILITY) >= MIN_COMPUTE_CAPABILITY]
    notes = [f"GPU {g.index} ({g.name}) left out: vLLM needs compute capability {MIN_COMPUTE_CAPABILITY} or "
             f"later, it has {g.compute_capability}." for g in gpus if g not in fit]  # fmt: skip
    for g in fit:  # vLLM refuses to start when the card has less free memory than its share
        if g.memory_free_gib is not None and g.memory_free_gib < g.memory_total_gib * CUDA_VISIBLE * utilization:
            notes.append(f"GPU {g.index} has only {g.memory_free_gib:.1f} GiB free now, less than the "
                         f"{g.memory_total_gib * CUDA_VISIBLE * utilization:.1f} GiB vLLM will ask for: stop what uses "
                         "it before `llmfleet up`.")  # fmt: skip
    overrides = dict(usable or {})
    if model is not None:
        chosen = catalog.get(model, "--model")
        _check_one_model(chosen, fit)
        per_card = {g.index: chosen for g in fit}
    else:
        per_card, skipped = _choose_per_card(catalog, fit, utilization, overrides)
        notes += skipped
    assignments, comparisons = _lay_out(catalog, per_card, fit, utilization, overrides, refuse=model is not None)
    notes += [note for c in comparisons for note in c.notes()]
    if not assignments:
        raise FleetError(
            f"no card of {label} can hold any model in the catalog.",
            "plan for bigger cards, or use the CPU plan (`llmfleet plan --gpus none`).",
            "--gpus",
        )
    servers = [
        Server(
            gpus=[g.index for g in cards],
            model=budget.model,
            max_model_len=budget.max_model_len,
            max_num_seqs=budget.max_num_seqs,
            gpu_memory_utilization=utilization,
        )
        for cards, budget in assignments
    ]
    plan = Plan(device="cuda", gpus=[_plan_gpu(g) for g in gpus], servers=servers, usable_context=overrides)
    budgets = tuple(b for _, b in assignments)
    return HostPlan(label, plan, tuple(gpus), budgets, tuple(notes), tuple(comparisons))


def size(model: Model, card: GpuInfo, utilization: float = DEFAULT_UTILIZATION,
         tensor_parallel_size: int = 1) -> Budget | None:  # fmt: skip
    """The longest context (and the concurrency that goes with it) this model gets on this card, or None."""
    target = min(model.native_context, MAX_CONTEXT)
    for length in (target, *(s for s in CONTEXT_STEPS if s < target)):
        budget = _estimate(model, card, utilization, tensor_parallel_size, length, MAX_NUM_SEQS)
        if budget.kv_tokens >= MIN_FULL_SEQUENCES * length:
            break
    else:
        return None
    seqs = budget.kv_tokens // TYPICAL_REQUEST_TOKENS
    seqs = min(MAX_NUM_SEQS, seqs // 8 * 8 if seqs >= 8 else max(seqs, MIN_FULL_SEQUENCES))
    # Fewer sequences shrink the sampler's share of the runtime, so the KV cache only grows.
    return _estimate(model, card, utilization, tensor_parallel_size, budget.max_model_len, seqs)


def choose(catalog: Catalog, card: GpuInfo, utilization: float = DEFAULT_UTILIZATION,
           usable: Mapping[str, int] | None = None) -> Budget | None:  # fmt: skip
    """The best model for one card by the rule in this module's docstring."""
    candidates = sorted(
        (m for m in catalog.models.values() if m.auto and not m.synthetic and _runs_on(m, card)),
        key=lambda m: -m.rank,
    )
    sized = [b for b in (size(m, card, utilization) for m in candidates) if b is not None]
    preferred = [b for b in sized if b.max_model_len == min(catalog.models[b.model].native_context, MAX_CONTEXT)]
    useful = [b for b in sized if b.max_model_len >= usable_context(catalog.models[b.model], usable)[0]]
    for choices in (preferred, useful, sized):
        if choices:
            return choices[0]
    return None


def usable_context(model: Model, overrides: Mapping[str, int] | None = None) -> tuple[int, str]:
    """The context a request needs for `model` to be useful, and where that figure comes from."""
    if overrides and model.name in overrides:
        return overrides[model.name], "usable_context in the plan"
    return model.usable_context, model.usable_context_basis


def _choose_per_card(catalog: Catalog, cards: Sequence[GpuInfo], utilization: float, usable: Mapping[str, int],
                     ) -> tuple[dict[int, Model], list[str]]:  # fmt: skip
    chosen, notes = {}, []
    for card in cards:
        budget = choose(catalog, card, utilization, usable)
        if budget is None:
            notes.append(f"GPU {card.index} ({card_label(card)}) left out: no model in the catalog fits it.")
            continue
        chosen[card.index] = catalog.models[budget.model]
    return chosen, notes


def _check_one_model(model: Model, cards: Sequence[GpuInfo]) -> None:
    if model.synthetic:
        raise FleetError(
            f"{model.name} is a synthetic smoke-test model; it is not served on GPUs.",
            "choose a real model, or plan the CPU host with `--gpus none`.",
            "--model",
        )
    for card in cards:
        if not _runs_on(model, card):
            raise FleetError(
                f"GPU {card.index} ({card.name}) cannot run {model.name}: vLLM's {model.quantization} kernels need "
                f"compute capability {model.min_compute_capability}, the card has {card.compute_capability}.",
                "choose a bf16 model for this card, or let the planner choose (drop --model).",
                "--model",
            )


def _lay_out(catalog: Catalog, per_card: Mapping[int, Model], cards: Sequence[GpuInfo], utilization: float,
             usable: Mapping[str, int], refuse: bool,
             ) -> tuple[list[tuple[list[GpuInfo], Budget]], list[layouts.Comparison]]:  # fmt: skip
    """Each set of identical cards given one model gets the best layout; `refuse`: a card it leaves out is an error
    (`--model` asks for every card)."""
    sets: list[tuple[Model, list[GpuInfo]]] = []
    for card in (c for c in cards if c.index in per_card):
        model = per_card[card.index]
        found = next((s for m, s in sets if m is model and _same_card(s[0], card)), None)
        if found is None:
            sets.append((model, [card]))
        else:
            found.append(card)
    assignments, comparisons = [], []
    for model, group in sets:
        length, source = usable_context(model, usable)
        sizer = lambda card, tp, model=model: size(model, card, utilization, tp)  # noqa: E731
        comparison = layouts.compare(model, group, sizer, length, source, TYPICAL_REQUEST_TOKENS)
        chosen = comparison.chosen
        if chosen is None:
            raise _too_big(catalog, model, group[:2], utilization)
        if chosen.unused and refuse:
            raise _too_big(catalog, model, list(chosen.unused[-1:]), utilization)
        comparisons.append(comparison)
        assignments += [(list(s.cards), s.budget) for s in chosen.servers]
    return sorted(assignments, key=lambda a: a[0][0].index), comparisons


def _too_big(catalog: Catalog, model: Model, cards: list[GpuInfo], utilization: float) -> FleetError:
    """What the smallest setup needs (2 requests of 2k tokens) against what the card, or the pair, gives."""
    card, tp = cards[-1], len(cards)
    pair_tried = tp > 1
    length = min(model.native_context, CONTEXT_STEPS[-1])
    least = _estimate(model, card, utilization, tp, length, MIN_FULL_SEQUENCES)
    kv = kv_gib(model, MIN_FULL_SEQUENCES * length, tp)
    needs = least.weights_gib + kv + least.runtime_gib
    where = (f"GPUs {cards[0].index} and {card.index} ({card_label(card)} each)" if pair_tried
             else f"GPU {card.index} ({card_label(card)})")  # fmt: skip
    alone = "" if pair_tried else " and there is no second card of the same size to split it over"
    these = "these cards" if pair_tried else "this card"
    best = choose(catalog, card, utilization)
    fit = best.model if best else None
    suggestion = f"e.g. {fit}" if fit else "(none in the catalog does: plan without this card)"
    return FleetError(
        f"{where} cannot hold {model.name}: it needs {needs:.1f} GiB per card (weights {least.weights_gib:.1f} + "
        f"KV cache {kv:.1f} for {MIN_FULL_SEQUENCES} x {length:,} tokens + runtime {least.runtime_gib:.1f}), "
        f"{needs - least.usable_gib:.1f} GiB more than the {least.usable_gib:.1f} GiB vLLM may use there "
        f"({card.memory_total_gib:.1f} GiB x {CUDA_VISIBLE} seen by CUDA x {utilization} utilization){alone}.",
        f"give {these} a model that fits {card.memory_total_gib:g} GiB, {suggestion}; "
        f"`llmfleet plan --gpus 1x{card.memory_total_gib:g}GiB` shows the planner's choice and its budget.",
        "--model",
    )


def _cpu_host(catalog: Catalog, model: str | None, label: str, why: str) -> HostPlan:
    plan = cpu_plan()
    note = (f"{why}: the CPU plan, {CPU_SERVERS} vLLM CPU servers with {plan.servers[0].model} (SmolLM2 135M "
            "Instruct, converted from its PyPI wheel by `llmfleet setup`). fleet.yaml is not written for it: on a host "
            "without a GPU `llmfleet up` runs this built-in plan by itself.")  # fmt: skip
    if model is not None and model != plan.servers[0].model:
        chosen = catalog.get(model, "--model")
        if not chosen.cpu:
            small = ", ".join(m.name for m in catalog.models.values() if m.cpu)
            raise FleetError(
                f"{chosen.name} is too big for vLLM's CPU build ({chosen.weights_gib:.1f} GiB of weights).",
                f"on a host without a GPU, use one of: {small}.",
                "--model",
            )
        server = Server(model=chosen.name, max_model_len=min(chosen.native_context, CPU_CONTEXT),
                        max_num_seqs=CPU_NUM_SEQS)  # fmt: skip
        plan = Plan(device="cpu", servers=[server] * CPU_SERVERS)
        note = f"{why}: the CPU plan, {CPU_SERVERS} vLLM CPU servers with {chosen.name}."
    return HostPlan(label, plan, (), tuple(None for _ in plan.servers), (note,))


def _estimate(model: Model, card: GpuInfo, utilization: float, tp: int, length: int, seqs: int) -> Budget:
    return estimate(model, card.memory_total_gib, card_name=card.name, tensor_parallel_size=tp,
                    utilization=utilization, max_model_len=length, max_num_seqs=seqs)  # fmt: skip


def card_label(card: GpuInfo) -> str:
    """`NVIDIA GeForce RTX 3060, 12.0 GiB`; a card described only by its size is just `12.0 GiB`."""
    size = f"{card.memory_total_gib:.1f} GiB"
    return size if card.name == gpuspec.card_name("", card.memory_total_gib)[0] else f"{card.name}, {size}"


def _runs_on(model: Model, card: GpuInfo) -> bool:
    return card.compute_capability is None or card.compute_capability >= model.min_compute_capability


def _same_card(a: GpuInfo, b: GpuInfo) -> bool:
    return a.name == b.name and abs(a.memory_total_gib - b.memory_total_gib) < 0.01 * a.memory_total_gib


def _plan_gpu(g: GpuInfo) -> Gpu:
    return Gpu(index=g.index, name=g.name, memory_gib=round(g.memory_total_gib, 2), uuid=g.uuid)


def plan_file_header(host: HostPlan, command: str) -> str:
    """fleet.yaml's opening comment: what wrote it, and the budget behind every server (for people; not read back)."""
    lines = [
        "The plan: which GPU serves which model with which vLLM settings. Everything under vllm/services.yaml,",
        "gateway/models.yaml and monitoring/prometheus/prometheus.yml is rendered from it by `llmfleet render`.",
        f"Written by `{command}`. Edit it by hand or plan again, then run `llmfleet render`.",
    ]
    if host.plan.device == "cuda":
        lines += [
            f"Budget per card, in GiB of what vLLM may use (memory x {CUDA_VISIBLE} seen by CUDA x "
            "gpu_memory_utilization):",
        ]
        for (name, server), budget in zip(host.plan.named_servers(), host.budgets, strict=True):
            if budget is None:
                continue
            lines += [
                f"  {name}: {server.model}: weights {budget.weights_gib:.2f} + KV cache {budget.kv_cache_gib:.2f} "
                f"({budget.kv_tokens:,} tokens,",
                f"    {budget.full_length_sequences:.1f} requests of {server.max_model_len:,}) + runtime "
                f"{budget.runtime_gib:.2f} = {budget.used_gib:.2f} of {budget.usable_gib:.2f}",
            ]
    lines.append("On a host with no GPU, `llmfleet up` runs the built-in CPU plan instead of this file.")
    lines += [f"Note: {n}" for n in host.notes]
    return "".join(f"# {line}\n" for line in lines)


def check_host(plan: Plan, gpus: Sequence[GpuInfo], file: str = "fleet.yaml") -> None:
    """Refuse a plan made for other cards than this host's: a missing GPU, or one smaller than planned."""
    found = {g.index: g for g in gpus}
    for k, planned in enumerate(plan.gpus):
        card = found.get(planned.index)
        here = ", ".join(f"GPU {g.index} {card_label(g)}" for g in gpus)
        if card is None or card.memory_total_gib < planned.memory_gib * 0.97:
            has = "has no such GPU" if card is None else f"has {card_label(card)} there"
            raise FleetError(
                f"{file} plans GPU {planned.index} as {planned.name} with {planned.memory_gib:g} GiB, but this host "
                f"{has} (this host: {here}).",
                "run `llmfleet plan` to plan for this host's GPUs, then `llmfleet render`.",
                f"{file}: gpus[{k}]",
            )
