"""What-if hardware: a device or system with some of its numbers changed, for design-space questions ("what would
1.5x the HBM bandwidth buy?", "a B200 with half the FP8 peak?") without writing a YAML file.

    from perfsim.whatif import what_if
    faster = what_if("dgx-h100", {"memory_bandwidth": "x1.5", "link_bandwidth": "900 GB/s"})
    perfsim.predict("llama-3.1-70b", faster, task="decode", batch=64, context=4096, tp=8)

A value is a factor (`x1.5`, `1.5x`) or a quantity in the unit a hardware YAML takes (`4.8 TB/s`, `192 GiB`,
`2 PFLOP/s`, `1000 W`, `2 us`). The changed hardware keeps its name, so the device's calibration profile (its
kernels' efficiencies, fitted on the real part) still applies; its summary records the change. On a system the
device and the links are changed inside it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from pydantic import ValidationError

from perfsim import units
from perfsim.errors import InvalidInputError, SpecError
from perfsim.hardware import Device, Hardware, Link, System, load_hardware

# key: (unit family, what it changes); a family of None takes factors only
KEYS = {
    "memory_bandwidth": ("bandwidth", "main memory (HBM, DRAM) bandwidth"),
    "memory_capacity": ("bytes", "main memory capacity"),
    "cache_bandwidth": ("bandwidth", "last-level cache (L2) bandwidth"),
    "compute": (None, "every matrix, vector and special-function peak, and the achievable matmul rates"),
    "clock": ("frequency", "the compute clock, and with it every compute peak and the on-chip (cache, shared "
                           "memory) bandwidths; main memory and links keep theirs"),
    "link_bandwidth": ("bandwidth", "the intra-node link's bandwidth per device and direction"),
    "link_latency": ("time", "the intra-node link's latency"),
    "nic_bandwidth": ("bandwidth", "the network (NIC) link's bandwidth per port and direction"),
    "tdp": ("power", "board power (the power cap)"),
}
PEAK = re.compile(r"^peak_(\w+)$")   # peak_<dtype>: one matrix peak (its achievable matmul rate scaled alike)
_FACTOR = re.compile(r"^\s*(?:[xX]\s*([0-9.eE+-]+)|([0-9.eE+-]+)\s*[xX])\s*$")


def accepted_keys() -> str:
    return ", ".join([*KEYS, "peak_<dtype> (e.g. peak_fp8)"])


def parse_items(items: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` strings (the CLI's repeated --what-if) as a dict; a one-line error for a malformed one."""
    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInputError(f"what-if: expected KEY=VALUE (e.g. memory_bandwidth=x1.5), got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _new_value(key: str, value, old: float) -> float:
    """The changed number: old x factor, or the quantity given (in the key's unit family, KEYS; flops for a
    peak_<dtype>)."""
    family = KEYS[key][0] if key in KEYS else "flops"
    hit = _FACTOR.match(str(value))
    if hit:
        try:
            factor = float(hit.group(1) or hit.group(2))
        except ValueError:
            factor = float("nan")
        if not 0 < factor < math.inf or not 1e-300 < old * factor < 1e300:
            raise InvalidInputError(f"what-if: {key}: the factor must be a finite number > 0 that leaves a finite "
                                    f"nonzero value, got {value!r}")
        return old * factor
    if family is None:
        raise InvalidInputError(f"what-if: {key}: takes a factor such as x2, got {value!r}")
    try:
        new = units.parse(value, family, field=f"what-if: {key}")
    except SpecError as exc:
        raise InvalidInputError(str(exc)) from None
    if not 1e-300 < new < 1e300:
        raise InvalidInputError(f"what-if: {key}: must be > 0 and finite, got {value!r}")
    return new


def _device(dev: Device, changes: dict) -> Device:
    data = dev.model_dump()
    compute, memory = data["compute"], data["memory"]
    for key, value in changes.items():
        peak = PEAK.match(key)
        if key == "memory_bandwidth":
            memory[-1]["bandwidth"] = _new_value(key, value, memory[-1]["bandwidth"])
        elif key == "memory_capacity":
            memory[-1]["capacity"] = _new_value(key, value, memory[-1]["capacity"])
        elif key == "cache_bandwidth":
            if len(memory) < 2:
                raise InvalidInputError(f"what-if: cache_bandwidth: {dev.name} lists no cache level")
            memory[-2]["bandwidth"] = _new_value(key, value, memory[-2]["bandwidth"])
        elif key in ("compute", "clock"):
            if key == "compute":
                factor = _new_value(key, value, 1.0)
            else:   # peaks are units x clock x work per cycle, on-chip bandwidths bytes per cycle x clock
                factor = _new_value(key, value, compute["clock"]) / compute["clock"]
                compute["clock"] *= factor
                for level in memory[:-1]:
                    level["bandwidth"] *= factor
            for table in ("peak", "vector", "mamf"):
                compute[table] = {k: v * factor for k, v in compute[table].items()}
            if compute.get("transcendental"):
                compute["transcendental"] *= factor
        elif peak:
            dtype = peak.group(1)
            if dtype not in compute["peak"]:
                raise InvalidInputError(f"what-if: {key}: {dev.name} has no {dtype} peak; it has "
                                        f"{', '.join('peak_' + d for d in compute['peak'])}")
            old = compute["peak"][dtype]
            compute["peak"][dtype] = _new_value(key, value, old)
            if dtype in compute["mamf"]:   # the achievable share of the peak stays
                compute["mamf"][dtype] *= compute["peak"][dtype] / old
        elif key == "tdp":
            data["power"]["tdp"] = _new_value(key, value, data["power"]["tdp"])
    return Device.model_validate(data)


def _link(link: Link, changes: dict, bandwidth_key: str, latency_key: str | None = None) -> Link:
    data = link.model_dump()
    if bandwidth_key in changes:
        data["bandwidth"] = _new_value(bandwidth_key, changes[bandwidth_key], data["bandwidth"])
    if latency_key and latency_key in changes:
        data["latency"] = _new_value(latency_key, changes[latency_key], data["latency"])
    return Link.model_validate(data)


def what_if(hardware: str | Hardware, changes: dict[str, str]) -> Hardware:
    """`hardware` (a name, path or loaded spec) with `changes` applied ({key: factor or quantity}, KEYS and
    peak_<dtype>); the same object when there are none. A one-line InvalidInputError names a bad key or value."""
    hw = load_hardware(hardware)
    if not changes:
        return hw
    for key in changes:
        if key not in KEYS and not PEAK.match(key):
            raise InvalidInputError(f"what-if: unknown key {key!r}; accepted: {accepted_keys()}")
    link_keys = [k for k in changes if k.startswith(("link_", "nic_"))]
    device_changes = {k: v for k, v in changes.items() if k not in link_keys}
    note = "what-if: " + ", ".join(f"{k}={v}" for k, v in changes.items())
    try:
        if isinstance(hw, Link):
            raise InvalidInputError(f"what-if: {hw.name!r} is a link; give a device or a system")
        if isinstance(hw, Device):
            if link_keys:
                raise InvalidInputError(f"what-if: {link_keys[0]} needs a system (e.g. dgx-h100), got the device "
                                        f"{hw.name!r}")
            out = _device(hw, device_changes)
            return out.model_copy(update={"summary": f"{out.summary} ({note})".strip()})
        update = {"summary": f"{hw.summary} ({note})".strip()}
        if device_changes:
            update["device"] = _device(hw.gpu, device_changes)
        if "link_bandwidth" in changes or "link_latency" in changes:
            update["intra_node_link"] = _link(hw.intra_link, changes, "link_bandwidth", "link_latency")
        if "nic_bandwidth" in changes:
            if hw.nic is None:
                raise InvalidInputError(f"what-if: nic_bandwidth: {hw.name} has no network link")
            update["nic_link"] = _link(hw.nic, changes, "nic_bandwidth")
        return System.model_validate({**hw.model_dump(), **{k: v.model_dump() if hasattr(v, "model_dump") else v
                                                            for k, v in update.items()}})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"what-if: the changed {hw.name} is not a valid spec: {where}: {first['msg']}") \
            from None


def from_cli(hardware: str, items: list[str] | None) -> str | Hardware:
    """The --hardware value as given, or the what-if hardware when --what-if items are given."""
    return what_if(hardware, parse_items(items)) if items else hardware
