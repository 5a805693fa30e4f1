"""The VRAM budget of one vLLM server: what it may use, and what weights, KV cache and runtime take of it.

vLLM 0.32 (v1/worker/gpu_worker.py) gives itself `total x gpu_memory_utilization`, where total is what CUDA
reports, loads the weights, profiles one forward pass of `max_num_batched_tokens` tokens and the CUDA graphs, and
hands the rest to the KV cache. It refuses to start unless one request of `max_model_len` tokens fits in it.
This module does the same arithmetic ahead of time:

    usable   = memory x CUDA_VISIBLE x gpu_memory_utilization
    weights  = the catalog's safetensors size / tensor-parallel size
    runtime  = FIXED (+ TP_COMM with tensor parallelism) + max(forward activations, sampler logits) + model extra
    KV cache = usable - weights - runtime  ->  tokens = KV cache / (layers x KV heads per card x head_dim x 2 x bytes)

The runtime model is deliberately on the safe side (a plan that does not start costs a 20-minute download to
find out). It was checked against a published vLLM log (tests/plan/test_budget.py): Qwen3-32B bf16 with tensor
parallelism 2 left 1.66 GiB per card for everything but weights and KV cache; this model says 2.21.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmfleet.plan.catalog import Model

GIB = 1024**3
# CUDA reports a little less than NVML's total: an RTX 3060 (12 GiB) shows "11.75 GiB total capacity" to PyTorch
# (Kunhao-Liu/StyleGaussian#12), an RTX 6000 Ada with ECC 44.43 of nvidia-smi's 46068 MiB (DINGYANB/MTVCrafter#21).
CUDA_VISIBLE = 0.975
# vLLM 0.32 defaults to 0.92. 0.90 (its default until recently, and the seeds' upper end) leaves about 1 GiB of a
# 12 GiB card for the CUDA context, which vLLM counts outside its share, and for a desktop on the same card.
DEFAULT_UTILIZATION = 0.90
# CUDA graphs (counted in vLLM's share since v0.21), cuBLAS workspaces and other non-PyTorch allocations.
FIXED_RUNTIME_GIB = 0.75
TP_COMM_GIB = 0.25  # NCCL buffers on each card of a tensor-parallel server
# Peak of one profiled forward pass, per batched token: a few hidden-size buffers (residual, norm, attention in and
# out, in bf16) and the MLP's gate/up output plus its activation (intermediate size, bf16).
ACTIVATION_BYTES_PER_HIDDEN = 16
ACTIVATION_BYTES_PER_INTERMEDIATE = 6
# The sampler's dummy run: float32 logits for every sequence and one working copy.
SAMPLER_BYTES_PER_LOGIT = 8
KV_BLOCK_TOKENS = 16  # vLLM hands out KV cache in blocks of 16 tokens


@dataclass(frozen=True)
class Budget:
    """One server's budget, per card (a tensor-parallel server has the same budget on each of its cards)."""

    model: str
    memory_gib: float  # each card's memory, as NVML (or --gpus) says
    tensor_parallel_size: int
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    usable_gib: float
    weights_gib: float
    runtime_gib: float
    kv_cache_gib: float  # negative when weights and runtime alone do not fit
    kv_tokens: int

    @property
    def full_length_sequences(self) -> float:
        """How many requests of max_model_len tokens the KV cache holds at once."""
        return self.kv_tokens / self.max_model_len

    @property
    def used_gib(self) -> float:
        return self.weights_gib + self.runtime_gib + max(self.kv_cache_gib, 0.0)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "usable_gib": round(self.usable_gib, 2),
            "weights_gib": round(self.weights_gib, 2),
            "kv_cache_gib": round(self.kv_cache_gib, 2),
            "runtime_gib": round(self.runtime_gib, 2),
            "kv_tokens": self.kv_tokens,
            "full_length_sequences": round(self.full_length_sequences, 2),
            "max_num_batched_tokens": self.max_num_batched_tokens,
        }


def usable_gib(memory_gib: float, utilization: float) -> float:
    return memory_gib * CUDA_VISIBLE * utilization


def default_batched_tokens(memory_gib: float, card_name: str) -> int:
    """vLLM 0.32's default max_num_batched_tokens for its OpenAI server (engine/arg_utils.py)."""
    visible = memory_gib * CUDA_VISIBLE
    if visible >= 160:
        return 16384
    if visible >= 70 and "a100" not in card_name.lower():
        return 8192
    return 2048


def kv_bytes_per_token(model: Model, tensor_parallel_size: int = 1) -> int:
    """On each card: tensor parallelism splits the KV heads (a head is never split; fewer heads are copied)."""
    heads = -(-model.kv_heads // tensor_parallel_size)
    return model.layers * heads * model.head_dim * 2 * model.kv_bytes_per_element


def runtime_gib(model: Model, batched_tokens: int, max_num_seqs: int, tensor_parallel_size: int = 1) -> float:
    forward = batched_tokens * (
        model.hidden_size * ACTIVATION_BYTES_PER_HIDDEN
        + model.intermediate_size / tensor_parallel_size * ACTIVATION_BYTES_PER_INTERMEDIATE
    )
    sampler = max_num_seqs * model.vocab_size * SAMPLER_BYTES_PER_LOGIT
    comm = TP_COMM_GIB if tensor_parallel_size > 1 else 0.0
    return FIXED_RUNTIME_GIB + comm + max(forward, sampler) / GIB + model.extra_runtime_gib


def kv_gib(model: Model, tokens: int, tensor_parallel_size: int = 1) -> float:
    return tokens * kv_bytes_per_token(model, tensor_parallel_size) / GIB


def cpu_kv_tokens(model: Model, kvcache_space_gib: float) -> int:
    """The KV cache of vLLM's CPU build, in tokens: it takes VLLM_CPU_KVCACHE_SPACE GiB as it is (no profiling, no
    utilization share), so the estimate is that space over the bytes per token. Checked against captured vLLM logs
    (tests/plan/test_budget.py)."""
    return int(kvcache_space_gib * GIB // kv_bytes_per_token(model))


def estimate(
    model: Model,
    memory_gib: float,
    *,
    card_name: str = "",
    tensor_parallel_size: int = 1,
    utilization: float = DEFAULT_UTILIZATION,
    max_model_len: int,
    max_num_seqs: int,
) -> Budget:
    usable = usable_gib(memory_gib, utilization)
    weights = model.weights_gib / tensor_parallel_size
    batched = default_batched_tokens(memory_gib, card_name)
    runtime = runtime_gib(model, batched, max_num_seqs, tensor_parallel_size)
    kv = usable - weights - runtime
    per_token = kv_bytes_per_token(model, tensor_parallel_size)
    tokens = max(0, int(kv * GIB // per_token) // KV_BLOCK_TOKENS * KV_BLOCK_TOKENS)
    return Budget(
        model=model.name,
        memory_gib=memory_gib,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=utilization,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=batched,
        usable_gib=usable,
        weights_gib=weights,
        runtime_gib=runtime,
        kv_cache_gib=kv,
        kv_tokens=tokens,
    )
