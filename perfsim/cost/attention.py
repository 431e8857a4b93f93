"""Attention time: FlashAttention-style tiled prefill and KV-cache-bound decode.

Prefill (Dao et al. 2022; Shah et al. 2024, FlashAttention-3): each query block of Bq rows walks its
visible KV tiles of Bk columns (causal: the diagonal and those before it; sliding window: the last w):
  t_iter  = smax_p(4*Bq*Bk*d / (P_peak/units * eta), Bq*Bk / (R_exp/units * eta_exp)) + c_iter / f_clock
            (matmul on tensor cores vs exponentials on the special-function units, overlapped to degree p)
  t_block = iters * t_iter + (c_blk + c_row * rows) / f_clock,  blocks = batch * heads * ceil(q / Bq)
            (tiles are padded for the MMAs; Q loads and O stores cost per valid row, rows = q / ceil(q / Bq))
  t_comp  = max(ceil(blocks / units) * t_block(mean iters), t_block(most iters))     (waves; longest block)
  t_mem   = bytes(Q, K, V, O) / (B * eta_m)
Decode (FlashDecoding; TensorRT-LLM XQA and MMHA kernels): one CTA per (sequence, head, KV split), where the
head is a KV head serving its g = heads / kv_heads query heads on tensor cores (XQA, 1 < g <= g_max) or one
query head on the CUDA cores (MMHA, g = 1 and g > g_max). Long KV is split over several CTAs
(multi-block mode, TensorRT-LLM's rule): m = floor(kv / 512), m = max(1, min(m, round(sqrt(8 m)))), cut to
keep batch * heads_cta * m within 8 waves. Then
  t_mem  = bytes(KV) / (B_level * eta_d * a),  a = min(1, CTAs / units),  CTAs = batch * heads_cta * splits
  t_comp = FLOPs / (P_matrix * eta_xqa)  or  FLOPs / (P_vector * eta_mmha)
  t_chain = ceil(CTAs / units) * ceil(kv / splits / T_kv) * c_tile / f_clock     (each CTA walks its KV tiles in turn)
  t_cta  = (ceil(CTAs / units) - 1) * c / f_clock + ceil(CTAs / units) * c_row * g * d / f_clock,
           c = c_cta + c_dim * d  (XQA)  or  c_mmha, c_row = 0  (MMHA)
and t = t_fixed + max(t_comp, t_mem, t_chain) + t_cta: a CTA's fixed work in each wave after the first (the
first wave's is in t_fixed), and its per-query-row work (Q load and rotation, O store) in every wave.
t_fixed counts kernels: MMHA applies RoPE and appends the new token's K/V itself (one kernel, t_mmha); XQA
runs after a separate QKV-preprocessing kernel (t_xqa + t_pre) except where it applies RoPE itself:
TensorRT-LLM's Hopper XQA (QGMMA, sm90) on an FP8 cache, when the rotary span is a multiple of 16 no wider
than the head (decoderXQAImplJIT). Each KV-cache format has its own kernels and parameters.
Linear recurrences (Gated DeltaNet, Mamba-2; perfsim.ops.LinearRecurrence), no kernel of which is measured yet: the
roofline at the efficiencies fitted for the kernels it resembles,
  chunked    t = K_chunk t_launch + max(FLOPs / (P_matrix * eta_prefill), bytes / (B * eta_m))
  recurrent  t = t_launch + max(FLOPs / P_vector, bytes / (B * eta_d))     (states streamed like a KV cache)
with K_chunk the kernels of one chunked pass.
"""

from __future__ import annotations

import numpy as np

from perfsim.cost.gemm import DeviceRoofs, smooth_max
from perfsim.cost.params import AttentionParams, DecodeParams

BLOCK_Q = 128.0
BLOCK_Q_SHORT = 64.0   # the smallest query tile of a Hopper warpgroup MMA (wgmma M = 64)
BLOCK_K = 128.0
KV_TILE = 64.0  # KV tokens a decode CTA loads per pipeline step
# TensorRT-LLM decoder XQA constants (kernels/decoderMaskedMultiheadAttention/decoderXQAConstants.h):
# cached tokens per multi-block split, and the waves of CTAs the split count is cut to
MIN_HISTORY_PER_BLOCK = 512.0
TARGET_WAVES = 8.0


