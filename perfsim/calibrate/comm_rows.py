"""Predict measured collective rows (perfsim.measured 'collective' frames) and fit CommParams to them.

Frames carry op, num_gpus, size_bytes, devices_per_node, system, implementation and measured_s. The
`system` column names the measured machine; SYSTEMS maps it to a perfsim system whose links the model
reads. Fitting is least squares on log(predicted / measured) with a soft-L1 loss, as for the other
operator families (perfsim.calibrate.fit), over the CommParams fields that `comm_free` frees.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from perfsim.cost.comm import collective_times, topology
from perfsim.cost.comm_params import IMPLEMENTATION_ALIASES, CommParams
from perfsim.errors import InvalidInputError
from perfsim.hardware import load_system

if TYPE_CHECKING:  # perfsim.calibrate.fit imports rows, which imports this module
    from perfsim.calibrate.fit import Free

# measured `system` (raw setup names and the perfsim names the readers already write) -> perfsim system
SYSTEMS = {
    "h100_sxm": "dgx-h100", "a100_sxm": "dgx-a100-80gb", "b200_sxm": "dgx-b200",        # aiconfigurator
    "h100_dgx": "dgx-h100", "a100_dgx": "dgx-a100-80gb",                                 # vidur
    "a100_pairwise_nvlink": "a100-pcie-nvlink-bridge-4x",
    "h100_pairwise_nvlink": "h100-nvl-nvlink-bridge-4x",
    "a40_pairwise_nvlink": "a40-nvlink-bridge-4x",
    # LLMCompass Fig. 5h: 4x A100 80GB SXM on NVLink (300 GB/s per GPU per direction, as on a DGX A100)
    "llmcompass_a100x4_nvlink": "dgx-a100-80gb",
}


def perfsim_system(name: str) -> str:
    """The perfsim system of a measured frame's `system` value (perfsim names map to themselves)."""
    return SYSTEMS.get(name, name)


def _implementation(name: str) -> str:
    return IMPLEMENTATION_ALIASES.get(name, name)


def _comm(params) -> CommParams:
    """CommParams from a CostParams (its `comm` field) or a CommParams."""
    return getattr(params, "comm", params)


_KEYS = ["system", "implementation", "op", "num_gpus", "devices_per_node"]


def plan(df: pd.DataFrame) -> list[tuple[np.ndarray, object, str, str, np.ndarray]]:
    """Rows grouped by setup: (row indices, Topology, op, implementation, sizes); reusable across fits."""
    sizes = df.size_bytes.to_numpy(float)
    out = []
    for (system, impl, op, p, dpn), idx in df.groupby(_KEYS, sort=False).indices.items():
        topo = topology(load_system(perfsim_system(system)), int(p), int(dpn))
        out.append((idx, topo, op, _implementation(impl), sizes[idx]))
    return out


def collective_rows(df: pd.DataFrame, params=None, setups=None) -> np.ndarray:
    """Predicted seconds for every row of a collective frame, vectorised over sizes within each setup."""
    comm = _comm(params) if params is not None else CommParams()
    out = np.empty(len(df))
    for idx, topo, op, impl, sizes in (setups if setups is not None else plan(df)):
        out[idx] = collective_times(op, sizes, topo, comm, impl)
    return out


def collective_rows_for(df: pd.DataFrame, device, params) -> np.ndarray:
    """perfsim.calibrate.rows.PREDICTORS signature; the device is implied by each row's system."""
    return collective_rows(df, params)


# ------------------------------------------------------------------------------------------- free params
def _free(path: str, lo: float, hi: float, scale: float = 1.0):
    from perfsim.calibrate.fit import Free
    return Free(path, lo, hi, scale)


def _nvls_rows(df: pd.DataFrame) -> bool:
    ar = df[df.op == "all_reduce"]
    for (system, p, dpn), _ in ar.groupby(["system", "num_gpus", "devices_per_node"]):
        topo = topology(load_system(perfsim_system(system)), int(p), int(dpn))
        if topo.nvls and topo.nodes == 1 and p >= 4:
            return True
    return False


