"""Ways of serving one model on a set of identical cards, compared by one capacity estimate.

The layouts: one replica per card; tensor-parallel pairs; 4-way groups where the count allows (cards left over by
a pair or a group run a replica of their own when the model fits one card). Each server is sized by the planner's
context rule (a callable, so this module knows nothing of it) and judged on:

- context: its KV cache must hold two requests of the model's usable context at once (catalog.Model.usable_context,
  or the plan's override); a layout that cannot is a poor choice, said with the reason, and loses to any that can;
- KV tokens and concurrent sequences (max_num_seqs), from the budget;
- decode throughput, a memory-bound estimate: each decode step reads every card's share of the weights and the KV
  cache of its running requests (`typical_tokens` each) at the card's memory bandwidth, and a tensor-parallel server
  adds two all-reduces per layer between its cards (over PCIe: no NVLink assumed). Compute is not counted, so a
  bigger batch would always look faster; throughput is therefore compared at one load for all layouts, the requests
  the layout with the most servers holds at once (its max_num_seqs), spread over each layout's servers.

The choice: the acceptable layout with the most servers (one more server is failover behind the gateway, and no
NCCL to go wrong), unless one with fewer servers gives at least FEWER_SERVERS_GAIN times its throughput.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmfleet.plan import gpuspec
from llmfleet.plan.budget import GIB, Budget, kv_bytes_per_token
from llmfleet.plan.catalog import Model
from llmfleet.plan.hardware import GpuInfo

# NCCL all-reduce of a decode step's activations between cards over PCIe (no NVLink): tens of microseconds even for
# a few bytes. nccl-tests all_reduce_perf at 8 bytes: 42 us on 8 RTX 4090 (NVIDIA/nccl#1530), 54 us on 8 RTX 3090
# (NVIDIA/nccl#1439), 13-16 us for 32-64 KB on 2 cards over a bridge (NVIDIA/nccl-tests#44). Taken per all-reduce:
ALLREDUCE_LATENCY_US = {2: 25.0, 4: 40.0}
ALLREDUCE_BUS_GBS = 20.0  # the bus bandwidth those tests reach for large messages on PCIe 4.0 x16 (~20 GB/s)
ALLREDUCES_PER_LAYER = 2  # after attention and after the MLP (vLLM's row-parallel layers)
ACTIVATION_BYTES = 2  # bf16 hidden states
# What a layout with fewer servers must gain in throughput to win: the estimate leaves out compute (which caps every
# layout alike under load) and its all-reduce figures are assumed, and the servers it gives up were failover.
FEWER_SERVERS_GAIN = 1.5
KINDS = {1: "replicas", 2: "pairs", 4: "4-way"}


@dataclass(frozen=True)
class Step:
    """One decode step of one server with `seqs` requests running: memory-bound, plus the all-reduces."""

    seqs: int
    ms: float
    comm_ms: float  # the all-reduces' share

    @property
    def tokens_per_s(self) -> float:
        return self.seqs / self.ms * 1e3


@dataclass(frozen=True)
class Served:
    """One server of a layout: its cards, its budget (per card) and its cards' memory bandwidth."""

    model: Model
    cards: tuple[GpuInfo, ...]
    budget: Budget
    typical_tokens: int

    @property
    def bandwidth(self) -> tuple[float, bool]:
        """GB/s, and False where the card is unknown and gpuspec.DEFAULT_BANDWIDTH_GBS was assumed."""
        return gpuspec.bandwidth(self.cards[0].name, self.cards[0].memory_total_gib)

    def step(self, seqs: int) -> Step:
        seqs = max(1, min(seqs, self.budget.max_num_seqs))
        return decode_step(self.model, self.budget.tensor_parallel_size, self.bandwidth[0], seqs, self.typical_tokens)