def kv_block(head_dim):
    """KV tile width: wider heads leave room for fewer keys in shared memory and registers
    (FlashAttention-3 hopper/tile_size.h, sm90 forward: 128 keys up to d = 128, 112 at 192, 80 at 256)."""
    d = np.asarray(head_dim, float)
    return np.where(d <= 128, BLOCK_K, np.where(d <= 192, 112.0, 80.0))


def kv_iterations(q, kv, causal, window, bq, bk=BLOCK_K):
    """(mean, max) KV tiles of bk keys walked per query block of bq rows."""
    q, kv, w = (np.asarray(x, float) for x in (q, kv, window))
    past_tiles = np.floor((kv - q) / bk)
    q_blocks = np.ceil(q / bq)
    causal = np.asarray(causal, bool)
    full = np.ceil(kv / bk)
    mean = np.where(causal, past_tiles + (q_blocks + 1) / 2.0 * (bq / bk), full)
    most = np.where(causal, np.minimum(full, past_tiles + np.ceil(q_blocks * bq / bk)), full)
    cap = np.floor((w + bq - 2) / bk) + 2  # bq + w - 1 keys from an unaligned start touch up to this many tiles
    return np.where(w > 0, np.minimum(mean, cap), mean), np.where(w > 0, np.minimum(most, cap), most)


def prefill_time(batch, q, kv, heads, dqk, dv, bytes_io, window, peak, exp_rate, roofs: DeviceRoofs,
                 p: AttentionParams, causal=True):
    batch, q, kv, heads, dqk, dv, bytes_io, window, peak = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, float)) for x in (batch, q, kv, heads, dqk, dv, bytes_io, window, peak)))
    # short sequences get the smallest query tile; narrow heads a taller one (FlashAttention-3: 192 rows at d <= 64)
    bq = np.where(q <= BLOCK_Q_SHORT, BLOCK_Q_SHORT, np.where(dqk <= 64, 192.0, BLOCK_Q))
    blocks = batch * heads * np.ceil(q / bq)
    per_unit = roofs.units
    bk = kv_block(dqk)
    t_mm = 2.0 * bq * bk * (dqk + dv) / (peak / per_unit * p.prefill_efficiency)
    t_exp = bq * bk / (exp_rate / per_unit * p.exp_efficiency) if exp_rate else np.zeros_like(t_mm)
    t_iter = smooth_max(t_mm, t_exp, p.overlap) + p.iteration_overhead_cycles / roofs.clock_hz
    mean_iters, max_iters = kv_iterations(q, kv, causal, window, bq, bk)
    rows = q / np.ceil(q / bq)
    overhead = (p.block_overhead_cycles + p.row_overhead_cycles * rows * (dqk + dv) / 256.0) / roofs.clock_hz
    # waves of mean-length blocks, but never shorter than the longest (last causal) block
    t_comp = np.maximum(np.ceil(blocks / per_unit) * (mean_iters * t_iter + overhead), max_iters * t_iter + overhead)
    t_mem = bytes_io / (roofs.main_bw * p.memory_efficiency)
    return p.launch_s + np.maximum(t_comp, t_mem)


def linear_attention_time(flops, bytes_io, recurrent, chunk_kernels, peak, vector_peak, roofs: DeviceRoofs,
                          p: AttentionParams, pd: DecodeParams):
    """Seconds of a linear recurrence: the roofline at the prefill (chunked) or decode (recurrent) kernels'
    efficiencies."""
    if recurrent:  # roofline at the decode kernels' streaming efficiency
        return pd.launch_s + max(flops / vector_peak, bytes_io / (roofs.main_bw * pd.memory_efficiency))
    # roofline at the FlashAttention matmul and streaming efficiencies, one launch per kernel
    return chunk_kernels * p.launch_s + max(flops / (peak * p.prefill_efficiency),
                                            bytes_io / (roofs.main_bw * p.memory_efficiency))


