"""Per-user keys on the real stack: the real PostgreSQL, the real door and LiteLLM's own limiter.

Each test creates keys of its own names, so they do not depend on one another.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest
from conftest import STACK_MODEL, Stack
from monitoringtools import query

from llmfleet.run import procs

pytestmark = pytest.mark.stack

REVOCATION_S = 20  # the README's promise: the door's 10 s cache, then a gateway worker's 10 s


def create(stack: Stack, name: str, *flags: str) -> str:
    made = stack.cli("keys", "create", name, *flags, "--json", timeout=60)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["key"]


def ask(stack: Stack, key: str, model: str = STACK_MODEL) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return httpx.post(stack.gateway + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def listed(stack: Stack) -> dict[str, dict]:
    result = stack.cli("keys", "list", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_two_keys_are_limited_independently(stack: Stack) -> None:
    slow, fast = create(stack, "limited-slow", "--rpm", "2"), create(stack, "limited-fast", "--rpm", "100")
    assert [ask(stack, slow).status_code for _ in range(2)] == [200, 200]
    over = ask(stack, slow)
    assert over.status_code == 429, over.text
    assert int(over.headers["retry-after"]) > 0
    assert over.json()["error"]["type"] == "throttling_error"  # the OpenAI shape, before any backend was asked
    assert [ask(stack, fast).status_code for _ in range(4)] == [200] * 4  # the other key is not slowed


def test_a_key_may_use_only_its_models_and_the_data_routes(stack: Stack) -> None:
    key = create(stack, "one-model", "--models", STACK_MODEL)
    assert ask(stack, key).status_code == 200
    other = ask(stack, key, model="smollm2-135m")
    assert other.status_code == 403 and "may not use the model" in other.json()["error"]["message"]
    admin = httpx.get(stack.gateway + "/key/list", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert admin.status_code == 403, admin.text  # the master key stays the administrator's


def test_a_revoked_key_is_refused_within_the_stated_time(stack: Stack) -> None:
    key = create(stack, "to-revoke")
    assert ask(stack, key).status_code == 200  # accepted: now in the door's and the gateway's caches
    assert stack.cli("keys", "revoke", "to-revoke").returncode == 0
    revoked = time.monotonic()
    while (status := ask(stack, key).status_code) == 200:
        assert time.monotonic() - revoked < REVOCATION_S + 3, "a revoked key still works"
        time.sleep(0.5)
    print(f"revoked key refused after {time.monotonic() - revoked:.1f} s")
    assert status == 401


def _usage(stack: Stack, expr: str) -> float:
    ok, result, error = query(stack.prometheus, expr)
    assert ok, error
    return float(result[0]["value"][1]) if result else 0.0


def test_usage_per_key_is_in_prometheus_and_in_keys_list(stack: Stack) -> None:
    key = create(stack, "metered")
    for _ in range(3):
        assert ask(stack, key).status_code == 200
    row = listed(stack)["metered"]
    assert row["requests"] == 3 and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["last_used_at"] is not None
    raw = 'sum(litellm_proxy_total_requests_metric_total{api_key_alias="metered"})'  # by name: no series has the key
    panel = 'key:gateway_requests:rate5m{key="metered"}'  # the gateway dashboard's "Requests per key"
    deadline = time.monotonic() + 90
    while _usage(stack, raw) < 3:  # LiteLLM creates the series at its first requests: rate() needs a later sample
        assert time.monotonic() < deadline, "Prometheus has no request count for the key after 90 s"
        time.sleep(2)
    for _ in range(2):
        assert ask(stack, key).status_code == 200
    # LiteLLM keeps one series per backend (`model_id`), and rate() counts no increase in a series' first sample: if
    # the later requests all went to a backend the first ones missed, the rate stays 0. One more request each round
    # reaches a backend whose series already exists (two scrapes and a rule evaluation, on a busy host).
    deadline = time.monotonic() + 90
    while _usage(stack, raw) < 5 or _usage(stack, panel) <= 0:
        values = f"{raw} = {_usage(stack, raw)}, {panel} = {_usage(stack, panel)}"
        assert time.monotonic() < deadline, f"after 90 s: {values}"
        assert ask(stack, key).status_code == 200
        time.sleep(2)


def test_prometheus_scrapes_with_a_key_that_reads_metrics_only(stack: Stack) -> None:
    key = (stack.cli.run_dir / "secrets" / "gateway.key").read_text().strip()
    assert key and key != stack.key
    litellm = f"http://127.0.0.1:{stack.cli.port('LITELLM_PORT')}"
    metrics = httpx.get(litellm + "/metrics/", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert metrics.status_code == 200 and "litellm" in metrics.text
    assert ask(stack, key).status_code == 403


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("create", "Bad Name"), "NAME"),
        (("create", "ok-name", "--models", "no-such-model"), "--models"),
        (("create", "ok-name", "--rpm", "0"), "--rpm"),
        (("create", "ok-name", "--expires", "soon"), "--expires"),
        (("revoke", "never-made"), "NAME"),
    ],
)
def test_bad_input_names_the_flag(stack: Stack, args: tuple[str, ...], flag: str) -> None:
    result = stack.cli("keys", *args)
    assert result.returncode == 1 and flag in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_duplicate_name_is_refused(stack: Stack) -> None:
    create(stack, "twice")
    again = stack.cli("keys", "create", "twice")
    assert again.returncode == 1 and "exists already" in again.stderr


def test_keys_and_usage_survive_a_database_crash_and_known_keys_work_while_it_is_down(stack: Stack) -> None:
    known, fresh = create(stack, "survivor"), create(stack, "unseen")
    assert ask(stack, known).status_code == 200  # `known` is now in the caches; `unseen` was never used
    before = listed(stack)["survivor"]
    service = next(s for s in stack.services() if s["name"] == "postgres")
    for pid in procs.group_members(service["pid"], service["started"]):
        os.kill(pid, signal.SIGKILL)  # a crash: no shutdown, no checkpoint
    try:
        assert ask(stack, known).status_code == 200  # served from the caches while the database is down
        refused = ask(stack, fresh)
        assert refused.status_code == 503, refused.text
        assert "key database" in refused.json()["error"]["message"]
    finally:
        restarted = stack.cli("restart", "postgres", timeout=120)
        assert restarted.returncode == 0, restarted.stderr
    after = listed(stack)
    assert after["survivor"]["requests"] >= before["requests"] and "unseen" in after
    deadline = time.monotonic() + 30
    while ask(stack, fresh).status_code != 200:  # served again once the database is back
        assert time.monotonic() < deadline, "a key is still refused 30 s after the database came back"
        time.sleep(1)