@dataclass(frozen=True)
class Layout:
    kind: str  # replicas, pairs, 4-way
    tensor_parallel_size: int
    servers: tuple[Served, ...]
    unused: tuple[GpuInfo, ...]  # cards this layout cannot use
    problem: str | None  # why it is refused or a poor choice; None when it gives the usable context

    @property
    def kv_tokens(self) -> int:
        return sum(s.budget.kv_tokens for s in self.servers)

    @property
    def max_num_seqs(self) -> int:
        return sum(s.budget.max_num_seqs for s in self.servers)

    def tokens_per_s(self, load: int) -> float:
        """Decode tokens/s with `load` requests running, spread over the servers by what each holds."""
        total = self.max_num_seqs
        return sum(s.step(round(load * s.budget.max_num_seqs / total)).tokens_per_s for s in self.servers)

    @property
    def context(self) -> int:
        return min((s.budget.max_model_len for s in self.servers), default=0)

    def summary(self, load: int) -> str:
        """`pairs (1 x TP2): 32,768 context, 88,112 KV tokens, 40 seqs; 40 at once ~858 tok/s, 1 alone 43 (PCIe 3.3
        of 23.1 ms/token)`."""
        if not self.servers:
            return f"{self.kind}: does not fit"
        first = self.servers[0]
        extra = sum(1 for s in self.servers if len(s.cards) != self.tensor_parallel_size)
        shape = f"{len(self.servers) - extra} x TP{self.tensor_parallel_size}" + (f" + {extra} x TP1" if extra else "")
        alone = first.step(1)
        comm = f" (PCIe {alone.comm_ms:.1f} of {alone.ms:.1f} ms/token)" if alone.comm_ms else ""
        return (f"{self.kind} ({shape}): {self.context:,} context, {self.kv_tokens:,} KV tokens, "
                f"{self.max_num_seqs} seqs; {load} at once ~{self.tokens_per_s(load):,.0f} tok/s, 1 alone "
                f"{alone.tokens_per_s:.0f}{comm}")  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """The layouts of one model on one set of identical cards, and the one chosen (None: the model fits none)."""

    model: str
    cards: tuple[GpuInfo, ...]
    usable_context: int
    usable_source: str  # the catalog's basis, or the plan's override
    layouts: tuple[Layout, ...]
    chosen: Layout | None
    load: int  # the requests running at once that throughput is compared at

    def basis(self) -> str:
        """What the comparison stands on: `usable context 32,768; 960 GB/s per card; compared at 160 at once`."""
        gbs, known = gpuspec.bandwidth(self.cards[0].name, self.cards[0].memory_total_gib)
        where = "" if known else " (assumed: the card is not named; name it, e.g. 2x24GiB:RTX4090)"
        return (f"usable context {self.usable_context:,}; {gbs:g} GB/s per card{where}; throughput compared at "
                f"{self.load} requests at once")  # fmt: skip

    def lines(self) -> list[str]:
        """One line per layout: the chosen one, and why each other one lost."""
        out = []
        for layout in self.layouts:
            if layout is self.chosen:
                verdict = "chosen" if layout.problem is None else f"chosen, but poor: {layout.problem}"
            else:
                verdict = self._why_not(layout)
            out.append(f"{layout.summary(self.load)} - {verdict}")
        return out

    def notes(self) -> list[str]:
        """What a person must know about the chosen layout: a poor choice, said with the reason; cards left out."""
        chosen, cards = self.chosen, ", ".join(str(g.index) for g in self.cards)
        if chosen is None:
            return []
        poor = [f"{self.model} on GPU {cards} is a poor choice: {chosen.problem} (why {self.usable_context:,}: "
                f"{self.usable_source}) Bigger cards, more of them, or a smaller model serve better."]  # fmt: skip
        return (poor if chosen.problem else []) + [
            f"GPU {g.index} not used: alone it cannot give {self.model} the {chosen.context:,} context of the rest "
            "of its group."
            for g in chosen.unused
        ]

    def _why_not(self, layout: Layout) -> str:
        chosen = self.chosen
        if layout.problem is not None:
            return f"refused: {layout.problem}"
        assert chosen is not None  # an acceptable layout exists, so one was chosen
        gain = layout.tokens_per_s(self.load) / chosen.tokens_per_s(self.load)
        if len(layout.servers) > len(chosen.servers):
            return (f"{chosen.kind} give {1 / gain:.2f}x its throughput, more than the {FEWER_SERVERS_GAIN}x that "
                    "fewer servers must gain")  # fmt: skip
        if len(layout.servers) < len(chosen.servers):
            return (f"{gain:.2f}x the throughput of {chosen.kind}, less than the {FEWER_SERVERS_GAIN}x that fewer "
                    "servers must gain")  # fmt: skip
        return f"{gain:.2f}x the throughput of {chosen.kind}"

    def as_dict(self) -> dict[str, object]:
        def layout(x: Layout) -> dict[str, object]:
            first = x.servers[0] if x.servers else None
            alone = first.step(1) if first else None
            return {
                "kind": x.kind,
                "tensor_parallel_size": x.tensor_parallel_size,
                "servers": [[c.index for c in s.cards] for s in x.servers],
                "unused_gpus": [c.index for c in x.unused],
                "max_model_len": x.context,
                "kv_tokens": x.kv_tokens,
                "max_num_seqs": x.max_num_seqs,
                "tokens_per_s_at_load": round(x.tokens_per_s(self.load)) if first else None,
                "single_request_tokens_per_s": round(alone.tokens_per_s) if alone else None,
                "allreduce_ms_per_token": round(alone.comm_ms, 2) if alone else None,
                "bandwidth_gbs": first.bandwidth[0] if first else None,
                "bandwidth_assumed": (not first.bandwidth[1]) if first else None,
                "problem": x.problem,
                "chosen": x is self.chosen,
            }

        return {
            "model": self.model,
            "gpus": [c.index for c in self.cards],
            "usable_context": self.usable_context,
            "usable_context_source": self.usable_source,
            "load": self.load,
            "layouts": [layout(x) for x in self.layouts],
            "basis": self.basis(),
            "why": self.lines(),
        }


