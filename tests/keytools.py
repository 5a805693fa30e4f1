"""Users' keys on a running stack, as its tests use them: create one, ask with it, read `keys list` and Prometheus."""

from __future__ import annotations

import json
import time

import httpx
from conftest import STACK_MODEL, Stack
from monitoringtools import query


def create_key(stack: Stack, name: str, *flags: str) -> str:
    made = stack.cli("keys", "create", name, *flags, "--json", timeout=60)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["key"]


def ask(stack: Stack, key: str, model: str = STACK_MODEL, max_tokens: int = 2) -> httpx.Response:
    """A short completion through the door."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return httpx.post(stack.gateway + "/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def post(
    stack: Stack, body: bytes | dict, key: str | None = None, route: str = "/v1/chat/completions"
) -> httpx.Response:
    """A request through the door with its body as given (bytes go as they are, malformed or not), with the master
    key unless `key` names another ("" sends none)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    key = stack.key if key is None else key
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    return httpx.post(stack.gateway + route, content=content, headers=headers, timeout=60)


def listed(stack: Stack) -> dict[str, dict]:
    result = stack.cli("keys", "list", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def value(stack: Stack, expr: str) -> float:
    """A PromQL expression's first value now, 0 when it has none."""
    ok, result, error = query(stack.prometheus, expr)
    assert ok, error
    return float(result[0]["value"][1]) if result else 0.0


def early_in_a_minute() -> None:
    """Limits count per minute of the clock (as LiteLLM's do): a test of one starts well before the minute ends."""
    if (second := time.time() % 60) > 35:
        time.sleep(61 - second)
