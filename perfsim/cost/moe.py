"""Fused MoE expert time: grouped GEMMs over the experts on one device, with routing imbalance.

Routing (T tokens, top-k of E experts; this device holds E_l = E / ep, the most loaded first):
  balanced       load_e = T k / E,  hit_e = min(1, T k / E)                (round-robin assignment)
  uniform        load_e = T k / E,  hit_e = 1 - (1 - k / E)^T             (each token picks its k experts
                                                                        independently and uniformly at random:
                                                                        the expected share of experts hit)
  power law a    load_e per draw of bounded-Pareto(a) expert loads on the busiest rank, hit_e = [load_e > 0]
                 (see perfsim.ops.routing_loads); the time is the mean over the draws
Grouped GEMM per projection (up: N = 2I gated or I, K = h; down: N = h, K = I), tiles of Tm x Tn, the
kernel's M tile fitted to the tokens per expert (the smallest power of two >= the mean load of a hit expert,
within [TILE_M_MIN, TILE_M]: small-batch MoE kernels pick small M tiles or swap A and B):
  tiles  = sum_e hit_e * ceil(load_e / hit_e / Tm) * ceil(N / Tn);  t_comp = ceil(tiles / units) * t_tile
  t_tile = 2 Tm Tn K / (P_peak / units * eta) + c_tile / f_clock
  t_mem  = (sum_e hit_e * N * K * w_bytes + activations) / (B * eta_m)
  t_route = (A r + T r_T) h / (B * eta_m),  A = sum_e load_e           (permute in, activation, finalize out
                                                                        per local assignment; routing and the
                                                                        finalize's T output rows per token,
                                                                        whatever the expert parallelism)
  t = t_launch + E_l t_expert + t_route + smax(t_comp_up, t_mem_up) + smax(t_comp_down, t_mem_down)
      (t_expert: each local expert's grouped-GEMM problem setup, whether or not it receives tokens)
"""

from __future__ import annotations

import functools

import numpy as np

from perfsim.cost.gemm import DeviceRoofs, smooth_max
from perfsim.cost.params import MoEParams
from perfsim.ops import _frozen, routing_loads

TILE_M, TILE_N = 128.0, 128.0
TILE_M_MIN = 16.0


def moe_time(tokens, hidden, inter, top_k, experts_total, experts_local, gated, w_bytes, a_bytes, peak,
             roofs: DeviceRoofs, p: MoEParams, distribution: str = "balanced", tile_overhead_s: float = 0.0,
             scanned=None):
    """Seconds per call, vectorised over rows that share (top_k, experts_total, experts_local, distribution);
    the mean over the routing's draws of expert loads (one for balanced routing). `scanned`: tokens the
    routing and permutation passes read (default: `tokens`)."""
    scanned = tokens if scanned is None else scanned
    tokens, hidden, inter, gated, w_bytes, a_bytes, peak, scanned = (
        x[:, None, None] for x in np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float)) for v in
                                                        (tokens, hidden, inter, gated, w_bytes, a_bytes, peak,
                                                         scanned))))
    unique, index = np.unique(tokens[:, 0, 0], return_inverse=True)
    per_count = [_routed(t, top_k, experts_total, experts_local, distribution) for t in unique]
    row_tiles, experts_hit, assignments, tile_m = (np.stack([c[i] for c in per_count])[index.reshape(-1)]
                                                   for i in range(4))
    per_unit = peak / roofs.units * p.compute_efficiency
    total = p.launch_s + p.expert_s * experts_local + (assignments * p.route_bytes + scanned * p.token_bytes) * \
        hidden / (roofs.main_bw * p.memory_efficiency)
    n_up = inter * np.where(gated > 0, 2.0, 1.0)
    for n, k in ((n_up, hidden), (hidden, inter)):
        tiles = row_tiles * np.ceil(n / TILE_N)
        t_comp = np.ceil(tiles / roofs.units) * (2.0 * tile_m * TILE_N * k / per_unit + tile_overhead_s)
        nbytes = experts_hit * n * k * w_bytes + assignments * (n + k) * a_bytes
        total = total + smooth_max(t_comp, nbytes / (roofs.main_bw * p.memory_efficiency), p.overlap)
    return total.mean(axis=(1, 2))


@functools.lru_cache(maxsize=16384)
def _routed(tokens, top_k, experts_total, experts_local, distribution):
    """(M-tile rows, experts hit, assignments, M tile) per routing draw on this device, each shaped (draws, 1)."""
    load = routing_loads(top_k, int(experts_total), int(experts_local), distribution, tokens)
    if distribution.startswith("power_law"):
        hit = (load > 0).astype(float)
    elif distribution == "uniform":  # P(expert hit by at least one of T tokens) = 1 - (1 - k/E)^T
        hit = np.full(load.shape, 1.0 - (1.0 - min(1.0, top_k / experts_total)) ** tokens)
    else:  # round-robin: exactly min(E, T*k) distinct experts
        hit = np.full(load.shape, min(1.0, tokens * top_k / experts_total))
    per_hit = load / np.maximum(hit, 1e-12)
    hits, assigned = hit.sum(axis=1, keepdims=True), load.sum(axis=1, keepdims=True)
    mean_load = assigned / np.maximum(hits, 1e-12)
    tile_m = np.clip(2.0 ** np.ceil(np.log2(np.maximum(mean_load, 1.0))), TILE_M_MIN, TILE_M)
    row_tiles = (hit * np.ceil(per_hit / tile_m)).sum(axis=1, keepdims=True)
    return tuple(_frozen(a) for a in (row_tiles, hits, assigned, tile_m))
