"""How many LiteLLM workers the gateway runs: enough to relay every server's full batch, streamed."""

from __future__ import annotations

import pytest

from llmfleet.errors import FleetError
from llmfleet.plan.schema import Plan, cpu_plan, load_plan
from llmfleet.render import gateway
from llmfleet.settings import load_settings


def plan_of(servers: int, seqs: int) -> Plan:
    return Plan(device="cuda", gpus=[{"index": i, "name": "NVIDIA RTX 6000 Ada Generation", "memory_gib": 48}
                                     for i in range(servers)],
                servers=[{"gpus": [i], "model": "Qwen3-32B-AWQ", "max_model_len": 32768, "max_num_seqs": seqs,
                          "gpu_memory_utilization": 0.9}
                         for i in range(servers)])  # fmt: skip


def test_workers_follow_the_plans_token_rate() -> None:
    assert gateway.workers(cpu_plan()) == 1
    assert gateway.workers(load_plan()) == 2  # 2 x RTX 3060: 64 sequences at ~30 tokens/s = 1,920 tokens/s
    assert gateway.workers(plan_of(4, 64)) == 6  # 7,680 tokens/s
    assert gateway.workers(plan_of(1, 1)) == 1


def test_empty_gateway_workers_means_the_plans_and_a_bad_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WORKERS", "")
    assert load_settings().GATEWAY_WORKERS is None
    monkeypatch.setenv("GATEWAY_WORKERS", "0")
    with pytest.raises(FleetError, match="GATEWAY_WORKERS"):
        load_settings()
