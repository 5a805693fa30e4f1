"""Convert a GGUF model into a folder vLLM's CPU build serves: config.json, tokenizer and bf16 safetensors.

A standalone script, run by the vLLM CPU runtime's Python (it has transformers, gguf and accelerate; llmfleet is
not installed there), so it imports nothing of llmfleet:

    python -I convert_gguf.py GGUF_FILE OUT_DIR

It writes into OUT_DIR, which must not exist yet; the caller (llmfleet.models.realmodel) gives a temporary folder and
renames it once this script has succeeded, so an interrupted conversion never leaves a folder that looks complete.
transformers dequantizes the GGUF's tensors as it loads them; the model it returns still carries the GGUF
quantizer, and save_pretrained refuses such a model until the quantizer and its config are removed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def convert(gguf: Path, out: Path) -> dict[str, object]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    out.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    model.hf_quantizer = None  # the weights are plain bf16 tensors now: nothing is left to quantize
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not tokenizer.chat_template:
        raise SystemExit(f"{gguf.name} carries no chat template: the served model would not know its roles")
    facts = {
        "source": gguf.name,
        "source_bytes": gguf.stat().st_size,
        "seconds": round(time.monotonic() - started, 1),
        "eos_token": tokenizer.eos_token,
        "config": {k: getattr(model.config, k, None) for k in FACTS},
    }
    (out / "llmfleet-conversion.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    for path in out.iterdir():  # safetensors writes 0600: a container running as another user could not read it
        path.chmod(0o644)
    return facts


# The config's facts the catalog repeats (vllm/catalog.yaml), printed so a person can compare them.
FACTS = (
    "architectures",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_size",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "tie_word_embeddings",
)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: convert_gguf.py GGUF_FILE OUT_DIR", file=sys.stderr)
        return 2
    facts = convert(Path(argv[0]), Path(argv[1]))
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
