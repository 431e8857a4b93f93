"""Attention time: FlashAttention-style tiled prefill and KV-cache-bound decode.

Prefill (Dao et al. 2022, I/O-aware tiling): the (batch x heads x ceil(q/Bq)) query blocks are spread
over the compute units; each block streams its visible keys:
  t_comp = ceil(blocks / units) * (2 * Bq * kv_vis * (d_qk + d_v) / (P_peak/units * eta) + c_blk / f_clock)
  t_mem  = bytes(Q, K, V, O) / (B * eta_m)
Decode (FlashDecoding): reading the KV cache dominates,
  t_mem  = bytes(KV) / (B_main * eta_d * a),  a = min(1, CTAs / units), CTAs = batch * kv_heads * ceil(kv/256)
  t_comp = FLOPs / (P_peak * eta)
and t = t_launch + max(t_comp, t_mem).
"""

from __future__ import annotations

import numpy as np

from perfsim.cost.gemm import DeviceRoofs
from perfsim.cost.params import AttentionParams

BLOCK_Q = 128.0
SPLIT_KV = 256.0


def visible_keys(q, kv, causal, window):
    """Mean keys seen per query: causal queries see the cached prefix plus earlier new tokens, clipped to the window."""
    q, kv = np.asarray(q, float), np.asarray(kv, float)
    past = kv - q
    mean_causal = past + (q + 1) / 2.0
    vis = np.where(np.asarray(causal, bool), mean_causal, kv)
    w = np.asarray(window, float)
    return np.where(w > 0, np.minimum(vis, w), vis)


def prefill_time(batch, q, kv, heads, dqk, dv, bytes_io, window, peak, roofs: DeviceRoofs, p: AttentionParams,
                 causal=True):
    batch, q, kv, heads, dqk, dv, bytes_io, window, peak = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, float)) for x in (batch, q, kv, heads, dqk, dv, bytes_io, window, peak)))
    vis = visible_keys(q, kv, causal, window)
    blocks = batch * heads * np.ceil(q / BLOCK_Q)
    rows = np.minimum(q, BLOCK_Q)
    t_block = 2.0 * rows * vis * (dqk + dv) / (peak / roofs.units * p.prefill_efficiency) \
        + p.block_overhead_cycles / roofs.clock_hz
    t_comp = np.ceil(blocks / roofs.units) * t_block
    t_mem = bytes_io / (roofs.main_bw * p.decode_memory_efficiency)
    return p.launch_s + np.maximum(t_comp, t_mem)


def decode_time(batch, kv, kv_heads, flops, kv_bytes, other_bytes, peak, roofs: DeviceRoofs, p: AttentionParams):
    batch, kv, kv_heads, flops, kv_bytes, other_bytes, peak = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, float)) for x in (batch, kv, kv_heads, flops, kv_bytes, other_bytes, peak)))
    ctas = batch * kv_heads * np.ceil(kv / SPLIT_KV)
    active = np.minimum(1.0, ctas / roofs.units)
    resident = kv_bytes + other_bytes <= roofs.llc_bytes
    bw = np.where(resident, roofs.llc_bw, roofs.main_bw)
    t_mem = (kv_bytes + other_bytes) / (bw * p.decode_memory_efficiency * active)
    t_comp = flops / (peak * p.prefill_efficiency)
    return p.launch_s + np.maximum(t_comp, t_mem)
