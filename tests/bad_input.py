"""Bad input and what a client must read back: one table for the gateway's tests (test_gateway_input.py, through
the door) and the backends' (test_backend_guard.py, test_door.py: straight to a server), so every path to a backend
is held to the same answer."""

from __future__ import annotations

MODEL = "fleet-tiny"
HI = [{"role": "user", "content": "hi"}]

# Who answers each case on a request that reaches a backend without LiteLLM:
# "guard" vllm/backend_guard.py's checks (which LiteLLM's guard calls too), "caps" the guard's caps from the plan,
# "vllm" vLLM's own 400, "gateway" only a gateway that knows the model groups (LiteLLM today).
# (what is wrong, the body, the status, words the message must contain, who answers)
BAD = [
    ("malformed JSON", b'{"model": "fleet-tiny", "messages": [}', 400, ["Invalid JSON"], "guard"),
    ("invalid UTF-8", b'{"model": "fleet-tiny", "messages": [{"role": "user", "content": "caf\xe9 \xff"}]}', 400,
     ["UTF-8"], "guard"),
    ("messages of the wrong type", {"model": MODEL, "messages": "hi"}, 400, ["messages", "non-empty list"], "guard"),
    ("empty messages", {"model": MODEL, "messages": []}, 400, ["messages", "non-empty list"], "guard"),
    ("a message without a role", {"model": MODEL, "messages": [{"content": "hi"}]}, 400, ["messages[0].role"], "guard"),
    ("max_tokens of the wrong type", {"model": MODEL, "messages": HI, "max_tokens": "ten"}, 400,
     ["max_tokens must be a whole number"], "guard"),
    ("temperature of the wrong type", {"model": MODEL, "messages": HI, "temperature": "hot"}, 400,
     ["temperature must be a number"], "guard"),
    ("an unknown model", {"model": "gpt-9", "messages": HI}, 400, ["gpt-9", "/v1/models"], "gateway"),
    ("max_tokens negative", {"model": MODEL, "messages": HI, "max_tokens": -5}, 400, ["max_tokens", "at least 1"],
     "vllm"),
    ("max_tokens beyond the context", {"model": MODEL, "messages": HI, "max_tokens": 100_000}, 400,
     ["max_tokens", "max_model_len=2048"], "caps"),
    ("a prompt longer than the context", {"model": MODEL, "messages": [{"role": "user", "content": "word " * 5000}],
                                          "max_tokens": 4}, 400, ["maximum context length is 2048"], "vllm"),
    ("an unsupported parameter", {"model": MODEL, "messages": HI, "temprature": 0.5}, 400,
     ["temprature", "did you mean temperature"], "guard"),
    ("a parameter of another API", {"model": MODEL, "messages": HI, "input": "x"}, 400, ["Unknown parameter", "input"],
     "guard"),
]  # fmt: skip

# On the router lane (the default), SMG reads a completion's body into typed fields before it routes it: a body that
# does not fit them gets SMG's own 400, which names the field in other words than LiteLLM's. The rest reach the
# backend guard or vLLM, and get the same words as through LiteLLM. (case -> words SMG's message has)
ROUTER_WORDS = {
    "malformed JSON": ["JSON syntax error", "messages[0]"],
    "invalid UTF-8": ["messages[0].content", "invalid unicode"],
    "messages of the wrong type": ["messages", "expected a sequence"],
    "empty messages": ["messages", "empty array"],
    "a message without a role": ["messages[0]", "missing field `role`"],
    "max_tokens of the wrong type": ["max_tokens", "invalid type"],
    "temperature of the wrong type": ["temperature", "invalid type"],
    "max_tokens negative": ["max_tokens", "invalid value"],
    "an unknown model": ["gpt-9"],
}
# A model no backend serves is the router's 404 naming it, where LiteLLM's model groups answer 400.
ROUTER_STATUS = {"an unknown model": 404}
