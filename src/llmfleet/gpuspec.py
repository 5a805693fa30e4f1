"""`--gpus SPEC`: a description of GPUs to plan for, when they are not this host's.

    SPEC     := ITEM ("," ITEM)*  |  "none"
    ITEM     := COUNT "x" MEMORY [":" CARD]        2x12GiB   1x24GiB   2x12GiB:RTX3060
    MEMORY   := NUMBER ("GiB" | "GB" | "G" | "MiB" | "MB")
    CLUSTER  := NAME "=" SPEC (";" NAME "=" SPEC)*  pool-a=2x12GiB:RTX3060;pool-b=4x48GiB:RTX6000Ada

GPU makers' "GB" are GiB (a 12 GB RTX 3060 has 12 GiB), so GB and G are read as GiB; MiB is what nvidia-smi
prints. CARD is a name like RTX3060; known names become the driver's full name (NVIDIA GeForce RTX 3060) and bring
their compute capability, so a plan made from a description reads like one made on the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llmfleet.errors import FleetError
from llmfleet.hardware import GpuInfo

WHERE = "--gpus"
ACCEPTED = (
    "write COUNTxMEMORY items joined by commas, each with an optional card name after a colon, e.g. 2x12GiB, "
    "1x24GiB,1x12GiB or 2x12GiB:RTX3060 (MEMORY in GiB, GB or MiB); `none` plans a host without GPUs; a cluster is "
    "NAME=SPEC node pools joined by semicolons, e.g. 'pool-a=2x12GiB:RTX3060;pool-b=4x48GiB:RTX6000Ada'."
)
MAX_COUNT = 64  # cards in one host or pool
MAX_GIB = 1024  # no single GPU comes near this; a bigger number is a typo

# Short card name (lower case, no spaces, dashes or vendor words) -> (name as NVML reports it, compute capability).
CARDS: dict[str, tuple[str, float]] = {
    "rtx3060": ("NVIDIA GeForce RTX 3060", 8.6),
    "rtx3060ti": ("NVIDIA GeForce RTX 3060 Ti", 8.6),
    "rtx3080": ("NVIDIA GeForce RTX 3080", 8.6),
    "rtx3090": ("NVIDIA GeForce RTX 3090", 8.6),
    "rtx4060ti": ("NVIDIA GeForce RTX 4060 Ti", 8.9),
    "rtx4070": ("NVIDIA GeForce RTX 4070", 8.9),
    "rtx4080": ("NVIDIA GeForce RTX 4080", 8.9),
    "rtx4090": ("NVIDIA GeForce RTX 4090", 8.9),
    "rtx5090": ("NVIDIA GeForce RTX 5090", 12.0),
    "rtxa6000": ("NVIDIA RTX A6000", 8.6),
    "a6000": ("NVIDIA RTX A6000", 8.6),
    "rtx6000ada": ("NVIDIA RTX 6000 Ada Generation", 8.9),
    "a10": ("NVIDIA A10", 8.6),
    "l4": ("NVIDIA L4", 8.9),
    "l40s": ("NVIDIA L40S", 8.9),
    "a100": ("NVIDIA A100", 8.0),
    "h100": ("NVIDIA H100 80GB HBM3", 9.0),
    "h200": ("NVIDIA H200", 9.0),
    "t4": ("Tesla T4", 7.5),
    "v100": ("Tesla V100", 7.0),
}

_ITEM = re.compile(r"(\d+)\s*[x×]\s*(\d+(?:\.\d+)?)\s*(gib|gb|g|mib|mb)\s*(?::\s*(.*))?", re.IGNORECASE)
_POOL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS label: it becomes a Kubernetes name later
_UNIT_GIB = {"gib": 1.0, "gb": 1.0, "g": 1.0, "mib": 1 / 1024, "mb": 1 / 1024}


@dataclass(frozen=True)
class GpuSpec:
    """The GPUs a SPEC describes: one host (`pools` has the single key ""), or node pools by name."""

    text: str
    pools: dict[str, tuple[GpuInfo, ...]] = field(default_factory=dict)

    @property
    def is_cluster(self) -> bool:
        return "" not in self.pools


def parse_spec(text: str) -> GpuSpec:
    text = text.strip()
    if not text:
        raise _malformed(text, "it is empty")
    if "=" not in text:
        return GpuSpec(text, {"": parse_host(text, text)})
    pools: dict[str, tuple[GpuInfo, ...]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, host = part.partition("=")
        name = name.strip()
        if not sep or not _POOL.fullmatch(name):
            raise _malformed(text, f"{part!r} is not NAME=SPEC with a lower-case pool NAME such as pool-a")
        if name in pools:
            raise _malformed(text, f"pool {name!r} appears twice")
        pools[name] = parse_host(host, text)
    if not pools:
        raise _malformed(text, "it names no pool")
    return GpuSpec(text, pools)


def parse_host(host: str, whole: str) -> tuple[GpuInfo, ...]:
    """One host's (or pool's) cards, numbered from 0 in the order written."""
    host = host.strip()
    if host.lower() in ("none", "cpu"):
        return ()
    gpus: list[GpuInfo] = []
    for item in (i.strip() for i in host.split(",")):
        match = _ITEM.fullmatch(item)
        if not match:
            raise _malformed(whole, f"{item!r} is not COUNTxMEMORY")
        count, amount, unit, card = int(match[1]), float(match[2]), match[3].lower(), (match[4] or "").strip()
        gib = amount * _UNIT_GIB[unit]
        if not 1 <= count <= MAX_COUNT:
            raise _malformed(whole, f"{item!r} asks for {count} cards; give 1 to {MAX_COUNT}")
        if not 1 <= gib <= MAX_GIB:
            raise _malformed(whole, f"{item!r} gives each card {gib:g} GiB; give 1 to {MAX_GIB} GiB")
        name, capability = card_name(card, gib)
        gpus += [GpuInfo(len(gpus) + i, name, gib, compute_capability=capability) for i in range(count)]
    if len(gpus) > MAX_COUNT:
        raise _malformed(whole, f"it describes {len(gpus)} cards in one host; give at most {MAX_COUNT}")
    return tuple(gpus)


def card_name(card: str, gib: float) -> tuple[str, float | None]:
    """`RTX3060` -> the driver's full name and compute capability; an unknown name is kept as written."""
    if not card:
        return f"{gib:g} GiB GPU", None
    key = re.sub(r"[\s_-]+|nvidia|geforce", "", card.lower())
    return CARDS.get(key, (card, None))


def _malformed(text: str, problem: str) -> FleetError:
    return FleetError(f"--gpus {text!r} is not a GPU description: {problem}.", ACCEPTED, WHERE)
