"""GEMM time on a GPU-like device: tiles, waves, split-K, and a hierarchical memory roof.

For each candidate tile (Tm x Tn) and split-K factor s (what a cuBLAS/CUTLASS heuristic picks from):
  tiles    = ceil(m/Tm) * ceil(n/Tn);  CTAs = tiles * s;  waves = ceil(CTAs / units)   (wave quantization)
  t_tile   = max(2*Tm*Tn*ceil(k/s) / (P_peak/units * eta_c),                         (MACs, or
                 ceil(ceil(k/s) / 64) * L_step / f_clock) + c_tile / f_clock          serial k-step latency) + fixed
  t_comp   = waves * t_tile
  t_mem    = max(bytes_main / (B_main * eta_m * a), bytes_llc / (B_llc * eta_l2 * a)),
             bytes_main: weights, plus activations that do not fit the LLC; bytes_llc: resident activations
             and split-K partial sums (operand re-reads inside a wave are shared via L2/multicast)
             a = min(1, min(CTAs, units) / (units * sat))                               (too few CTAs to saturate)
  stream-K: t_comp = max(1, tiles/units) * t_work + 2 c_tile / f_clock                 (no wave quantization)
  t        = t_launch + (t_comp^p + t_mem^p)^(1/p) + [s > 1] t_split                   (smooth max, p >= 1;
             t_split: split-K's reduction pass over the partial tiles)
and the fastest candidate wins. Every term is >= its roofline counterpart, so t >= roofline.
Inputs are numpy arrays (one row per GEMM) so that fitting and validation run vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perfsim.cost.params import GemmParams
from perfsim.hardware import Device

TILES = np.array([(256, 128), (128, 256), (128, 128), (128, 64), (64, 128), (64, 64)], dtype=float)
# CPU BLAS blocks for registers and caches rather than for warps: much smaller tiles per core
CPU_TILES = np.array([(128, 128), (64, 64), (32, 32), (16, 16), (8, 8)], dtype=float)
SPLITS = np.array([1, 2, 4, 8, 16], dtype=float)
K_STEP = 64.0  # k per mainloop step (one pipeline stage of a bf16 tile)
PARTIAL_BYTES = 4.0  # split-K partial sums are accumulated in fp32


@dataclass(frozen=True)
class DeviceRoofs:
    """The numbers of a device the efficiency models use."""
    units: float
    clock_hz: float
    main_bw: float
    llc_bw: float
    llc_bytes: float
    tiles: np.ndarray = field(default_factory=lambda: TILES)

    @classmethod
    def of(cls, device: Device) -> DeviceRoofs:
        llc = device.last_level_cache
        return cls(units=float(device.compute.units), clock_hz=device.compute.clock,
                   main_bw=device.memory_bw_Bps, llc_bw=llc.bandwidth if llc else device.memory_bw_Bps,
                   llc_bytes=llc.capacity if llc else 0.0, tiles=CPU_TILES if device.kind == "cpu" else TILES)


def smooth_max(a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    """(a^p + b^p)^(1/p): max(a, b) when p is large, a + b when p = 1; never below max(a, b)."""
    hi = np.maximum(a, b)
    safe = np.where(hi > 0, hi, 1.0)
    return np.where(hi > 0, safe * ((a / safe) ** p + (b / safe) ** p) ** (1.0 / p), 0.0)


def gemm_time(m, n, k, batch, a_bytes, w_bytes, o_bytes, peak, roofs: DeviceRoofs, p: GemmParams):
    """Predicted seconds per GEMM row; arguments broadcast as numpy arrays."""
    m, n, k, batch, a_bytes, w_bytes, o_bytes, peak = (
        x[:, None, None] for x in np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in
                                                        (m, n, k, batch, a_bytes, w_bytes, o_bytes, peak))))
    eff = p.compute_efficiency
    tm, tn = roofs.tiles[None, :, 0, None], roofs.tiles[None, :, 1, None]
    s = SPLITS[None, None, :]
    s = np.minimum(s, np.maximum(1.0, np.floor(k / 128.0)))  # at least 128 of k per split
    tiles = np.ceil(m / tm) * np.ceil(n / tn) * batch
    ctas = tiles * s
    waves = np.ceil(ctas / roofs.units)
    # a CTA's mainloop is bound by its MACs or by the latency of its serial k steps (Little's law)
    t_macs = 2.0 * tm * tn * np.ceil(k / s) / (peak / roofs.units * eff)
    t_steps = np.ceil(np.ceil(k / s) / K_STEP) * p.k_step_cycles / roofs.clock_hz
    t_tile = np.maximum(t_macs, t_steps) + p.tile_overhead_cycles / roofs.clock_hz
    t_comp = waves * t_tile
    # stream-K (persistent CTAs share the last partial wave along k): fractional waves plus one fix-up tile
    stream_k = np.maximum(1.0, tiles / roofs.units) * (t_tile - p.tile_overhead_cycles / roofs.clock_hz) \
        + 2.0 * p.tile_overhead_cycles / roofs.clock_hz
    t_comp = np.where(s == 1, np.minimum(t_comp, stream_k), t_comp)

    act = batch * (m * k * a_bytes + m * n * o_bytes)
    weights = batch * k * n * w_bytes
    resident = act <= roofs.llc_bytes
    main_bytes = weights + np.where(resident, 0.0, act)
    partials = np.where(s > 1, 2.0 * batch * m * n * PARTIAL_BYTES * s, 0.0)
    llc_bytes = np.where(resident, act, 0.0) + partials
    active = np.minimum(1.0, np.minimum(ctas, roofs.units) / (roofs.units * p.bandwidth_saturation))
    t_mem = np.maximum(main_bytes / (roofs.main_bw * p.memory_efficiency * active),
                       llc_bytes / (roofs.llc_bw * p.l2_efficiency * active))
    t = p.launch_s + smooth_max(t_comp, t_mem, p.overlap) + np.where(s > 1, p.split_k_s, 0.0)
    return t.reshape(t.shape[0], -1).min(axis=1)
