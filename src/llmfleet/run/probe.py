"""Checks that a service is really there: a health URL (HTTP, or Redis's PING), and a real completion through
the gateway."""

from __future__ import annotations

import socket
import time

import httpx


def healthy(client: httpx.Client, url: str) -> bool:
    if url.startswith("redis://"):
        return redis_answers(httpx.URL(url))
    if url.startswith("postgres://"):
        return postgres_answers(httpx.URL(url))
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def redis_answers(url: httpx.URL, timeout: float = 2) -> bool:
    """Redis speaks its protocol on the port. Without the password it answers PING with NOAUTH: up all the same."""
    try:
        with socket.create_connection((url.host, url.port or 6379), timeout=timeout) as connection:
            connection.sendall(b"PING\r\n")
            reply = connection.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def postgres_answers(url: httpx.URL, timeout: float = 2) -> bool:
    """PostgreSQL ready for clients: a startup message is answered with an authentication request ('R'). While it
    starts or recovers it answers with an error ('E') instead; no password is needed to tell the two apart."""
    user, database = b"llmfleet", b"postgres"
    body = (3 << 16).to_bytes(4, "big") + b"user\0" + user + b"\0database\0" + database + b"\0\0"
    try:
        with socket.create_connection((url.host, url.port or 5432), timeout=timeout) as connection:
            connection.sendall((len(body) + 4).to_bytes(4, "big") + body)
            reply = connection.recv(1)
    except OSError:
        return False
    return reply == b"R"


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
