"""Per-user keys on the real stack: the real PostgreSQL and the real door, on the default (router) lane.
Their limits and usage there: test_router_lane.py; on LiteLLM's lane, with its own limiter: test_litellm_lane.py.

Each test creates keys of its own names, so they do not depend on one another.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from conftest import Stack
from keytools import ask, create_key, listed

from llmfleet.run import procs

pytestmark = pytest.mark.stack

REVOCATION_S = 20  # the README's promise: the door's 10 s cache, then a gateway worker's 10 s


def test_a_users_key_may_not_use_the_admin_routes(stack: Stack) -> None:
    key = create_key(stack, "no-admin")
    assert ask(stack, key).status_code == 200
    admin = httpx.get(stack.gateway + "/key/list", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert admin.status_code == 403, admin.text  # the master key stays the administrator's


def test_a_revoked_key_is_refused_within_the_stated_time(stack: Stack) -> None:
    key = create_key(stack, "to-revoke")
    assert ask(stack, key).status_code == 200  # accepted: now in the door's and the gateway's caches
    assert stack.cli("keys", "revoke", "to-revoke").returncode == 0
    revoked = time.monotonic()
    while (status := ask(stack, key).status_code) == 200:
        assert time.monotonic() - revoked < REVOCATION_S + 3, "a revoked key still works"
        time.sleep(0.5)
    print(f"revoked key refused after {time.monotonic() - revoked:.1f} s")
    assert status == 401


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
    create_key(stack, "twice")
    again = stack.cli("keys", "create", "twice")
    assert again.returncode == 1 and "exists already" in again.stderr


def test_keys_and_usage_survive_a_database_crash_and_known_keys_work_while_it_is_down(stack: Stack) -> None:
    known, fresh = create_key(stack, "survivor"), create_key(stack, "unseen")
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
