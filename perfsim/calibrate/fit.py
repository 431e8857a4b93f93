"""Fit efficiency parameters to measured rows: least squares on log(predicted / measured).

Each op family frees only the parameters that its model uses, each within its physical range.
The log-ratio residual weighs a 10% miss on a 5 us kernel like one on a 5 ms kernel; a soft-L1 loss
keeps a few noisy rows (timer resolution, outliers) from steering the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from perfsim.calibrate.comm_rows import comm_free
from perfsim.calibrate.rows import ELEMENTWISE_KIND, predict_rows
from perfsim.cost.params import CostParams
from perfsim.dtypes import FP8_RECIPES
from perfsim.hardware import Device

PRIOR_WEIGHT = 0.3  # per parameter, against the data's one residual per row


@dataclass(frozen=True)
class Free:
    """A fitted parameter: dotted path into CostParams, bounds, and the scale it is optimised in."""
    path: str
    lo: float
    hi: float
    scale: float = 1.0


def _gemm_free(fmt: str) -> list[Free]:
    g = f"gemm.{fmt}"
    return [Free(f"{g}.compute_efficiency", 0.05, 1.0), Free(f"{g}.memory_efficiency", 0.05, 1.0),
            Free(f"{g}.l2_efficiency", 0.05, 1.0), Free(f"{g}.tile_overhead_cycles", 0.0, 20000.0, 1000.0),
            Free(f"{g}.k_step_cycles", 0.0, 2000.0, 100.0), Free(f"{g}.split_k_s", 0.0, 20e-6, 1e-6),
            Free(f"{g}.bandwidth_saturation", 0.05, 1.0), Free(f"{g}.overlap", 1.0, 64.0, 10.0),
            Free(f"{g}.launch_s", 0.0, 50e-6, 1e-6)]


# One device-wide streaming efficiency for the elementwise kernels fitted together: the share of DRAM bandwidth
# a streaming kernel reaches is a property of the memory system; what differs between kernels is their issue
# cost per element (and how it overlaps the memory stream). A per-kernel efficiency cannot be told apart from
# issue cost on one GPU, and the wrong split does not carry over to GPUs with other bytes per cycle.
SHARED_STREAMING = "elementwise.memory_efficiency"


def _elementwise_free(kinds, shared: bool = True) -> list[Free]:
    """`shared`: the kinds' memory efficiency is the one device-wide SHARED_STREAMING parameter."""
    streaming = [Free(SHARED_STREAMING, 0.02, 1.0)] if shared and kinds else []
    return streaming + [f for k in kinds for f in (
                                       *(() if shared else (Free(f"elementwise.{k}.memory_efficiency", 0.02, 1.0),)),
                                       Free(f"elementwise.{k}.cache_hit", 0.0, 1.0),
                                       Free(f"elementwise.{k}.cycles_per_element", 0.0, 64.0),
                                       Free(f"elementwise.{k}.overlap", 1.0, 64.0, 10.0),
                                       Free(f"elementwise.{k}.launch_s", 0.0, 50e-6, 1e-6))]


FREE_BY_FAMILY = {
    "context_attention": [Free("attention.prefill_efficiency", 0.05, 1.0), Free("attention.exp_efficiency", 0.05, 1.0),
                          Free("attention.overlap", 1.0, 64.0, 10.0),
                          Free("attention.iteration_overhead_cycles", 0.0, 5000.0, 100.0),
                          Free("attention.block_overhead_cycles", 0.0, 50000.0, 1000.0),
                          Free("attention.row_overhead_cycles", 0.0, 2000.0, 100.0),
                          Free("attention.launch_s", 0.0, 100e-6, 1e-6)],
}


def _decode_free(fmt: str) -> list[Free]:
    g = f"decode.{fmt}"
    return [Free(f"{g}.memory_efficiency", 0.05, 1.0), Free(f"{g}.tile_cycles", 0.0, 5000.0, 100.0),
            Free(f"{g}.cta_overhead_cycles", 0.0, 50000.0, 1000.0), Free(f"{g}.cta_dim_cycles", 0.0, 200.0, 10.0),
            Free(f"{g}.cta_row_cycles", 0.0, 20.0), Free(f"{g}.mha_cta_overhead_cycles", 0.0, 50000.0, 1000.0),
            Free(f"{g}.mha_efficiency", 0.005, 1.0), Free(f"{g}.launch_s", 0.0, 100e-6, 1e-6),
            Free(f"{g}.preprocess_s", 0.0, 50e-6, 1e-6), Free(f"{g}.mha_launch_s", 0.0, 100e-6, 1e-6)]


