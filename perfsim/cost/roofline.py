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


def traffic_split(op: Op, device: Device) -> tuple[float, float]:
    """(main-memory bytes, last-level-cache bytes): activations that fit in the LLC are served by it."""
    llc = device.last_level_cache
    hot = op.bytes - op.cold_bytes
    if llc is not None and hot <= llc.capacity:
        return op.cold_bytes, hot
    return op.bytes, 0.0


def memory_time(op: Op, device: Device) -> float:
    # hierarchical memory roof: t = max(bytes_main / B_main, bytes_llc / B_llc)
    main, cached = traffic_split(op, device)
    llc = device.last_level_cache
    return max(main / device.memory_bw_Bps, cached / llc.bandwidth if llc else 0.0)


def roofline(op: Op, device: Device) -> OpCost:
    """The ideal-hardware lower bound on the op's time: no prediction may be faster than this."""
    compute_s, memory_s = compute_time(op, device), memory_time(op, device)
    return OpCost(op=op, time_s=max(compute_s, memory_s), compute_s=compute_s, memory_s=memory_s,
                  overhead_s=0.0, comm_s=0.0, bound=classify(compute_s, memory_s),
                  level=serving_level(op, device), energy_j=dynamic_energy(op, device))


def serving_level(op: Op, device: Device) -> str:
    """The memory level whose traffic takes longest for this op."""
    main, cached = traffic_split(op, device)
    llc = device.last_level_cache
    if llc is not None and cached / llc.bandwidth > main / device.memory_bw_Bps:
        return llc.name
    return device.main_memory.name
