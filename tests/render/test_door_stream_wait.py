"""The router lane's wait for a silent stream (render/door.py) against the LiteLLM lane's first-token timeout: a
stream waits as long on either lane before it is sent to another backend."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from llmfleet.render import door

ROOT = Path(__file__).resolve().parents[2]


def stream_wait(config: str) -> int:
    block = config[config.index("location @router_stream {") :]
    return int(re.search(r"proxy_read_timeout (\d+)s;", block)[1])  # type: ignore[index]


def test_the_containers_door_waits_as_long_as_litellm_does_for_any_plan() -> None:
    waits = {
        entry["litellm_params"]["stream_timeout"]
        for models in ("models.yaml", "models.cpu.yaml")
        for entry in yaml.safe_load((ROOT / "gateway" / models).read_text())["model_list"]
    }
    assert stream_wait((ROOT / door.CONTAINER_CONFIG).read_text()) == max(waits)


def test_only_a_stream_is_sent_again_and_the_router_is_listed_once_per_try() -> None:
    config = (ROOT / door.CONTAINER_CONFIG).read_text()
    whole = config[config.index("location @router_whole {") : config.index("location @router_stream {")]
    assert "proxy_next_upstream" not in whole and "proxy_read_timeout" not in whole  # the http block's 900 s
    assert config.count("server router:") == door.STREAM_TRIES
    assert f"proxy_next_upstream_tries {door.STREAM_TRIES};" in config
