"""Usage per key, kept with the key in PostgreSQL: requests, prompt and completion tokens, and the last use.

Two lanes report it:
- the LiteLLM lane: LiteLLM calls the recorder after each successful answer (`callbacks: [..., usage.recorder]` in
  config.yaml), and Prometheus gets the same figures per key name from LiteLLM's own metrics (`api_key_alias`);
- the router lane: each backend's guard (vllm/backend_guard.py) reads vLLM's own usage of an answer and posts it to
  USAGE_ROUTE with the backends' key; Prometheus reads the guard's `llmfleet_key_*` series on the backends.
These totals are what `llmfleet keys list` shows, and they survive restarts. A fleet without a key store (no
LLMFLEET_KEYS_DSN) and the master key count nothing here.

On the router lane LiteLLM's limiter never sees a request, so the front door's key check (auth.door_check) asks
`WINDOWS` instead: a key's requests and tokens in the current minute, kept in Redis, which every gateway worker
shares (in each worker's memory where REDIS_HOST is unset, or while Redis does not answer).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from litellm._logging import verbose_proxy_logger
from litellm.integrations.custom_logger import CustomLogger

# LiteLLM loads this file by its path: the folder is not on sys.path, and keystore.py beside it must be importable.
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))


class UsageRecorder(CustomLogger):
    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:  # fmt: skip
        if not os.environ.get("LLMFLEET_KEYS_DSN"):
            return
        payload = kwargs.get("standard_logging_object") or {}
        name = (payload.get("metadata") or {}).get("user_api_key_alias")
        if not name:
            return  # the master key: not a user's
        try:
            await asyncio.to_thread(_record, name, int(payload.get("prompt_tokens") or 0),
                                    int(payload.get("completion_tokens") or 0))  # fmt: skip
        except Exception as problem:  # an answer already sent is never failed by its bookkeeping
            verbose_proxy_logger.warning("usage of key %s not recorded: %s", name, problem)


USAGE_ROUTE = "/fleet/usage"  # the backends' guards post a user's usage here (LLMFLEET_USAGE_URL)
WINDOW_S = 60  # requests and tokens per minute, as LiteLLM's limiter counts them: a fixed window per minute
MAX_REPORTED = 1 << 24  # more requests or tokens than a backend answers in a report's second: refused above it


class Windows:
    """A key's requests and tokens in the current minute, shared by the gateway's workers through Redis."""

    def __init__(self) -> None:
        self._local: dict[str, int] = {}
        self._redis: Any = None

    def _client(self) -> Any:
        if self._redis is None and os.environ.get("REDIS_HOST"):
            import redis.asyncio as redis  # LiteLLM's own dependency

            self._redis = redis.Redis(host=os.environ["REDIS_HOST"], port=int(os.environ.get("REDIS_PORT") or 6379),
                                      password=os.environ.get("REDIS_PASSWORD") or None, socket_timeout=1,
                                      socket_connect_timeout=1)  # fmt: skip
        return self._redis

    async def _add(self, kind: str, name: str, amount: int) -> int:
        """Add to this minute's count of `kind` for the key; the count after it."""
        minute = int(time.time() // WINDOW_S)
        slot = f"llmfleet:{kind}:{name}:{minute}"
        client = self._client()
        if client is not None:
            try:
                count = await client.incrby(slot, amount)
                if count == amount:
                    await client.expire(slot, 2 * WINDOW_S)
                return int(count)
            except Exception as problem:  # Redis not answering: this worker counts alone until it is back
                verbose_proxy_logger.warning("rate window in Redis unavailable (%s): counting in this worker", problem)
        for old in [s for s in self._local if not s.endswith(f":{minute}")]:
            del self._local[old]
        self._local[slot] = self._local.get(slot, 0) + amount
        return self._local[slot]

    async def admit(self, name: str, rpm: int | None, tpm: int | None) -> str | None:
        """Count one request of the key; why it may not be sent now (over its rpm or tpm), or None."""
        if tpm is not None and (used := await self._add("tokens", name, 0)) >= tpm:
            return f"The key {name!r} used {used} tokens this minute; its limit is {tpm} per minute (tpm)."
        if rpm is not None and (sent := await self._add("requests", name, 1)) > rpm:
            return f"The key {name!r} sent {sent} requests this minute; its limit is {rpm} per minute (rpm)."
        return None

    async def charge(self, name: str, tokens: int) -> None:
        await self._add("tokens", name, tokens)


WINDOWS = Windows()


def retry_after_s() -> int:
    """Seconds until the current window ends, when a refused key may send again."""
    return max(1, WINDOW_S - int(time.time()) % WINDOW_S)


async def usage_report(request: Request) -> Response:
    """A backend's report of users' answered completions (`{"usage": [{key, requests, prompt_tokens,
    completion_tokens}, ...]}`): their tokens this minute, and their totals in PostgreSQL."""
    sent = request.headers.get("authorization", "").encode()
    backend_key = os.environ.get("VLLM_API_KEY", "")
    if not backend_key or not secrets.compare_digest(sent, f"Bearer {backend_key}".encode()):
        return JSONResponse({"error": {"message": "Only the fleet's backends report usage.",
                                       "type": "authentication_error", "param": None, "code": 401}},
                            status_code=401)  # fmt: skip
    try:
        rows = [_usage_row(row) for row in (await request.json())["usage"]]
    except (ValueError, KeyError, TypeError) as problem:
        return JSONResponse({"error": {"message": "A usage report is {\"usage\": [{key, requests, prompt_tokens, "
                                       f"completion_tokens}}, ...]}} ({problem}).", "type": "invalid_request_error",
                                       "param": None, "code": 400}}, status_code=400)  # fmt: skip
    for name, requests, prompt_tokens, completion_tokens in rows:
        await WINDOWS.charge(name, prompt_tokens + completion_tokens)
        if os.environ.get("LLMFLEET_KEYS_DSN"):
            try:
                await asyncio.to_thread(_record, name, prompt_tokens, completion_tokens, requests)
            except Exception as problem:  # the database restarting: the minute's window still counted it
                verbose_proxy_logger.warning("usage of key %s not recorded: %s", name, problem)
    return Response(status_code=204)


def _usage_row(row: dict[str, Any]) -> tuple[str, int, int, int]:
    counts = [int(row[field]) for field in ("requests", "prompt_tokens", "completion_tokens")]
    if not all(0 <= c <= MAX_REPORTED for c in counts):
        raise ValueError("counts out of range")
    return str(row["key"]), *counts


def _record(name: str, prompt_tokens: int, completion_tokens: int, requests: int = 1) -> None:
    import keystore  # imports psycopg, which only a fleet with a key store needs

    keystore.SHARED.run(lambda conn: keystore.record_usage(conn, name, prompt_tokens, completion_tokens, requests))


recorder = UsageRecorder()
