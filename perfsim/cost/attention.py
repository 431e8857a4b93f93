"""Attention time: FlashAttention-style tiled prefill and KV-cache-bound decode.

Prefill (Dao et al. 2022; Shah et al. 2024, FlashAttention-3): each query block of Bq rows walks its
visible KV tiles of Bk columns (causal: the diagonal and those before it; sliding window: the last w):
  t_iter  = smax_p(4*Bq*Bk*d / (P_peak/units * eta), Bq*Bk / (R_exp/units * eta_exp)) + c_iter / f_clock
            (matmul on tensor cores vs exponentials on the special-function units, overlapped to degree p)
  t_block = iters * t_iter + c_blk / f_clock,  blocks = batch * heads * ceil(q / Bq)   (tiles are padded)
  t_comp  = max(ceil(blocks / units) * t_block(mean iters), t_block(most iters))     (waves; longest block)
  t_mem   = bytes(Q, K, V, O) / (B * eta_m)
Decode (FlashDecoding): one CTA per (sequence, KV head, KV split); the KV is split only to fill idle units
(multi-block mode): splits = clip(ceil(units / (batch * kv_heads)), 1, ceil(kv / min_split)). Reading the
KV cache dominates,
  t_mem  = bytes(KV) / (B_level * eta_d * a),  a = min(1, CTAs / units), CTAs = batch * kv_heads * splits
  t_comp = FLOPs / (P_peak * eta)
  t_cta  = ceil(CTAs / units) * c_cta / f_clock                     (fixed work per CTA, in waves)
and t = t_launch + max(t_comp, t_mem) + t_cta.
"""

from __future__ import annotations

import numpy as np

from perfsim.cost.gemm import DeviceRoofs, smooth_max
from perfsim.cost.params import AttentionParams

BLOCK_Q = 128.0
BLOCK_Q_SHORT = 64.0   # the smallest query tile of a Hopper warpgroup MMA (wgmma M = 64)
BLOCK_K = 128.0


def kv_iterations(q, kv, causal, window, bq):
    """(mean, max) KV tiles of BLOCK_K keys walked per query block of bq rows."""
    q, kv, w = (np.asarray(x, float) for x in (q, kv, window))
    past_tiles = np.floor((kv - q) / BLOCK_K)
    q_blocks = np.ceil(q / bq)
    causal = np.asarray(causal, bool)
    full = np.ceil(kv / BLOCK_K)
    mean = np.where(causal, past_tiles + (q_blocks + 1) / 2.0 * (bq / BLOCK_K), full)
    most = np.where(causal, np.minimum(full, past_tiles + np.ceil(q_blocks * bq / BLOCK_K)), full)
    cap = np.ceil(w / BLOCK_K) + 1
    return np.where(w > 0, np.minimum(mean, cap), mean), np.where(w > 0, np.minimum(most, cap), most)


def prefill_time(batch, q, kv, heads, dqk, dv, bytes_io, window, peak, exp_rate, roofs: DeviceRoofs,
                 p: AttentionParams, causal=True):
    batch, q, kv, heads, dqk, dv, bytes_io, window, peak = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, float)) for x in (batch, q, kv, heads, dqk, dv, bytes_io, window, peak)))
    bq = np.where(q <= BLOCK_Q_SHORT, BLOCK_Q_SHORT, BLOCK_Q)  # short sequences get the smaller query tile
    blocks = batch * heads * np.ceil(q / bq)
    per_unit = roofs.units
    t_mm = 2.0 * bq * BLOCK_K * (dqk + dv) / (peak / per_unit * p.prefill_efficiency)
    t_exp = bq * BLOCK_K / (exp_rate / per_unit * p.exp_efficiency) if exp_rate else np.zeros_like(t_mm)
    t_iter = smooth_max(t_mm, t_exp, p.overlap) + p.iteration_overhead_cycles / roofs.clock_hz
    mean_iters, max_iters = kv_iterations(q, kv, causal, window, bq)
    overhead = p.block_overhead_cycles / roofs.clock_hz
    # waves of mean-length blocks, but never shorter than the longest (last causal) block
    t_comp = np.maximum(np.ceil(blocks / per_unit) * (mean_iters * t_iter + overhead), max_iters * t_iter + overhead)
    t_mem = bytes_io / (roofs.main_bw * p.decode_memory_efficiency)
    return p.launch_s + np.maximum(t_comp, t_mem)


def decode_time(batch, kv, kv_heads, flops, kv_bytes, other_bytes, peak, roofs: DeviceRoofs, p: AttentionParams):
    batch, kv, kv_heads, flops, kv_bytes, other_bytes, peak = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, float)) for x in (batch, kv, kv_heads, flops, kv_bytes, other_bytes, peak)))
    groups = batch * kv_heads
    splits = np.clip(np.ceil(roofs.units / groups), 1.0, np.ceil(kv / p.decode_split_tokens))
    ctas = groups * splits
    active = np.minimum(1.0, ctas / roofs.units)
    t_cta = np.ceil(ctas / roofs.units) * p.decode_cta_overhead_cycles / roofs.clock_hz
    resident = kv_bytes + other_bytes <= roofs.llc_bytes
    bw = np.where(resident, roofs.llc_bw, roofs.main_bw)
    t_mem = (kv_bytes + other_bytes) / (bw * p.decode_memory_efficiency * active)
    t_comp = flops / (peak * p.prefill_efficiency)
    return p.launch_s + np.maximum(t_comp, t_mem) + t_cta
