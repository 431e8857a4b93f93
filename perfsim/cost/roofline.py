"""Roofline cost: time = max(FLOPs / peak[dtype], bytes / bandwidth) (Williams, Waterman, Patterson 2009)."""

from __future__ import annotations

from perfsim.cost.energy import dynamic_energy
from perfsim.cost.opcost import OpCost, classify
from perfsim.hardware import Device
from perfsim.ops import Op


def peak_for(op: Op, device: Device) -> float:
    """Ceiling FLOP/s for the op: matrix units for matrix ops, vector units for the rest."""
    return device.peak_flops(op.dtype) if op.matrix else device.vector_flops(op.dtype)


def compute_time(op: Op, device: Device) -> float:
    # compute roof: t = FLOPs / P_peak
    return op.flops / peak_for(op, device) if op.flops else 0.0


def memory_time(op: Op, device: Device) -> float:
    # memory roof: t = bytes / B_main (compulsory traffic served by main memory)
    return op.bytes / device.memory_bw_Bps


def roofline(op: Op, device: Device) -> OpCost:
    """The ideal-hardware lower bound on the op's time: no prediction may be faster than this."""
    compute_s, memory_s = compute_time(op, device), memory_time(op, device)
    return OpCost(op=op, time_s=max(compute_s, memory_s), compute_s=compute_s, memory_s=memory_s,
                  overhead_s=0.0, comm_s=0.0, bound=classify(compute_s, memory_s),
                  level=device.main_memory.name, energy_j=dynamic_energy(op, device))
