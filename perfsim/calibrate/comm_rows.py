"""Predict measured collective rows (perfsim.measured 'collective' frames) and fit CommParams to them.

Frames carry op, num_gpus, size_bytes, devices_per_node, system, implementation and measured_s. The
`system` column names the measured machine; SYSTEMS maps it to a perfsim system whose links the model
reads. Fitting is least squares on log(predicted / measured) with a soft-L1 loss, as for the other
operator families (perfsim.calibrate.fit), over the CommParams fields that `comm_free` frees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from perfsim.cost.comm import collective_times, topology
from perfsim.cost.comm_params import IMPLEMENTATION_ALIASES, CommParams
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
    latencies (LL's and Simple's) and efficiency where rows cross nodes. LL's fixed latency stays at NCCL's
    prior: it and the host overhead only show up as their sum.
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
            free += [_free(f"{g}.net_alpha_s", 0.0, 100 * us, us), _free(f"{g}.net_bw_efficiency", 0.005, 1.0),
                     _free(f"{g}.net_simple_alpha_s", 0.0, 300 * us, us)]
            cross_rows = rows[rows.crosses_nodes]
            if (cross_rows.op == "send_recv").any():
                free += [_free(f"{g}.net_window_bytes", 64 * 2**10, 2**30, 2**20),
                         _free(f"{g}.net_burst_factor", 1.0, 16.0)]
            if cross_rows.devices_per_node.nunique() > 1:   # rails vary: how many NICs are driven shows
                nics = max(load_system(perfsim_system(s)).nics_per_node for s in cross_rows.system.unique())
                free.append(_free(f"{g}.net_max_rails", 1.0, float(max(nics, 2))))
    return free