def _moe_free(fmt: str) -> list[Free]:
    g = f"moe.{fmt}"
    return [Free(f"{g}.compute_efficiency", 0.05, 1.0), Free(f"{g}.memory_efficiency", 0.05, 1.0),
            Free(f"{g}.overlap", 1.0, 64.0, 10.0), Free(f"{g}.route_bytes", 0.0, 64.0),
            Free(f"{g}.token_bytes", 0.0, 64.0), Free(f"{g}.launch_s", 0.0, 300e-6, 1e-6),
            Free(f"{g}.expert_s", 0.0, 5e-6, 1e-6)]


def free_parameters(family: str, df: pd.DataFrame) -> list[Free]:
    """The parameters that rows of `family` in `df` depend on."""
    if family == "collective":
        return comm_free(df)
    if family == "moe":
        return [f for fmt in sorted(df.dtype.unique()) for f in _moe_free(fmt)]
    if family in ("generation_attention", "generation_mla"):
        return [f for fmt in sorted(df.kv_dtype.fillna("bf16").unique()) for f in _decode_free(fmt)]
    if family in FREE_BY_FAMILY:
        return FREE_BY_FAMILY[family]
    if family == "context_mla":
        return FREE_BY_FAMILY["context_attention"]
    gemms = [f for fmt in sorted(df.dtype.unique()) for f in _gemm_free(fmt)]
    kinds = sorted(set(df.op.map(ELEMENTWISE_KIND).dropna())) if "op" in df else []
    if family == "gemm":
        # the fp8 linear's input quantization is timed only inside the GEMM: its kernel keeps its own efficiency
        return gemms + (_elementwise_free(["quantize"], shared=False) if set(df.dtype) & set(FP8_RECIPES) else [])
    if family == "layer_ops":
        return gemms + _elementwise_free(kinds)
    return _elementwise_free(kinds)


def get(params: CostParams, path: str) -> float:
    parts = path.split(".")
    if parts[0] == "gemm":  # unfitted formats start from the bf16 (or default) kernel family
        return float(getattr(params.gemm_for(parts[1]), parts[2]))
    if path == SHARED_STREAMING:
        return float(params.elementwise_for("default").memory_efficiency)
    if parts[0] == "elementwise":
        return float(getattr(params.elementwise_for(parts[1]), parts[2]))
    if parts[0] == "moe":
        return float(getattr(params.moe_for(parts[1]), parts[2]))
    if parts[0] == "decode":
        return float(getattr(params.decode_for(parts[1]), parts[2]))
    node = params.model_dump()
    for part in parts:
        node = node[part]
    return float(node)


def with_values(params: CostParams, free: list[Free], values) -> CostParams:
    data = params.model_dump()
    for f in free:
        parts = f.path.split(".")
        if f.path == SHARED_STREAMING:
            continue
        if parts[0] == "gemm" and parts[1] not in data["gemm"]:
            data["gemm"][parts[1]] = params.gemm_for(parts[1]).model_dump()
        if parts[0] == "moe" and parts[1] not in data["moe"]:
            data["moe"][parts[1]] = params.moe_for(parts[1]).model_dump()
        if parts[0] == "decode" and parts[1] not in data["decode"]:
            data["decode"][parts[1]] = params.decode_for(parts[1]).model_dump()
        if parts[0] == "elementwise" and parts[1] not in data["elementwise"]:
            data["elementwise"][parts[1]] = params.elementwise_for(parts[1]).model_dump()
    for f, v in zip(free, values, strict=True):
        for path in _targets(f.path, free):
            node = data
            parts = path.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = float(v)
    return CostParams.model_validate(data)


def _targets(path: str, free: list[Free]) -> list[str]:
    """The parameter paths a fitted value is written to: SHARED_STREAMING goes to every elementwise kind
    in `free` that has no memory efficiency of its own."""
    if path != SHARED_STREAMING:
        return [path]
    paths = [f.path.split(".") for f in free if f.path.startswith("elementwise.") and f.path != SHARED_STREAMING]
    own = {p[1] for p in paths if p[2] == "memory_efficiency"}
    return [f"elementwise.{k}.memory_efficiency" for k in sorted({p[1] for p in paths} - own)]


