"""Bandwidth-bound ops (norms, activations, residual adds, rotary, softmax, copies):
t = t_launch + max(t_bytes / eta, FLOPs / P_vector) (a streaming kernel's latency-plus-bandwidth form), with
t_bytes = cold / B_main + hot * (h / B_llc + (1 - h) / B_main) when the activations fit the LLC (hit share h),
and bytes / B_main otherwise."""

from __future__ import annotations

import numpy as np

from perfsim.cost.gemm import DeviceRoofs
from perfsim.cost.params import ElementwiseParams


def elementwise_time(nbytes, flops, vector_peak, roofs: DeviceRoofs, p: ElementwiseParams, cold_bytes=0.0):
    nbytes, flops, vector_peak, cold = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, float)) for x in (nbytes, flops, vector_peak, cold_bytes)))
    hot = nbytes - cold
    resident = hot <= roofs.llc_bytes
    h = p.cache_hit
    cached = cold / roofs.main_bw + hot * (h / roofs.llc_bw + (1.0 - h) / roofs.main_bw)
    t_mem = np.where(resident, cached, nbytes / roofs.main_bw) / p.memory_efficiency
    return p.launch_s + np.maximum(t_mem, flops / vector_peak)
