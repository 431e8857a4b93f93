"""Energy: E = sum(FLOPs_d * e_flop[d]) + sum(bytes_l * e_byte[l]) + P_idle * t (first-order CMOS energy model).

Coefficients come from the device's `energy:` section (sourced) when given. Otherwise e_flop is
derived from the rule that the matrix units at dense peak draw the dynamic power budget TDP - P_idle,
and e_byte likewise for main memory at peak bandwidth; these fallbacks are stated as assumptions.
"""

from __future__ import annotations

from perfsim.hardware import Device
from perfsim.ops import Op

PJ = 1e-12


def joules_per_flop(device: Device, dtype: str) -> float:
    energy = device.energy
    cdt = device.compute_dtype(dtype)
    if energy and cdt in energy.pj_per_flop:
        return energy.pj_per_flop[cdt] * PJ
    # e_flop = (TDP - P_idle) / P_peak[dtype]
    return (device.power.tdp - device.power.idle) / device.peak_flops(cdt)


def joules_per_byte(device: Device, level: str | None = None) -> float:
    level = level or device.main_memory.name
    energy = device.energy
    if energy and level in energy.pj_per_byte:
        return energy.pj_per_byte[level] * PJ
    # e_byte = (TDP - P_idle) / B_peak of the level
    return (device.power.tdp - device.power.idle) / device.level(level).bandwidth


def dynamic_energy(op: Op, device: Device) -> float:
    """Switching energy of one op: its FLOPs plus its main-memory traffic."""
    flop_j = op.flops * joules_per_flop(device, op.dtype) if op.flops else 0.0
    return flop_j + op.bytes * joules_per_byte(device)


def run_energy(dynamic_j: float, time_s: float, device: Device, devices: int = 1,
               throttle: bool = True) -> tuple[float, float, float]:
    """(energy J, average power W, time s) of a run. With `throttle`, under the TDP cap: above it the clocks
    throttle and the run stretches until its power fits, its switching energy unchanged,
    t' = max(t, E_dyn / (TDP - P_idle)) per device (perfsim.serving.energy.throttle with static = idle power).
    Without (the ideal roofline), the run keeps its time and the power it would draw. E = E_dyn + P_idle * t'."""
    if time_s <= 0:
        return 0.0, 0.0, 0.0
    headroom = device.power.tdp - device.power.idle
    stretched = max(time_s, dynamic_j / devices / headroom) if throttle and headroom > 0 else time_s
    energy = dynamic_j + device.power.idle * stretched * devices
    return energy, energy / stretched, stretched
