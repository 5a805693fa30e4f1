"""The committed renderings (Compose services, gateway models, Prometheus config) match fleet.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from llmfleet.plan.catalog import load_catalog
from llmfleet.plan.schema import load_plan
from llmfleet.render.files import compose_files, stale_files

ROOT = Path(__file__).resolve().parents[2]


def test_committed_renderings_match_a_fresh_rendering_of_fleet_yaml() -> None:
    stale = stale_files(load_plan(ROOT / "fleet.yaml"), load_catalog(ROOT), ROOT)
    assert stale == [], f"stale: {stale}; run `llmfleet render`"


def test_a_changed_plan_makes_the_renderings_stale(tmp_path: Path) -> None:
    for path in compose_files(load_plan(ROOT / "fleet.yaml"), load_catalog(ROOT), ROOT):
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    plan = yaml.safe_load((ROOT / "fleet.yaml").read_text())
    plan["servers"][1]["max_model_len"] = 4096
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(plan))
    stale = stale_files(load_plan(tmp_path / "fleet.yaml"), load_catalog(ROOT), tmp_path)
    # The door's config is in the copy too (it depends on .env, not on the plan), so only the plan's files are stale.
    assert {p.relative_to(tmp_path).as_posix() for p in stale} == {"vllm/services.yaml", "gateway/models.yaml"}


def test_every_rendered_file_says_it_is_rendered_and_from_what() -> None:
    for path, text in compose_files(load_plan(ROOT / "fleet.yaml"), load_catalog(ROOT), ROOT).items():
        source = "the built-in CPU plan" if ".cpu." in path.name else "fleet.yaml"
        if path.name in ("slo.rules.yaml", "door.conf"):  # from settings (objectives, body limit), not the plan
            source = ".env"
        assert text.startswith(f"# Rendered by llmfleet render from {source}"), path
        assert "Do not edit" in text.splitlines()[0], path
