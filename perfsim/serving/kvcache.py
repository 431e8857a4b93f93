"""Paged KV cache capacity of an engine and the KV transfer of prefill/decode disaggregation.

Capacity (vLLM's PagedAttention, Kwon et al. 2023): each GPU keeps a fraction `gpu_memory_utilization`
of its memory for the server; what the weights and the activations of the largest step leave is cut
into blocks of `block_size` tokens of every layer's K and V on that GPU:

  free      = util * M_gpu - W_gpu - A(max tokens per step)
            = f * (M_gpu - W_gpu - A)      with a free fraction f instead (TensorRT-LLM's
                                           KvCacheConfig.free_gpu_memory_fraction: a share of what is left)
  blocks    = floor(free / (block_size * kv_bytes_per_token_gpu))      per attention-DP rank
  engine    = blocks * attn_dp                                         (pp cancels: each GPU holds 1/pp of
                                                                        the layers and of pp engines' tokens)

Sliding-window layers are charged their full context (an upper bound on the memory they need). Linear-attention
layers hold a fixed state per sequence instead, which moves with the KV in a disaggregated transfer. It is
reserved up front for the engine's max_num_seqs sequences (SGLang's mamba state pool), or, for an engine that
allocates states from the KV pool as it admits each sequence (vLLM), charged to the sequence in blocks:
state_blocks = ceil(state_bytes / (block_size * kv_bytes_per_token)).

Transfer (Splitwise, DistServe): when a prompt's prefill ends, its KV moves to a decode engine. Each
decode rank receives its shard (its KV heads; MLA's latent cache whole) over its own link, all ranks in
parallel: t = latency + bytes_rank / bandwidth, over NVLink when a prefill and a decode instance fit in
one NVLink domain of the same system, else over the GPUs' NICs (the slower one in a mixed fleet). The serving
framework's fixed handoff per request comes on top (perfsim.serving.latency).
"""

from __future__ import annotations

import math

from perfsim.cost.memory import inference_activation_bytes, kv_cache_bytes, recurrent_state_bytes
from perfsim.errors import InvalidInputError
from perfsim.serving.steptime import Deployment


def kv_bytes_per_token(dep: Deployment) -> float:
    """KV cache bytes per token of context on one GPU rank, all layers (before the pp split)."""
    return kv_cache_bytes(dep.model, 1, 1, dep.kv_dtype_eff, dep.tp)


def state_bytes_per_seq(dep: Deployment) -> float:
    """Linear-attention state of one sequence on one GPU rank (0 for a model without such layers)."""
    return recurrent_state_bytes(dep.model, 1, dep.state_dtype, dep.tp) / dep.pp


def capacity_blocks(dep: Deployment, block_size: int = 16, gpu_memory_utilization: float = 0.9,
                    max_tokens_per_step: int = 8192, max_seqs: int = 256,
                    kv_free_fraction: float | None = None, states_in_pool: bool = False) -> dict:
    """KV blocks of one engine (running up to max_seqs sequences) and the memory budget behind the number;
    states_in_pool: recurrent states come out of the blocks per admitted sequence (state_blocks_per_seq) rather
    than being reserved for max_seqs up front."""
    if block_size < 1:
        raise InvalidInputError(f"block-size: must be >= 1, got {block_size!r}")
    if not 0 < gpu_memory_utilization <= 1:
        raise InvalidInputError(f"gpu-memory-utilization: must be in (0, 1], got {gpu_memory_utilization!r}")
    if kv_free_fraction is not None and not 0 < kv_free_fraction <= 1:
        raise InvalidInputError(f"kv-free-fraction: must be in (0, 1], got {kv_free_fraction!r}")
    device = dep.device
    budget = (gpu_memory_utilization if kv_free_fraction is None else 1.0) * device.memory_bytes
    weights = dep.weight_bytes_per_gpu()
    rank_tokens = max(1, math.ceil(max_tokens_per_step / dep.attn_dp))
    acts = inference_activation_bytes(dep.model, rank_tokens, dep.act_dtype, dep.tp)
    per_token = kv_bytes_per_token(dep)
    in_pool = states_in_pool and per_token > 0
    state = state_bytes_per_seq(dep)
    states = 0.0 if in_pool else state * math.ceil(max_seqs / dep.attn_dp)
    free = budget - weights - acts - states
    if kv_free_fraction is not None:
        free *= kv_free_fraction
    blocks_rank = int(free // (block_size * per_token)) if free > 0 else 0
    blocks = blocks_rank * dep.attn_dp
    return {"blocks": blocks, "block_size": block_size, "tokens": blocks * block_size,
            "memory_budget_bytes": budget, "weights_bytes": weights, "activation_bytes": acts, "state_bytes": states,
            "kv_bytes": max(0.0, free), "kv_bytes_per_token": per_token,
            "state_blocks_per_seq": math.ceil(state / (block_size * per_token)) if in_pool else 0}


def check_fits(dep: Deployment, cap: dict, longest: int, flag_hint: str = "num-gpus") -> None:
    """One request of `longest` tokens must fit in one engine's KV cache."""
    if cap["blocks"] <= 0:
        gib = 2.0**30
        raise InvalidInputError(
            f"{flag_hint}: {dep.model.name} {dep.label()} leaves no memory for the KV cache on {dep.device.name} "
            f"(weights {cap['weights_bytes'] / gib:.1f} GiB + activations {cap['activation_bytes'] / gib:.1f} GiB "
            + (f"+ recurrent states {cap['state_bytes'] / gib:.1f} GiB " if cap.get("state_bytes") else "")
            + f"per GPU of a {cap['memory_budget_bytes'] / gib:.1f} GiB budget); use more GPUs per replica (--tp, "
            f"--pp) or a smaller --dtype")
    need = math.ceil(longest / cap["block_size"]) + cap.get("state_blocks_per_seq", 0)
    if need > cap["blocks"]:
        raise InvalidInputError(f"isl: a request of {longest} tokens (input + output) needs {need} KV blocks but "
                                f"an engine holds {cap['blocks']}; shorten --isl/--osl or use more GPUs per replica")


def transfer_link(prefill: Deployment, decode: Deployment):
    """The link a KV transfer crosses: NVLink when one prefill and one decode instance share a domain."""
    sysm = decode.system or prefill.system
    if sysm is None:
        return None
    same_system = getattr(prefill.hardware, "name", None) == getattr(decode.hardware, "name", None)
    if same_system and prefill.gpus + decode.gpus <= sysm.devices_per_node:
        return sysm.intra_link
    nics = [s.nic for s in (prefill.system, decode.system) if s is not None and s.nic is not None]
    if nics:  # across nodes (or between two kinds of system): the slower NIC
        return min(nics, key=lambda link: link.bandwidth)
    return sysm.intra_link


def transfer_time(prefill: Deployment, decode: Deployment, tokens: int) -> float:
    """Seconds to move one sequence's KV (tokens of context) from a prefill to a decode instance."""
    link = transfer_link(prefill, decode)
    if link is None:
        return 0.0
    per_rank = kv_cache_bytes(decode.model, 1, tokens, decode.kv_dtype_eff, decode.tp) / decode.pp \
        + state_bytes_per_seq(decode)
    return link.latency + per_rank / link.bandwidth
