"""Fused MoE expert time: grouped GEMMs over the experts on one device, with routing imbalance.

Tokens per expert n_e: balanced, T*k/E each; power law with exponent alpha, n_e proportional to
rank^-alpha (Zipf), normalised to T*k assignments and capped at T (a token picks an expert once).
Grouped GEMM (up then down projection) over experts with n_e > 0:
  tiles = sum_e ceil(n_e/Tm) * (ceil(N_up/Tn) + ceil(h/Tn));  t_comp = ceil(tiles/units) * t_tile
  t_mem = (touched experts' weights + activations) / (B * eta_m)
  t = t_launch + max(t_comp, t_mem)
"""

from __future__ import annotations

import numpy as np

from perfsim.cost.gemm import DeviceRoofs
from perfsim.cost.params import MoEParams

TILE_M, TILE_N = 128.0, 128.0


def tokens_per_expert(tokens: float, top_k: int, experts_total: int, experts_local: int,
                      distribution: str = "balanced") -> np.ndarray:
    """Expected assignments for each of this device's experts (the first `experts_local` by load)."""
    assignments = tokens * top_k
    if distribution.startswith("power_law"):
        alpha = float(distribution.rsplit("_", 1)[-1])
        weights = np.arange(1, experts_total + 1, dtype=float) ** -alpha
        load = np.minimum(assignments * weights / weights.sum(), tokens)
    else:
        load = np.full(experts_total, assignments / experts_total)
    return load[:experts_local]


def moe_time(tokens, hidden, inter, top_k, experts_total, experts_local, gated, w_bytes, a_bytes, peak,
             roofs: DeviceRoofs, p: MoEParams, distribution="balanced", tile_overhead_s=0.0) -> float:
    load = tokens_per_expert(tokens, top_k, experts_total, experts_local, distribution)
    hit = load > 0
    if tokens < experts_total:  # few tokens: expected distinct experts hit, E * (1 - (1 - k/E)^T)
        frac = 1.0 - (1.0 - top_k / experts_total) ** tokens
        n_hit = max(1.0, experts_local * frac)
        load = np.full(int(np.ceil(n_hit)), tokens * top_k * experts_local / experts_total / n_hit)
        hit = load > 0
    n_up = inter * (2 if gated else 1)
    rows = np.ceil(np.maximum(load[hit], 1.0) / TILE_M)
    tiles = rows.sum() * (np.ceil(n_up / TILE_N) + np.ceil(hidden / TILE_N))
    per_sm = peak / roofs.units * p.compute_efficiency
    # each tile: Tm x Tn x K MACs, K = hidden for the up projection and inter for the down projection
    k_mean = (np.ceil(n_up / TILE_N) * hidden + np.ceil(hidden / TILE_N) * inter) / (
        np.ceil(n_up / TILE_N) + np.ceil(hidden / TILE_N))
    t_tile = 2.0 * TILE_M * TILE_N * k_mean / per_sm + tile_overhead_s
    t_comp = np.ceil(tiles / roofs.units) * t_tile
    weights = hit.sum() * (n_up + inter) * hidden * w_bytes
    acts = load.sum() * hidden * a_bytes * 2 + load.sum() * n_up * a_bytes * 2
    t_mem = (weights + acts) / (roofs.main_bw * p.memory_efficiency)
    return float(p.launch_s + max(t_comp, t_mem))
