"""Bandwidth-bound ops (norms, activations, residual adds, rotary, softmax, copies):
t = t_launch + max(smax_p(t_bytes / eta, N * c / (units * f_clock)), FLOPs / P_vector)
(a streaming kernel's latency-plus-bandwidth form, with an instruction-issue floor of c cycles per output
element per compute unit for kernels that are not bandwidth-limited, e.g. gathers and unfused norms), with
t_bytes = cold / B_main + hot * (h / B_llc + (1 - h) / B_main) when the activations fit the LLC (hit share h),
and bytes / B_main otherwise."""

from __future__ import annotations

import numpy as np

from perfsim.cost.gemm import DeviceRoofs, smooth_max
from perfsim.cost.params import ElementwiseParams


def elementwise_time(nbytes, flops, vector_peak, roofs: DeviceRoofs, p: ElementwiseParams, cold_bytes=0.0,
                     elements=0.0):
    nbytes, flops, vector_peak, cold, elements = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, float)) for x in (nbytes, flops, vector_peak, cold_bytes, elements)))
    hot = nbytes - cold
    resident = hot <= roofs.llc_bytes
    h = p.cache_hit
    cached = cold / roofs.main_bw + hot * (h / roofs.llc_bw + (1.0 - h) / roofs.main_bw)
    t_mem = np.where(resident, cached, nbytes / roofs.main_bw) / p.memory_efficiency
    t_issue = elements * p.cycles_per_element / (roofs.units * roofs.clock_hz)
    return p.launch_s + np.maximum(smooth_max(t_mem, t_issue, p.overlap), flops / vector_peak)