def fit(df: pd.DataFrame, family: str, device: Device, start: CostParams | None = None,
        max_rows: int = 6000, seed: int = 0) -> CostParams:
    """Parameters that best explain `df` (rows of one family measured on `device`)."""
    return fit_many([(df, family)], device, start, max_rows, seed)


def fit_many(tables: list[tuple[pd.DataFrame, str]], device: Device, start: CostParams | None = None,
             max_rows: int = 6000, seed: int = 0) -> CostParams:
    """Fit several tables (each a frame and its family) measured on one device. Tables that share a
    parameter are fitted together in one least-squares problem; independent groups separately (faster)."""
    params = start or CostParams()
    pieces = []  # split rows by the parameters they depend on: GEMM/MoE format, elementwise kind
    for df, family in tables:
        if family == "layer_ops":
            gemm = df.op_kind == "gemm"
            pieces += _split(df[gemm], "gemm") + _split(df[~gemm], "elementwise")
        else:
            pieces += _split(df, family)
    for group in _coupled(pieces):
        params = _fit_group(group, device, params, max_rows, seed)
    return params


def _split(df: pd.DataFrame, family: str) -> list[tuple[pd.DataFrame, str]]:
    if len(df) == 0:
        return []
    if family in ("gemm", "moe"):
        return [(part, family) for _, part in df.groupby("dtype")]
    if family == "generation_attention":
        return [(part, family) for _, part in df.groupby(df.kv_dtype.fillna("bf16"))]
    if family == "elementwise":
        kinds = df.op.map(ELEMENTWISE_KIND).fillna("default")
        return [(part, family) for _, part in df.groupby(kinds)]
    return [(df, family)]


def _coupled(pieces: list[tuple[pd.DataFrame, str]]) -> list[list[tuple[pd.DataFrame, str]]]:
    """Connected components of tables linked by a shared free parameter."""
    groups: list[tuple[set[str], list]] = []
    for df, family in pieces:
        paths = {f.path for f in free_parameters(family, df)}
        linked = [g for g in groups if g[0] & paths]
        merged = (paths.union(*(g[0] for g in linked)), [t for g in linked for t in g[1]] + [(df, family)])
        groups = [g for g in groups if g not in linked] + [merged]
    return [members for _, members in groups]


def _fit_group(tables: list[tuple[pd.DataFrame, str]], device: Device, start: CostParams, max_rows: int,
               seed: int) -> CostParams:
    # a random subsample keeps fitting fast; scoring always uses every row
    tables = [(df.sample(max_rows, random_state=seed) if len(df) > max_rows else df, family)
              for df, family in tables]
    free: list[Free] = []
    for df, family in tables:
        free += [f for f in free_parameters(family, df) if f.path not in {g.path for g in free}]
    x0 = np.array([min(max(get(start, f.path), f.lo), f.hi) / f.scale for f in free])
    lo = np.array([f.lo / f.scale for f in free])
    hi = np.array([f.hi / f.scale for f in free])
    x0 = np.clip(x0, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    scales = np.array([f.scale for f in free])
    measured = [df.measured_s.to_numpy(float) for df, _ in tables]

    # a weak pull toward the documented priors (a MAP fit): it decides only where the data cannot, e.g.
    # whether one GPU's slow kernel is bandwidth- or issue-limited, so that fitted values transfer
    prior = np.clip(np.array([get(CostParams(), f.path) / f.scale for f in free]), lo, hi)
    span = hi - lo

    def residuals(x):
        params = with_values(start, free, x * scales)
        return np.concatenate([np.log(predict_rows(df, family, device, params) / y)
                               for (df, family), y in zip(tables, measured, strict=True)]
                              + [PRIOR_WEIGHT * (x - prior) / span])

    # max()-shaped models have local minima: start from the prior and from two points inside the bounds
    starts = [x0, lo + 0.5 * (hi - lo), lo + 0.1 * (hi - lo)]
    best = min((least_squares(residuals, x, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, diff_step=1e-3,
                              max_nfev=40 * len(free)) for x in starts), key=lambda r: r.cost)
    return with_values(start, free, best.x * scales)
