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
from typing import NamedTuple

from llmfleet.errors import FleetError
from llmfleet.plan.hardware import GpuInfo

WHERE = "--gpus"
ACCEPTED = (
    "write COUNTxMEMORY items joined by commas, each with an optional card name after a colon, e.g. 2x12GiB, "
    "1x24GiB,1x12GiB or 2x12GiB:RTX3060 (MEMORY in GiB, GB or MiB); `none` plans a host without GPUs; a cluster is "
    "NAME=SPEC node pools joined by semicolons, e.g. 'pool-a=2x12GiB:RTX3060;pool-b=4x48GiB:RTX6000Ada'."
)
MAX_COUNT = 64  # cards in one host or pool
MAX_GIB = 1024  # no single GPU comes near this; a bigger number is a typo


class Card(NamedTuple):
    name: str  # as NVML reports it
    compute_capability: float
    bandwidth_gbs: float  # memory bandwidth, GB/s (10^9 bytes), from the maker's spec sheet


# Short card name (lower case, no spaces, dashes or vendor words) -> the card. Bandwidths are NVIDIA's published
# figures (product pages and datasheets); the 80 GB A100 and the H100 are the SXM parts.
CARDS: dict[str, Card] = {
    "rtx3060": Card("NVIDIA GeForce RTX 3060", 8.6, 360),
    "rtx3060ti": Card("NVIDIA GeForce RTX 3060 Ti", 8.6, 448),
    "rtx3080": Card("NVIDIA GeForce RTX 3080", 8.6, 760),
    "rtx3090": Card("NVIDIA GeForce RTX 3090", 8.6, 936),
    "rtx4060ti": Card("NVIDIA GeForce RTX 4060 Ti", 8.9, 288),
    "rtx4070": Card("NVIDIA GeForce RTX 4070", 8.9, 504),
    "rtx4080": Card("NVIDIA GeForce RTX 4080", 8.9, 717),
    "rtx4090": Card("NVIDIA GeForce RTX 4090", 8.9, 1008),
    "rtx5090": Card("NVIDIA GeForce RTX 5090", 12.0, 1792),
    "rtxa6000": Card("NVIDIA RTX A6000", 8.6, 768),
    "a6000": Card("NVIDIA RTX A6000", 8.6, 768),
    "rtx6000ada": Card("NVIDIA RTX 6000 Ada Generation", 8.9, 960),
    "a10": Card("NVIDIA A10", 8.6, 600),
    "l4": Card("NVIDIA L4", 8.9, 300),
    "l40s": Card("NVIDIA L40S", 8.9, 864),
    "a100": Card("NVIDIA A100", 8.0, 1555),  # 40 GB; the 80 GB part is A100_80GB below
    "h100": Card("NVIDIA H100 80GB HBM3", 9.0, 3350),
    "h200": Card("NVIDIA H200", 9.0, 4800),
    "t4": Card("Tesla T4", 7.5, 320),
    "v100": Card("Tesla V100", 7.0, 900),
}
A100_80GB_GBS = 2039  # NVML names both A100s "NVIDIA A100-..."; the 80 GB one has HBM2e
# A card that is not in the table (or described by size only): an assumption, said wherever it is used. Between an
# L4 (300) and an RTX 3090 (936); name the card (`2x24GiB:RTX4090`) to use its own figure.
DEFAULT_BANDWIDTH_GBS = 500

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
    found = CARDS.get(_key(card))
    return (found.name, found.compute_capability) if found else (card, None)


def bandwidth(name: str, memory_gib: float) -> tuple[float, bool]:
    """A card's memory bandwidth in GB/s from its NVML (or short) name, and whether it is known (else the default)."""
    key = _key(name)
    by_name = {c.name: c for c in CARDS.values()}
    found = by_name.get(name) or CARDS.get(key)
    if found is None:  # NVML adds the form factor: "NVIDIA A100-SXM4-80GB", "NVIDIA H100 PCIe"
        prefixes = [k for k in CARDS if key.startswith(k)]
        found = CARDS[max(prefixes, key=len)] if prefixes else None
    if found is None:
        return DEFAULT_BANDWIDTH_GBS, False
    if found is CARDS["a100"] and memory_gib >= 70:
        return A100_80GB_GBS, True
    return found.bandwidth_gbs, True


def _key(card: str) -> str:
    return re.sub(r"[\s_-]+|nvidia|geforce", "", card.lower())


def _malformed(text: str, problem: str) -> FleetError:
    return FleetError(f"--gpus {text!r} is not a GPU description: {problem}.", ACCEPTED, WHERE)
