"""Checks over HTTP that a service is really there: a health URL, and a real completion through the gateway."""

from __future__ import annotations

import time

import httpx


def healthy(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def first_answer(gateway: str, key: str, models: list[str], patience: float = 60) -> str | None:
    """A real completion through the gateway for every model group (`up` promises an answering endpoint).

    Returns what went wrong, or None. The gateway may need a few seconds after it turns healthy.
    """
    headers = {"Authorization": f"Bearer {key}"}
    for model in models:
        body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}
        deadline = time.monotonic() + patience
        while True:
            try:
                response = httpx.post(f"{gateway}/v1/chat/completions", json=body, headers=headers, timeout=30)
                if response.status_code == 200:
                    break
                problem = f"answered HTTP {response.status_code}: {response.text[:300]}"
            except httpx.HTTPError as e:
                problem = f"did not answer ({e})"
            if time.monotonic() > deadline:
                return f"a completion for {model} through the gateway {problem}"
            time.sleep(1)
    return None
