"""Hardware specs: devices (GPU, CPU, FPGA, accelerator), links and systems, loaded from YAML.

Every YAML value is a human quantity ("80 GiB", "3.35 TB/s", "989 TFLOP/s", "700 W") and every group
of numbers carries a `source`. In memory all values are SI floats.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from perfsim import units
from perfsim.dtypes import DTYPES, PROMOTION
from perfsim.errors import SpecError, UnknownNameError
from perfsim.specfiles import find_spec, read_mapping, shipped_names, validation_message


def _quantity(family: str):
    def parse(v: Any) -> float:
        try:
            return units.parse(v, family, field=family)
        except SpecError as exc:  # as ValueError, pydantic prefixes the field path
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
    return BeforeValidator(parse)


Bytes = Annotated[float, _quantity("bytes"), Field(gt=0)]
Bandwidth = Annotated[float, _quantity("bandwidth"), Field(gt=0)]
Flops = Annotated[float, _quantity("flops"), Field(gt=0)]
Watts = Annotated[float, _quantity("power"), Field(ge=0)]
Hertz = Annotated[float, _quantity("frequency"), Field(gt=0)]
Seconds = Annotated[float, _quantity("time"), Field(ge=0)]
Source = Annotated[str, Field(min_length=3)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Compute(_Spec):
    """Dense peak throughput per dtype of the matrix units, plus vector (non-matrix) throughput."""
    units: int = Field(gt=0, description="compute units: SMs, CUs, cores, DSP slices / 1000")
    unit_name: str = "SM"
    clock: Hertz
    peak: dict[str, Flops]
    vector: dict[str, Flops] = {}
    transcendental: Flops | None = None  # special-function (exp, rsqrt) results per second
    architecture: str = ""  # instruction-set generation kernels are built for (NVIDIA: sm + compute capability)
    # maximum achievable matmul FLOP/s per dtype, measured (the best of a brute-force shape search): what the
    # device's own kernels reach of `peak`, used to carry another device's calibration over to this one
    mamf: dict[str, Flops] = {}
    source: Source

    @field_validator("peak", "vector", "mamf")
    @classmethod
    def _known_dtypes(cls, v: dict[str, float]) -> dict[str, float]:
        for key in v:
            if key not in DTYPES:
                raise ValueError(f"unknown dtype {key!r}; accepted: {', '.join(DTYPES)}")
        return v


class MemoryLevel(_Spec):
    """One level of the memory hierarchy; the last level listed is the device's main memory."""
    name: str
    capacity: Bytes
    bandwidth: Bandwidth
    source: Source


class Power(_Spec):
    tdp: Watts
    idle: Watts
    source: Source

    @model_validator(mode="after")
    def _idle_below_tdp(self) -> Power:
        if not 0 < self.tdp or self.idle >= self.tdp:
            raise ValueError("idle must be below tdp, and tdp above 0 W")
        return self


class Energy(_Spec):
    """Dynamic energy coefficients: picojoules per FLOP by dtype and per byte moved by memory level."""
    pj_per_flop: dict[str, Annotated[float, Field(gt=0)]] = {}
    pj_per_byte: dict[str, Annotated[float, Field(gt=0)]] = {}
    source: Source


class Price(_Spec):
    per_hour: Annotated[float, BeforeValidator(units.parse_money), Field(gt=0)]
    source: Source


class Device(_Spec):
    name: str
    kind: Literal["gpu", "cpu", "fpga", "accelerator"]
    vendor: str
    summary: str = ""
    compute: Compute
    memory: list[MemoryLevel] = Field(min_length=1)
    power: Power
    energy: Energy | None = None
    price: Price | None = None
    launch_overhead: Seconds = 0.0
    launch_overhead_source: str = ""

    @property
    def main_memory(self) -> MemoryLevel:
        return self.memory[-1]

    @property
    def last_level_cache(self) -> MemoryLevel | None:
        """The largest on-chip level (L2 on GPUs, L3 on CPUs), if the spec lists one."""
        return self.memory[-2] if len(self.memory) > 1 else None

    @property
    def memory_bytes(self) -> float:
        return self.main_memory.capacity

    @property
    def memory_bw_Bps(self) -> float:
        return self.main_memory.bandwidth

    def level(self, name: str) -> MemoryLevel:
        for lvl in self.memory:
            if lvl.name == name:
                return lvl
        raise UnknownNameError(f"memory level {name!r} not on {self.name}; has {[m.name for m in self.memory]}")

    def compute_dtype(self, dtype: str) -> str:
        """The dtype whose matrix-unit peak serves `dtype` on this device (promotes if not native)."""
        for cand in PROMOTION.get(dtype, (dtype,)):
            if cand in self.compute.peak:
                return cand
        raise SpecError(f"{self.name}: compute.peak has no rate for {dtype!r} nor for a format it promotes to "
                        f"({', '.join(PROMOTION.get(dtype, (dtype,)))}); add one")

    def peak_flops(self, dtype: str) -> float:
        return self.compute.peak[self.compute_dtype(dtype)]

    def vector_flops(self, dtype: str = "fp32") -> float:
        """Non-matrix throughput (elementwise math); falls back to the fp32 matrix peak."""
        vec = self.compute.vector
        return vec.get(dtype) or vec.get("fp32") or self.peak_flops("fp32")