Sizer = Callable[[GpuInfo, int], Budget | None]  # (card, tensor-parallel size) -> the context rule's budget


def compare(model: Model, cards: Sequence[GpuInfo], size: Sizer, usable_context: int, usable_source: str,
            typical_tokens: int) -> Comparison:  # fmt: skip
    """Every layout of `model` on `cards` (identical), and the best by this module's rule."""
    card = cards[0]
    single = size(card, 1)
    layouts = []
    for tp in KINDS:
        if tp > len(cards) or (tp > 1 and model.kv_heads % tp and tp % model.kv_heads):
            continue  # vLLM splits (or copies) whole KV heads
        budget = size(card, tp)
        whole = len(cards) // tp * tp
        groups = [tuple(cards[i : i + tp]) for i in range(0, whole, tp)] if budget else []
        servers = [Served(model, g, budget, typical_tokens) for g in groups if budget]
        rest = cards[whole:] if budget else cards
        # A leftover card runs a replica of its own only with the same context (the gateway routes any request
        # to any server of the group).
        if budget and single is not None and single.max_model_len >= max(usable_context, budget.max_model_len):
            servers += [Served(model, (c,), single, typical_tokens) for c in rest]
            rest = ()
        servers.sort(key=lambda s: s.cards[0].index)
        layouts.append(Layout(KINDS[tp], tp, tuple(servers), tuple(rest), _problem(budget, tp, usable_context)))
    fitting = [x for x in layouts if x.servers]
    reference = next((x for x in fitting if x.problem is None), fitting[0] if fitting else None)
    load = reference.max_num_seqs if reference else 1
    chosen = _choose(fitting, load)
    return Comparison(model.name, tuple(cards), usable_context, usable_source, tuple(layouts), chosen, load)


def _problem(budget: Budget | None, tp: int, usable: int) -> str | None:
    cards = "one card" if tp == 1 else f"{tp} cards"
    if budget is None:
        return f"on {cards} the weights and runtime leave no room for 2 requests of 2,048 tokens"
    if budget.max_model_len < usable:
        return (f"on {cards} the KV cache holds 2 requests of {budget.max_model_len:,} tokens, not of the usable "
                f"{usable:,}")  # fmt: skip
    return None


def _choose(fitting: Sequence[Layout], load: int) -> Layout | None:
    good = [x for x in fitting if x.problem is None]
    if not good:  # a poor choice, said so by the caller: the longest context, then the throughput
        return max(fitting, key=lambda x: (x.context, x.tokens_per_s(load)), default=None)
    chosen = good[0]  # the most servers
    for layout in good[1:]:
        if layout.tokens_per_s(load) >= FEWER_SERVERS_GAIN * chosen.tokens_per_s(load):
            chosen = layout
    return chosen


def decode_step(model: Model, tp: int, bandwidth_gbs: float, seqs: int, typical_tokens: int) -> Step:
    """Each card reads its share of the weights and of the running requests' KV cache; then the all-reduces."""
    weight_bytes = model.weights_gib * GIB / tp
    kv_bytes = seqs * typical_tokens * kv_bytes_per_token(model, tp)
    memory = (weight_bytes + kv_bytes) / (bandwidth_gbs * 1e9)
    comm = 0.0
    if tp > 1:  # a ring all-reduce moves 2 (n-1)/n of the message over each link
        message = seqs * model.hidden_size * ACTIVATION_BYTES * 2 * (tp - 1) / tp
        one = ALLREDUCE_LATENCY_US[tp] * 1e-6 + message / (ALLREDUCE_BUS_GBS * 1e9)
        comm = model.layers * ALLREDUCES_PER_LAYER * one
    return Step(seqs, (memory + comm) * 1e3, comm * 1e3)
