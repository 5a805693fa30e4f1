"""Prompts for the load test, from loadtest/scenarios.yaml: short chat turns and long documents, English and Chinese."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmfleet.errors import FleetError

LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Prompt:
    kind: str  # short or long
    language: str
    text: str


class Scenario:
    """Draws prompts for one scenario: its kinds weighted as the file says, languages as asked."""

    def __init__(self, file: Path, name: str, languages: tuple[str, ...] = LANGUAGES, seed: int = 0) -> None:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        if name not in data["scenarios"]:
            raise FleetError(
                f"scenario {name!r} is not in {file.name}.",
                f"use one of: {', '.join(data['scenarios'])}.",
                "--scenario",
            )
        unknown = set(languages) - set(LANGUAGES)
        if unknown:
            raise FleetError(
                f"language {sorted(unknown)} is not one of {LANGUAGES}.", "use en, zh or both.", "--language"
            )
        self.weights: dict[str, int] = data["scenarios"][name]
        self.prompts: dict[str, list[Prompt]] = {
            "short": [Prompt("short", lang, text) for lang in languages for text in data["short"][lang]],
            "long": [
                Prompt("long", lang, long_document(data["long"], lang, i)) for lang in languages for i in range(4)
            ],
        }
        self.random = random.Random(seed)  # noqa: S311 - picking prompts, not secrets

    def draw(self) -> Prompt:
        kind = self.random.choices(list(self.weights), weights=list(self.weights.values()))[0]
        return self.random.choice(self.prompts[kind])


def long_document(spec: dict[str, Any], language: str, seed: int) -> str:
    """A log of `spec['lines']` lines from the language's templates, then its question; the same for a seed."""
    rng = random.Random(f"{language}-{seed}")  # noqa: S311 - the same document for the same seed
    templates = spec[language]["templates"]
    lines = []
    for i in range(spec["lines"]):
        fields = {
            "time": f"2026-11-23 10:{i // 60 % 60:02d}:{i % 60:02d}",
            "gpu": rng.randint(0, 3), "id": f"req-{rng.randint(10_000, 99_999)}", "ms": rng.randint(40, 9_000),
            "tokens": rng.randint(16, 1_024), "tps": rng.randint(18, 95), "queue": rng.randint(0, 12),
            "pct": rng.randint(20, 99), "running": rng.randint(1, 16), "used": rng.randint(5_000, 12_000),
            "watts": rng.randint(60, 170), "temp": rng.randint(40, 86),
        }  # fmt: skip
        lines.append(rng.choice(templates).format(**fields))
    return "\n".join(lines) + "\n\n" + spec[language]["question"]