def xqa_fuses_rope(architecture: str, kv_format: str, head_dim, rotary_dim) -> np.ndarray:
    """Whether the XQA decode kernel applies RoPE itself (no separate preprocessing kernel): TensorRT-LLM's
    Hopper QGMMA kernel, which serves FP8 KV caches on sm90, for a rotary span of 16k <= head_dim elements."""
    head_dim, rotary_dim = np.broadcast_arrays(np.asarray(head_dim, float), np.asarray(rotary_dim, float))
    if architecture != "sm90" or kv_format != "fp8":
        return np.zeros(head_dim.shape, bool)
    return (rotary_dim > 0) & (rotary_dim <= head_dim) & (rotary_dim % 16 == 0)


def decode_fixed_s(p: DecodeParams, xqa, fused_rope) -> np.ndarray:
    """Launch and first-wave fixed work of the decode kernels: MMHA alone, or XQA after its preprocessing."""
    return np.where(xqa, p.launch_s + np.where(fused_rope, 0.0, p.preprocess_s), p.mha_launch_s)


def uses_xqa(group, p: DecodeParams, tensor_core=None) -> np.ndarray:
    """XQA (tensor cores) for 1 < g <= g_max query heads per KV head, else MMHA; `tensor_core` forces it."""
    group = np.asarray(group, float)
    return (group > 1) & (group <= p.max_group) if tensor_core is None else np.full(group.shape, bool(tensor_core))


def multi_block_count(kv, groups, units):
    """KV splits per (sequence, head) in multi-block decode (TensorRT-LLM computeMultiBlockCount): one per
    512 cached tokens, at most round(sqrt(8 m)), then cut so the grid stays within 8 waves of the SMs."""
    m = np.floor(np.asarray(kv, float) / MIN_HISTORY_PER_BLOCK)
    m = np.maximum(np.minimum(m, np.round(np.sqrt(8.0 * m))), 1.0)
    excess = groups * m / units / TARGET_WAVES
    return np.maximum(np.where(excess > 1.0, np.floor(m / excess), m), 1.0)


def decode_time(batch, kv, kv_heads, group, head_dim, flops, kv_bytes, other_bytes, peak, vector_peak,
                roofs: DeviceRoofs, p: DecodeParams, tensor_core=None, fused_rope=False):
    """Decode attention time; `tensor_core` forces the kernel choice (MLA always runs on tensor cores),
    `fused_rope` (see xqa_fuses_rope) drops the preprocessing kernel before XQA."""
    batch, kv, kv_heads, group, head_dim, flops, kv_bytes, other_bytes, peak, fused_rope = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, float))
          for x in (batch, kv, kv_heads, group, head_dim, flops, kv_bytes, other_bytes, peak, fused_rope)))
    xqa = uses_xqa(group, p, tensor_core)
    groups = batch * np.where(xqa, kv_heads, kv_heads * group)
    splits = multi_block_count(kv, groups, roofs.units)
    ctas = groups * splits
    active = np.minimum(1.0, ctas / roofs.units)
    waves = np.ceil(ctas / roofs.units)
    per_cta = np.where(xqa, p.cta_overhead_cycles + p.cta_dim_cycles * head_dim, p.mha_cta_overhead_cycles)
    per_row = np.where(xqa, p.cta_row_cycles * group * head_dim, 0.0)
    t_cta = ((waves - 1.0) * per_cta + waves * per_row) / roofs.clock_hz
    resident = kv_bytes + other_bytes <= roofs.llc_bytes
    bw = np.where(resident, roofs.llc_bw, roofs.main_bw)
    t_mem = (kv_bytes + other_bytes) / (bw * p.memory_efficiency * active)
    t_comp = flops / np.where(xqa, peak * p.compute_efficiency, vector_peak * p.mha_efficiency)
    # each CTA walks its share of the KV in tiles, one after another (a latency chain)
    t_chain = waves * np.ceil(kv / splits / KV_TILE) * p.tile_cycles / roofs.clock_hz
    return decode_fixed_s(p, xqa, fused_rope > 0) + np.maximum(np.maximum(t_comp, t_mem), t_chain) + t_cta
