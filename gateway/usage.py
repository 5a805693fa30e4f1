"""Usage per key, kept with the key in PostgreSQL: requests, prompt and completion tokens, and the last use.

LiteLLM calls it after each successful answer (`callbacks: [..., usage.recorder]` in config.yaml). Prometheus gets
the same figures per key name from LiteLLM's own metrics (the `api_key_alias` label); these totals are what
`llmfleet keys list` shows, and they survive restarts. A fleet without a key store (no LLMFLEET_KEYS_DSN) and the
master key count nothing here.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

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


def _record(name: str, prompt_tokens: int, completion_tokens: int) -> None:
    import keystore  # imports psycopg, which only a fleet with a key store needs

    keystore.SHARED.run(lambda conn: keystore.record_usage(conn, name, prompt_tokens, completion_tokens))


recorder = UsageRecorder()
