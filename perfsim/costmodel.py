"""op_time: the cost of one operator on a device or system, by the best model available."""

from __future__ import annotations

from pathlib import Path

from perfsim.calibrate.profile import Profile, resolve
from perfsim.cost.calibrated import calibrated, transferred_device
from perfsim.cost.comm import collective_time
from perfsim.cost.opcost import OpCost
from perfsim.cost.roofline import roofline
from perfsim.errors import InvalidInputError
from perfsim.hardware import Device, Hardware, System, load_device, load_hardware
from perfsim.ops import Collective, Op


def op_time(op: Op, hardware: str | Path | Hardware, profile: str | Path | Profile | None = "auto") -> OpCost:
    """Cost of `op` on `hardware` (a name, path, Device or System).

    profile: 'auto' uses the device's shipped calibration profile (or the H100 transfer profile),
    None the pure roofline, a path to a profile YAML, or a loaded Profile.
    """
    hw = load_hardware(hardware)
    if isinstance(op, Collective):
        if not isinstance(hw, System):
            raise InvalidInputError(f"hardware: a collective needs a system (e.g. dgx-h100), got {hw.name!r}")
        prof = resolve(profile, hw.gpu.name)
        t = collective_time(op.collective, op.size_bytes, op.group, hw, params=prof.params.comm if prof else None,
                            implementation=op.implementation)
        return OpCost(op=op, time_s=t, compute_s=0.0, memory_s=0.0, overhead_s=0.0, comm_s=t, bound="comm",
                      level=hw.intra_link.name if op.group <= hw.devices_per_node else hw.nic.name if hw.nic else "")
    device: Device = load_device(hw)
    prof = resolve(profile, device.name)
    if prof is None:
        return roofline(op, device)
    # a profile measured on another device carries over through this one's specs and achievable matmul share
    kernel_device = transferred_device(device, load_device(prof.device)) if prof.device not in ("", device.name) \
        else None
    return calibrated(op, device, prof.params, kernel_device=kernel_device)