class Link(_Spec):
    name: str
    kind: Literal["link"] = "link"
    type: Literal["nvlink", "nvswitch", "pcie", "infiniband", "roce", "ethernet", "infinity-fabric", "cxl", "upi"]
    bandwidth: Bandwidth = Field(description="per device (or per port), per direction")
    latency: Seconds
    # how a scale-up domain is wired: through a switch (any peer gets all of `bandwidth`) or point to point, a full
    # mesh (a peer gets its share of the device's links); default: full mesh for Infinity Fabric, else switched
    topology: Literal["switched", "full_mesh"] | None = None
    summary: str = ""
    source: Source

    @property
    def full_mesh(self) -> bool:
        return self.topology == "full_mesh" or (self.topology is None and self.type == "infinity-fabric")


def _named(cls: type):
    """A field holding a spec's name or the spec itself (a mapping), validated as the one it is, so that an inline
    spec's errors name its own fields."""
    return Annotated[Annotated[str, Tag("name")] | Annotated[cls, Tag("spec")],
                     Discriminator(lambda v: "name" if isinstance(v, str) else "spec")]


class System(_Spec):
    """A node design (devices, intra-node fabric, NICs) and how nodes connect."""
    name: str
    kind: Literal["system"] = "system"
    summary: str = ""
    device: Annotated[_named(Device), Field(description="a device name, or the device's spec inline")]
    devices_per_node: int = Field(gt=0)
    intra_node_link: _named(Link)
    nics_per_node: int = Field(ge=0)
    nic_link: _named(Link) | None = None
    inter_node_topology: str = "rail-optimized fat tree"
    max_nodes: int = Field(default=1024, gt=0)
    source: Source

    @property
    def gpu(self) -> Device:
        return self.device if isinstance(self.device, Device) else _load_kind(self.device, Device, "device")

    @property
    def intra_link(self) -> Link:
        link = self.intra_node_link
        return link if isinstance(link, Link) else _load_kind(link, Link, "intra_node_link")

    @property
    def nic(self) -> Link | None:
        link = self.nic_link
        return link if isinstance(link, Link) or link is None else _load_kind(link, Link, "nic_link")


Hardware = Device | Link | System
_KINDS: dict[str, type[BaseModel]] = {"gpu": Device, "cpu": Device, "fpga": Device, "accelerator": Device,
                                      "link": Link, "system": System}


def _parse(data: dict[str, Any], source: str) -> Hardware:
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise SpecError(f"{source}: field kind: got {kind!r}; accepted: {', '.join(_KINDS)}")
    try:
        return _KINDS[kind].model_validate(data)
    except ValidationError as exc:
        raise SpecError(validation_message(source, exc)) from None
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


def hardware_names() -> list[str]:
    return sorted(shipped_names("hardware"))


@lru_cache(maxsize=256)
def _load_path(path: Path) -> Hardware:
    return _parse(read_mapping(path), str(path))


def load_hardware(name_or_path: str | Path | Hardware) -> Hardware:
    """A device, link or system by shipped name (e.g. 'h100-sxm') or by path to a YAML file."""
    if isinstance(name_or_path, (Device, Link, System)):
        return name_or_path
    path = find_spec(name_or_path, "hardware")
    if path is None:
        raise UnknownNameError(f"hardware: unknown name {str(name_or_path)!r}; see `perfsim hw list` for the "
                               f"{len(shipped_names('hardware'))} shipped names, or give a path to a YAML file")
    return _load_path(path)


def _load_kind(name: str, cls: type, field: str):
    hw = load_hardware(name)
    if not isinstance(hw, cls):
        raise SpecError(f"{field}: {name!r} is a {hw.kind}, expected a {cls.__name__.lower()}")
    return hw


def load_device(name_or_path: str | Path | Hardware) -> Device:
    """A Device; a System gives its device."""
    hw = load_hardware(name_or_path)
    if isinstance(hw, System):
        return hw.gpu
    if isinstance(hw, Link):
        raise SpecError(f"hardware: {hw.name!r} is a link; give a device or a system")
    return hw


def load_system(name_or_path: str | Path | Hardware) -> System:
    """A System; a bare Device becomes a one-device system with no fabric."""
    hw = load_hardware(name_or_path)
    if isinstance(hw, System):
        return hw
    raise SpecError(f"hardware: {getattr(hw, 'name', hw)!r} is a {hw.kind}; multi-device work needs a system "
                    f"(e.g. dgx-h100); see `perfsim hw list`")


def list_hardware() -> list[Hardware]:
    return [load_hardware(n) for n in hardware_names()]