def comm_free(df: pd.DataFrame, prefix: str = "comm.") -> list[Free]:
    """The CommParams fields the rows of `df` constrain, with their physical bounds.

    NCCL-style sets free the host overhead, the LL per-step latency and bandwidth share, the LL128 and
    Simple latencies, the bulk link efficiency, NVLS where NVSwitch all-reduces appear, and the NIC
    latency and efficiency where rows cross nodes. LL's fixed latency stays at NCCL's prior: it and the
    host overhead only show up as their sum.
    """
    us = 1e-6
    free = []
    nvls = _nvls_rows(df)
    cross = bool(df.crosses_nodes.any()) if "crosses_nodes" in df else False
    for impl in sorted(set(df.implementation.map(_implementation))):
        g = f"{prefix}{impl}"
        rows = df[df.implementation.map(_implementation) == impl]
        if impl == "trtllm":
            free += [_free(f"{g}.launch_s", 0.0, 100 * us, us), _free(f"{g}.barrier_s", 0.0, 20 * us, us),
                     _free(f"{g}.oneshot_efficiency", 0.02, 1.0), _free(f"{g}.bw_efficiency", 0.02, 1.0)]
            if nvls:
                free += [_free(f"{g}.nvls_base_s", 0.0, 100 * us, us), _free(f"{g}.nvls_efficiency", 0.02, 1.0)]
            continue
        free += [_free(f"{g}.launch_s", 0.0, 300 * us, us),
                 _free(f"{g}.ll_alpha_s", 0.0, 20 * us, us), _free(f"{g}.ll_bw_fraction", 0.01, 1.0),
                 _free(f"{g}.simple_base_s", 0.0, 200 * us, us), _free(f"{g}.simple_alpha_s", 0.0, 50 * us, us),
                 _free(f"{g}.bw_efficiency", 0.02, 1.0)]
        p2p = rows.op.isin(["send_recv", "all_to_all"])
        if p2p.any():
            free += [_free(f"{g}.p2p_base_s", 0.0, 200 * us, us), _free(f"{g}.p2p_ll_bw_fraction", 0.005, 1.0)]
        if not p2p.all():
            free += [_free(f"{g}.ll128_base_s", 0.0, 200 * us, us), _free(f"{g}.ll128_alpha_s", 0.0, 20 * us, us)]
        if (~p2p).sum() == 0:
            unused = (f"{g}.ll_bw_fraction", f"{g}.simple_base_s")   # only ring kernels use these
            free = [f for f in free if f.path not in unused]
        if nvls and (rows.op == "all_reduce").any():
            free += [_free(f"{g}.nvls_base_s", 0.0, 200 * us, us), _free(f"{g}.nvls_efficiency", 0.02, 1.0)]
        if cross and rows.crosses_nodes.any():
            free += [_free(f"{g}.net_alpha_s", 0.0, 100 * us, us), _free(f"{g}.net_bw_efficiency", 0.005, 1.0)]
            cross_rows = rows[rows.crosses_nodes]
            if cross_rows.devices_per_node.nunique() > 1:   # rails vary: how many NICs are driven shows
                nics = max(load_system(perfsim_system(s)).nics_per_node for s in cross_rows.system.unique())
                free.append(_free(f"{g}.net_max_rails", 1.0, float(max(nics, 2))))
    return free


# ------------------------------------------------------------------------------------------------ fitting
PRIOR_WEIGHT = 0.3
def _get(comm: CommParams, path: str) -> float:
    node = comm.model_dump()
    for part in path.split("."):
        node = node[part]
    return float(node)


def _with_values(comm: CommParams, free, values) -> CommParams:
    data = comm.model_dump()
    for f, v in zip(free, values, strict=True):
        node = data
        parts = f.path.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = float(v)
    return CommParams.model_validate(data)


def fit_comm(df: pd.DataFrame, start: CommParams | None = None, max_nfev: int | None = None,
             prior_weight: float = PRIOR_WEIGHT) -> CommParams:
    """CommParams that best explain the rows of `df` (least squares on log ratio, soft-L1 loss).

    Each free parameter also pays prior_weight * (x - x_start) / (hi - lo): a weak pull toward the prior
    that keeps small tables (a few dozen rows) from spending a dozen parameters on their noise.
    """
    start = start or CommParams()
    free = comm_free(df, prefix="")
    measured = df.measured_s.to_numpy(float)
    scales = np.array([f.scale for f in free])
    lo = np.array([f.lo for f in free]) / scales
    hi = np.array([f.hi for f in free]) / scales
    x0 = np.array([_get(start, f.path) for f in free]) / scales
    x0 = np.clip(x0, lo + 1e-6 * (hi - lo), hi - 1e-6 * (hi - lo))

    setups = plan(df)

    prior = x0.copy()
    span = hi - lo

    def residuals(x):
        data = np.log(collective_rows(df, _with_values(start, free, x * scales), setups) / measured)
        return np.concatenate([data, prior_weight * (x - prior) / span])

    result = least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, diff_step=1e-3,
                           max_nfev=max_nfev or 80 * len(free))
    return _with_values(start, free, result.x * scales)


def ape(df: pd.DataFrame, params=None) -> np.ndarray:
    """Absolute percentage error of every row, in percent."""
    return 100.0 * np.abs(collective_rows(df, params) / df.measured_s.to_numpy(float) - 1.0)


def split(df: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit half, test half): the seeded random row fold of perfsim.validate (rng.random(n) < 0.5)."""
    in_fit = np.random.default_rng(seed).random(len(df)) < 0.5
    return df[in_fit], df[~in_fit]


def validate(frames: Iterable[tuple[str, pd.DataFrame]], seed: int = 0) -> pd.DataFrame:
    """Per frame: prior and fitted held-out MAPE / p90 APE, fitting on a random half of its rows."""
    rows = []
    for name, df in frames:
        df = df.reset_index(drop=True)
        train, test = split(df, seed)
        prior = ape(test)
        fitted = fit_comm(train)
        err = ape(test, fitted)
        rows.append({"dataset": name, "rows": len(df), "test_rows": len(test),
                     "prior_mape": prior.mean(), "prior_p90": np.percentile(prior, 90),
                     "fit_mape": err.mean(), "fit_p90": np.percentile(err, 90), "params": fitted})
    return pd.DataFrame(rows)


def measured_frames(names: Iterable[str] | None = None, by_system: bool = True) -> list[tuple[str, pd.DataFrame]]:
    """The shipped collective datasets, one frame per dataset and implementation (and per system when
    `by_system`, since launch overheads and efficiencies belong to a machine's software stack)."""
    from perfsim import measured
    names = list(names) if names is not None else measured.names("collective")
    frames = []
    for name in names:
        df = measured.load(name)
        if df.empty:
            raise InvalidInputError(f"dataset {name!r} has no rows")
        keys = ["implementation", "system"] if by_system else ["implementation"]
        groups = list(df.groupby(keys))
        for key, part in groups:
            parts = key if isinstance(key, tuple) else (key,)
            label = name if len(groups) == 1 else f"{name}[{'/'.join(map(str, parts))}]"
            frames.append((label, part))
    return frames
