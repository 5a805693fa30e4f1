"""The built-in synthetic model `fleet-tiny`: a real Qwen2 config with random weights.

It exists so the whole stack (vLLM, gateway, Prometheus) runs for real on a host with no GPU and no
network. Its answers are random tokens: it is a smoke-test model, never a model to judge quality by.
vLLM serves it with `--load-format dummy`, so only the config and a tokenizer are on disk; the
tokenizer is trained here, in about a second, from the text below.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llmfleet import paths

NAME = "fleet-tiny"
# Bump when any file below changes, so a cached copy is rebuilt rather than reused.
VERSION = "1"
NOTICE = "fleet-tiny is a synthetic smoke-test model with random weights: its answers are noise."

VOCAB_SIZE = 1024
# head_dim 64 (hidden 128 / 2 heads): the CPU attention backend refuses head_dim 16.
CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "max_window_layers": 2,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "sliding_window": None,
    "use_sliding_window": False,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "vocab_size": VOCAB_SIZE,
    "bos_token_id": None,
    "eos_token_id": 2,
    "pad_token_id": 0,
}

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2

# ChatML, as Qwen models use it, so prompts are shaped like the real ones.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Training text: English and Chinese, in the register of the prompts our users send.
CORPUS = """\
You are a helpful assistant. Answer the question briefly and clearly.
Summarise the following document in three sentences. List the key points.
The server streams tokens as they are generated; the first token arrives after the prompt is processed.
Explain how a GPU serves a large language model: weights, KV cache, batching and quantization.
Translate the sentence into English. Write a short poem about the sea. What is the capital of France?
你是一个乐于助人的助手。请简要回答下面的问题。
请用三句话总结下面的文档，并列出要点。模型在显卡上运行，显存用于权重和缓存。
下载模型，启动服务，然后发送请求。检查日志，查看显存占用和延迟。
把这句话翻译成英文。写一首关于大海的短诗。法国的首都是哪里？
"""


def model_dir() -> Path:
    """Where the model's files live: the user's cache, outside any checkout."""
    return paths.cache_dir() / "models" / f"{NAME}-v{VERSION}"


def ensure_model() -> Path:
    """Create the model directory on first use and return it; later calls reuse it."""
    target = model_dir()
    if (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    _write_files(staging)
    try:
        staging.rename(target)  # atomic: a concurrent first use sees all files or none
    except OSError:
        if not (target / "tokenizer.json").is_file():
            raise
        _remove_tree(staging)  # another process won the race; its copy is identical
    return target


def _write_files(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    tokenizer.save(str(directory / "tokenizer.json"))

    files = {
        "config.json": CONFIG,
        "generation_config.json": {"eos_token_id": CONFIG["eos_token_id"], "pad_token_id": CONFIG["pad_token_id"]},
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": CONFIG["max_position_embeddings"],
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
        },
        "README.md": f"# {NAME}\n\n{NOTICE}\nCreated by llmfleet (llmfleet/synthetic.py), version {VERSION}.\n",
    }
    for name, content in files.items():
        text = content if isinstance(content, str) else json.dumps(content, indent=2) + "\n"
        (directory / name).write_text(text, encoding="utf-8")


def _remove_tree(directory: Path) -> None:
    for item in directory.iterdir():
        item.unlink()
    directory.rmdir()
