"""The cluster plan (kubernetes/plans/NAME.yaml): node pools, each planned like one host, plus the node labels
that select its nodes. `llmfleet render --target kubernetes` renders kubernetes/overlays/NAME/ from it.

A pool is a `Plan` (fleet.yaml's format, checked by the same rules) with a `node_selector`: NVIDIA GPU feature
discovery labels (`nvidia.com/gpu.product`, `nvidia.com/gpu.memory`), written by `llmfleet plan --gpus
'pool-a=2x12GiB:RTX3060;pool-b=4x48GiB' --out FILE` and editable by hand. Card numbers in a pool count its cards
across its nodes; Kubernetes chooses the node and the card of each replica.

A pool's servers that serve one model with the same settings are one workload: one StatefulSet, whose replica k is
the workload's k-th server in the plan. Its pods are the backends the gateway lists.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmfleet.errors import FleetError, yaml_path
from llmfleet.plan import gpuspec, synthetic
from llmfleet.plan.budget import CUDA_VISIBLE
from llmfleet.plan.catalog import Catalog, load_catalog
from llmfleet.plan.description import Description, describe
from llmfleet.plan.hardware import GpuInfo
from llmfleet.plan.planner import POOLS_NOTE, HostPlan
from llmfleet.plan.schema import Plan, Server, read_checked
from llmfleet.yamltext import to_yaml

PLANS_DIR = Path("kubernetes") / "plans"
# NVIDIA GPU feature discovery (part of the GPU operator) labels every GPU node with these.
GPU_PRODUCT = "nvidia.com/gpu.product"  # the NVML name with spaces as dashes: NVIDIA-GeForce-RTX-3060
GPU_MEMORY = "nvidia.com/gpu.memory"  # MiB, as NVML reports it: 12288 on an RTX 3060
# A card may report less than its nominal size (planner.check_host allows the same 3 %).
MEMORY_TOLERANCE = 0.97
# A StatefulSet's pods carry `controller-revision-hash: NAME-<10 characters>`, a label value of at most 63.
MAX_WORKLOAD_NAME = 52
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class NodeSelectorRequirement(BaseModel):
    """One Kubernetes node selector requirement (nodeAffinity matchExpressions), written as Kubernetes does."""

    model_config = ConfigDict(extra="forbid")

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = Field(default_factory=list)


class Pool(Plan):
    """One node pool: a plan for its cards, and the labels its nodes carry (all of them must match)."""

    node_selector: list[NodeSelectorRequirement] = Field(default_factory=list)


class Cluster(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pools: dict[str, Pool] = Field(min_length=1)

    @field_validator("pools")
    @classmethod
    def _pool_names_are_dns_labels(cls, pools: dict[str, Pool]) -> dict[str, Pool]:
        for name in pools:
            if not _DNS_LABEL.fullmatch(name) or len(name) > 63:
                raise ValueError(f"pool name {name!r} is not a lower-case DNS label such as pool-a")
        return pools


@dataclass(frozen=True)
class Workload:
    """A pool's servers of one model with one set of settings: one StatefulSet, its headless Service, its PDB,
    its ScaledObject. Replica k is `pool.servers[servers[k]]`."""

    pool_name: str
    name: str
    pool: Pool
    servers: tuple[int, ...]

    @property
    def server(self) -> Server:
        return self.pool.servers[self.servers[0]]

    @property
    def replicas(self) -> int:
        return len(self.servers)

    @property
    def tensor_parallel_size(self) -> int:
        return self.server.tensor_parallel_size

    def pod(self, k: int) -> str:
        return f"{self.name}-{k}"

    def gpu_name(self) -> str:
        return self.pool.gpu(self.server.gpus[0]).name if self.server.gpus else "CPU"


def workloads(cluster: Cluster, file: str) -> list[Workload]:
    """Every pool's workloads, in plan order. Servers of one model in one pool must share their settings: the
    replicas of a StatefulSet are identical."""
    found: list[Workload] = []
    for pool_name, pool in cluster.pools.items():
        groups: dict[str, list[int]] = {}
        for i, server in enumerate(pool.servers):
            groups.setdefault(server.model, []).append(i)
        for model, indices in groups.items():
            first = pool.servers[indices[0]]
            for i in indices[1:]:
                if _settings(pool.servers[i]) != _settings(first):
                    raise FleetError(
                        f"pool {pool_name} serves {model} with other settings on servers[{i}] than on "
                        f"servers[{indices[0]}]; one model in one pool is one StatefulSet, whose replicas are alike.",
                        f"give servers[{i}] the settings of servers[{indices[0]}], or move it to a pool of its own.",
                        yaml_path(file, ("pools", pool_name, "servers", i)),
                    )
            name = f"vllm-{pool_name}-{slug(model)}"
            if len(name) > MAX_WORKLOAD_NAME:
                raise FleetError(
                    f"the workload name {name} is {len(name)} characters; a StatefulSet's name may have "
                    f"{MAX_WORKLOAD_NAME}.",
                    f"shorten the pool's name (by {len(name) - MAX_WORKLOAD_NAME} characters or more).",
                    yaml_path(file, ("pools", pool_name)),
                )
            found.append(Workload(pool_name, name, pool, tuple(indices)))
    return found


def _settings(server: Server) -> tuple[object, ...]:
    return (server.model, len(server.gpus), server.max_model_len, server.max_num_seqs,
            server.gpu_memory_utilization, tuple(server.extra_args))  # fmt: skip


def slug(text: str) -> str:
    """Qwen2.5-7B-Instruct-AWQ -> qwen2-5-7b-instruct-awq: a piece of a Kubernetes name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def label_value(text: str) -> str:
    """A Kubernetes label value as GPU feature discovery writes a card's name: spaces (and anything else a label
    may not hold) become dashes."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text).strip("-_.")[:63]


def node_selector(pool: str, gpus: Sequence[GpuInfo]) -> list[NodeSelectorRequirement]:
    """The GPU feature discovery labels of the nodes a pool's plan fits: the card's product name (when the
    description named one) and at least its memory. A pool without GPUs runs anywhere."""
    if not gpus:
        return []
    kinds = {(g.name, round(g.memory_total_gib, 2)) for g in gpus}
    if len(kinds) > 1:
        cards = " and ".join(f"{name} ({gib:g} GiB)" for name, gib in sorted(kinds))
        raise FleetError(
            f"node pool {pool} has {cards}; a pool's nodes are selected by one kind of card.",
            f"describe each kind of card as a pool of its own, e.g. '{pool}-a=1x24GiB;{pool}-b=1x12GiB'.",
            "--gpus",
        )
    name, gib = kinds.pop()
    selector = []
    if name != gpuspec.card_name("", gib)[0]:  # a card named in the description, or found by the driver
        selector.append(NodeSelectorRequirement(key=GPU_PRODUCT, operator="In", values=[label_value(name)]))
    mib = int(gib * 1024 * MEMORY_TOLERANCE)
    selector.append(NodeSelectorRequirement(key=GPU_MEMORY, operator="Gt", values=[str(mib)]))
    return selector


def from_hosts(hosts: dict[str, HostPlan]) -> Cluster:
    """The cluster plan of `planner.plan_gpus` for node pools."""
    pools = {
        name: Pool(node_selector=node_selector(name, host.gpus), **host.plan.model_dump())
        for name, host in hosts.items()
    }
    return Cluster(pools=pools)


def describe_pools(hosts: dict[str, HostPlan], catalog: Catalog) -> dict[str, Description]:
    """`llmfleet plan --json` for node pools: each pool as `planner.describe` gives a host, with its node selector."""
    cluster = from_hosts(hosts)
    described = {}
    for name, host in hosts.items():
        selector = [r.model_dump(exclude_defaults=True) for r in cluster.pools[name].node_selector]
        described[name] = replace(describe(host, catalog), node_selector=tuple(selector))
    return described


def write_pools(hosts: dict[str, HostPlan], out: str, spec: str | None, model: str | None) -> Path:
    """`llmfleet plan --gpus 'POOL=SPEC;...' --out FILE`: write the cluster plan (the pools, with their node
    selectors) to `out`."""
    command = (
        "llmfleet plan" + (f" --gpus {shlex.quote(spec)}" if spec else "") + (f" --model {model}" if model else "")
    )
    path = Path(out)
    cluster = from_hosts(hosts)
    workloads(cluster, out)  # a name Kubernetes would refuse is refused now, not at render
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(cluster, hosts, f"{command} --out {out}"), encoding="utf-8")
    return path


def dump(cluster: Cluster, hosts: dict[str, HostPlan] | None, command: str) -> str:
    """The cluster plan file: a header for people (what wrote it, the budget behind every server), then the pools."""
    body = {
        "pools": {
            name: {
                "node_selector": [r.model_dump(exclude_defaults=True) for r in pool.node_selector],
                **pool.model_dump(exclude_defaults=True, exclude={"node_selector"}),
            }
            for name, pool in cluster.pools.items()
        }
    }
    return _header(hosts or {}, command) + to_yaml(body)


def _header(hosts: dict[str, HostPlan], command: str) -> str:
    lines = [
        "A cluster plan: node pools, each planned like one host (fleet.yaml's format), with the node labels that",
        f"select its nodes (NVIDIA GPU feature discovery: {GPU_PRODUCT}, {GPU_MEMORY} in MiB, more than",
        f"{MEMORY_TOLERANCE:.0%} of the planned size). `llmfleet render --target kubernetes` renders",
        "kubernetes/overlays/<this file's name>/ from it. Card numbers count a pool's cards over all its nodes;",
        "Kubernetes chooses the node and card of each replica.",
        f"Written by `{command}`. Edit it by hand or plan again, then run `llmfleet render`.",
    ]
    budgets = [(pool, host, name, server, budget)
               for pool, host in hosts.items()
               for (name, server), budget in zip(host.plan.named_servers(), host.budgets, strict=True)
               if budget is not None]  # fmt: skip
    if budgets:
        lines.append(f"Budget per card, in GiB of what vLLM may use (memory x {CUDA_VISIBLE} x utilization):")
    for pool, host in hosts.items():
        if host.plan.device == "cpu":  # the CPU plan's own note speaks of fleet.yaml and `up`
            served = ", ".join(sorted(host.plan.model_groups()))
            notice = f" {synthetic.NOTICE}" if synthetic.NAME in host.plan.model_groups() else ""
            lines.append(f"Pool {pool} has no GPU: vLLM's CPU build, serving {served}.{notice}")
        else:
            lines += [f"Note ({pool}): {note}" for note in host.notes if note != POOLS_NOTE]
    for pool, _, name, server, budget in budgets:
        lines.append(
            f"  {pool} {name}: {server.model}: weights {budget.weights_gib:.2f} + KV cache {budget.kv_cache_gib:.2f} "
            f"({budget.kv_tokens:,} tokens) + runtime {budget.runtime_gib:.2f} = {budget.used_gib:.2f} of "
            f"{budget.usable_gib:.2f}"
        )
    return "".join(f"# {line}\n" for line in lines)


def load_cluster(path: Path, name: str) -> Cluster:
    """Read and check a cluster plan; `name` is how messages refer to the file."""
    if not path.is_file():
        raise FleetError(f"{name} does not exist.", "write it with `llmfleet plan --gpus 'POOL=SPEC;...' --out "
                         f"{name}`.", name)  # fmt: skip
    cluster = read_checked(
        path,
        name,
        Cluster,
        "cluster plan",
        "correct that field; `llmfleet plan --gpus 'POOL=SPEC;...' --out FILE` writes a valid one.",
    )
    catalog = load_catalog()
    for pool_name, pool in cluster.pools.items():
        try:
            pool.check_models(catalog, name)
            pool.check_budgets(catalog, name)
        except FleetError as e:  # the plan's checks name `servers[i]`; in this file that is under the pool
            where = (e.where or name).replace(f"{name}: ", f"{name}: pools.{pool_name}.", 1)
            raise FleetError(e.what, e.fix, where) from None
    workloads(cluster, name)  # refuses what cannot be a StatefulSet
    return cluster


def plan_files(root: Path) -> list[Path]:
    """The committed cluster plans: one overlay each."""
    return sorted((root / PLANS_DIR).glob("*.yaml"))
