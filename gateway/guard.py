"""The gateway's guard: bad input gets a 4xx that says what to change, and no answer tells a client where the
backends are. LiteLLM loads it from config.yaml (`callbacks: [..., guard.guard]`) and calls it around each call:

- before: the body's size, its fields (only what vLLM understands: params.yaml, rendered from vLLM's own request
  models) and the shape of `messages`, so a typo is a 400 naming the field, not a silently ignored setting. The
  field checks are the backends' own (`backend_guard.check_fields`, vllm/backend_guard.py, shipped beside this
  file by every runner), so a request answers the same whichever path reaches a backend;
- after a failure: one plain message instead of LiteLLM's nested exception text, backend addresses removed, and
  503 when no backend could answer, so clients can tell "fix your request" from "retry later";
- on every answer: the `x-litellm-model-api-base` header no longer carries the backend's address.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

# LiteLLM loads this file by its path: the folder is not on sys.path, and backend_guard.py beside it must be importable.
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))
from backend_guard import Refusal, check_fields

PARAMS = yaml.safe_load((Path(__file__).with_name("params.yaml")).read_text(encoding="utf-8"))
GATEWAY_FIELDS = {"metadata"}  # read by the gateway itself, never forwarded as a sampling setting
ROUTE_OF_CALL = {
    "acompletion": "chat",
    "completion": "chat",
    "atext_completion": "completions",
    "text_completion": "completions",
}
MAX_BODY_BYTES = int(float(os.environ.get("GATEWAY_MAX_BODY_MB", "4")) * 2**20)
# Time a backend may take for its first token, on top of the model's base (models.yaml: stream_timeout), per 1,000
# characters of prompt: prefilling a long prompt takes longer, and must not be mistaken for a frozen server.
PREFILL_S_PER_1K_CHARS = 0.5
# A non-streamed answer has no first token to wait for: allow this much per output token (10 tokens/s, slower than
# any healthy server), so a frozen backend holds it minutes at worst, then the request is retried elsewhere.
SLOWEST_TOKEN_S = 0.1
DEFAULT_MAX_TOKENS = 4096
FIRST_TOKEN_S = {
    d["model_name"]: float(d["litellm_params"]["stream_timeout"])
    for d in yaml.safe_load((Path(__file__).with_name("models.yaml")).read_text(encoding="utf-8"))["model_list"]
}
# http://10.0.0.5:8000/v1, vllm-gpu0:8000, 127.0.0.1:8101: whatever names a backend
ADDRESS = re.compile(r"https?://[^\s\"'\\]+|\b[\w.-]+:\d{2,5}\b")
# vLLM's own message, inside LiteLLM's text: ... - {"error":{"message":"max_tokens must be at least 1 ..."
BACKEND_MESSAGE = re.compile(r"""\\?["']message\\?["']\s*:\s*\\?["'](.+?)\\?["'],\s*\\?["']type""")


def refusal(status: int, message: str, param: str | None = None) -> ProxyException:
    """An answer to raise before the call: LiteLLM sends it as an OpenAI-style error body, as is."""
    return ProxyException(message=message, type=_kind(status), param=param, code=status)


def replacement(status: int, message: str) -> HTTPException:
    """An answer to return after a failed call: LiteLLM sends it instead of the exception's text."""
    return HTTPException(status_code=status, detail=message)


def _kind(status: int) -> str:
    return "invalid_request_error" if status < 500 else "service_unavailable"


class Guard(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> None:
        request = data.get("proxy_server_request") or {}
        headers = {k.lower(): v for k, v in (request.get("headers") or {}).items()}
        body = request.get("body") or {}
        size = int(headers.get("content-length") or 0)
        if size > MAX_BODY_BYTES:
            raise refusal(
                413,
                f"The request body is {size / 2**20:.1f} MiB; the gateway accepts at most "
                f"{MAX_BODY_BYTES / 2**20:g} MiB (GATEWAY_MAX_BODY_MB). Send a shorter prompt.",
            )
        if size > 2 and not set(body) - GATEWAY_FIELDS - {"model"}:
            # LiteLLM reads a body it cannot decode as {} (plus its own metadata): say so, not "messages missing".
            raise refusal(400, "The request body could not be read: send a JSON object encoded as UTF-8.")
        route = ROUTE_OF_CALL.get(str(getattr(call_type, "value", call_type)))
        if route is None:
            return
        try:
            check_fields(route, {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}, PARAMS[route])
        except Refusal as e:
            raise refusal(e.status, e.message, e.param) from None
        # Timeouts that grow with the request, so no request waits for a frozen backend longer than it must.
        first_token = (
            FIRST_TOKEN_S.get(str(body.get("model")), 20.0) + _prompt_chars(body) / 1000 * PREFILL_S_PER_1K_CHARS
        )
        data["stream_timeout"] = round(first_token, 1)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        data["timeout"] = round(first_token + min(int(max_tokens), DEFAULT_MAX_TOKENS) * SLOWEST_TOKEN_S, 1)

    async def async_post_call_failure_hook(
        self,
        request_data: dict,
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> HTTPException | None:
        status = getattr(original_exception, "status_code", None)
        if isinstance(original_exception, HTTPException | ProxyException) or not isinstance(status, int):
            return None  # ours, or the proxy's own answers (auth, routing): already plain
        text = str(getattr(original_exception, "message", "") or original_exception)
        model = request_data.get("model", "?")
        if 400 <= status < 500 and status != 429:
            found = BACKEND_MESSAGE.search(text)
            message = found.group(1) if found else text.split("\n\n")[0]
            return replacement(status, _without_addresses(message.replace('\\"', '"')))
        if status in (408, 504) or "Timeout" in type(original_exception).__name__:
            return replacement(
                504,
                f"The backend serving {model!r} did not answer in time and no other could take the "
                "request. Retry; if it persists, `llmfleet status` shows the backends.",
            )
        return replacement(
            503,
            f"No backend of {model!r} could answer right now (all are down or cooling down after "
            "errors). Retry in a few seconds; `llmfleet status` shows the backends.",
        )

    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict | None = None,
        litellm_call_info: dict | None = None,
    ) -> dict[str, str]:
        return {"x-litellm-model-api-base": "hidden"}  # LiteLLM would send the backend's internal URL


def _prompt_chars(body: dict) -> int:
    if isinstance(body.get("prompt"), str):
        return len(body["prompt"])
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(part.get("text", "")) for part in content if isinstance(part, dict))
    return total


def _without_addresses(text: str) -> str:
    return ADDRESS.sub("<backend>", text)


guard = Guard()
