"""Memory footprint per device: weights, KV cache, activations (inference) and training state."""

from __future__ import annotations

from perfsim.dtypes import LOW_PRECISION, activation_dtype, nbytes
from perfsim.model import ModelSpec


def stored_weight_bytes(params: float, unquantized: float, dtype: str) -> float:
    """Bytes of `params` weights stored as `dtype`, of which a quantized format keeps `unquantized` in 16 bits."""
    kept = unquantized if dtype in LOW_PRECISION else 0.0
    return (params - kept) * nbytes(dtype) + kept * nbytes(activation_dtype(dtype))


def weight_bytes(model: ModelSpec, dtype: str = "bf16", tp: int = 1, ep: int = 1,
                 weight_dtype: str | None = None) -> float:
    """Inference weights per device: experts split over ep x tp, everything else over tp (Megatron sharding); a
    quantized model keeps its embeddings, LM head and routers in 16 bits (ModelSpec.unquantized_params), and the
    routed experts are stored as ModelSpec.routed_expert_dtype says."""
    stored = weight_dtype or dtype
    kept = model.unquantized_params() / tp
    if not model.moe:
        return stored_weight_bytes(model.params_total / tp, kept, stored)
    moe = model.moe
    routed = model.num_moe_layers * moe.num_experts * model.mlp_params(moe.expert_intermediate_size, moe.expert_bias)
    experts = model.routed_expert_dtype(dtype, weight_dtype) or stored
    return stored_weight_bytes((model.params_total - routed) / tp, kept, stored) + routed / (ep * tp) * nbytes(experts)


def kv_cache_bytes(model: ModelSpec, batch: int, tokens: int, dtype: str = "bf16", tp: int = 1) -> float:
    """KV cache: batch * sum over layers of min(tokens, window) * elements per token-layer * bytes."""
    per_token = model.kv_cache_elems_per_token_layer()
    if not model.mla:  # KV heads split over TP ranks, replicated when tp exceeds them
        per_token = per_token * max(1, model.kv_heads // tp) / model.kv_heads
    window = model.sliding_window or tokens
    full = model.num_attention_layers - model.sliding_layers
    layer_tokens = model.sliding_layers * min(tokens, window) + full * tokens
    index_keys = model.sparse_attention.key_bytes if model.sparse_attention else 0   # DSA's FP8 index keys
    return batch * layer_tokens * (per_token * nbytes(dtype) + index_keys)


# Delta-rule states in fp32 (SGLang's default mamba_ssm_dtype; Qwen3.5's config asks vLLM for it too), conv
# states in bf16 (sglang/srt/configs/mamba_utils.py)
RECURRENT_STATE_DTYPE = "fp32"
CONV_STATE_DTYPE = "bf16"


def recurrent_state_bytes(model: ModelSpec, batch: int, dtype: str = RECURRENT_STATE_DTYPE, tp: int = 1) -> float:
    """Linear-attention state of `batch` sequences, whatever their length; heads split over TP ranks."""
    state, conv = model.recurrent_state_elems()
    return batch * (state * nbytes(dtype) + conv * nbytes(CONV_STATE_DTYPE)) / tp


def inference_activation_bytes(model: ModelSpec, tokens: int, dtype: str = "bf16", tp: int = 1) -> float:
    """Peak live activations of one forward pass: the widest layer input plus output, double-buffered."""
    widest = max(
        2 * model.hidden_size,
        (model.num_heads + 2 * model.kv_heads) * model.qk_head_dim // tp,
        (2 if model.mlp == "gated" else 1) * model.intermediate_size // tp,
    )
    if model.moe:
        widest = max(widest, model.moe.top_k * (2 if model.mlp == "gated" else 1)
                     * model.moe.expert_intermediate_size // tp)
    la, mb = model.linear_attention, model.mamba
    if la is not None:   # in_proj of a linear-attention layer: q, k, v, z and two gates per head
        widest = max(widest, (2 * la.key_dim + 2 * la.value_dim + 2 * la.num_value_heads) // tp)
    if mb is not None:   # in_proj of a Mamba-2 layer: z, x, B, C and dt
        widest = max(widest, (2 * mb.inner + 2 * mb.n_groups * mb.state_size + mb.num_heads) // tp)
    return 2 * tokens * (model.hidden_size + widest) * nbytes(dtype)


def training_activation_bytes(model: ModelSpec, micro_batch: int, seq: int, tp: int = 1,
                              sequence_parallel: bool = False, recompute: str = "none") -> float:
    """Activations of a GPT layer stack (plain 4h MLP, multi-head attention, unfused softmax), 16-bit,
    as Korthikanti et al. 2022 (Eq. 2-6) give them; perfsim.parallel.memory generalises it (GQA, SwiGLU, MoE).

    Per layer, no recompute: s*b*h*(10 + 24/t + 5*a*s/(h*t)) without SP, s*b*h/t*(34 + 5*a*s/h) with SP.
    Selective recompute drops the 5*a*s/h term (attention scores); full keeps only the 2*s*b*h layer input.
    """
    s, b, h, a, t = seq, micro_batch, model.hidden_size, model.num_heads, tp
    if recompute == "full":
        per_layer = 2 * s * b * h / (t if sequence_parallel else 1)
    elif sequence_parallel:
        per_layer = s * b * h / t * (34 + (0 if recompute == "selective" else 5 * a * s / h))
    else:
        per_layer = s * b * h * (10 + 24 / t + (0 if recompute == "selective" else 5 * a * s / (h * t)))
    return model.num_layers * per_layer
