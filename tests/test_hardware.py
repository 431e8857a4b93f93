"""The shipped hardware library (hardware/**.yaml) and the loader's handling of bad or user-supplied specs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from perfsim.dtypes import DTYPES
from perfsim.errors import PerfsimError, SpecError, UnknownNameError
from perfsim.hardware import Device, Link, System, hardware_names, load_device, load_hardware, load_system

HW_DIR = Path(__file__).resolve().parents[1] / "hardware"
YAML_FILES = sorted(HW_DIR.rglob("*.yaml"))

REQUIRED = {
    "gpu": ["a100-sxm-40gb", "a100-sxm-80gb", "a40", "l40s", "h100-sxm", "h100-pcie", "h200-sxm", "b200", "gb200",
            "b300", "gb300", "mi210", "mi250x", "mi300x"],
    "cpu": ["xeon-8480", "epyc-9654", "grace"],
    "fpga": ["alveo-u280", "versal-vck190"],
    "link": ["nvlink3", "nvlink4", "nvlink5", "nvswitch-gen3", "pcie4-x16", "pcie5-x16", "ib-hdr", "ib-ndr",
             "roce-400g", "infinity-fabric", "cxl2"],
    "system": ["dgx-a100-80gb", "dgx-a100-40gb", "dgx-h100", "hgx-h200", "gb200-nvl72", "mi300x-platform",
               "dgx-b200", "dgx-b300", "gb300-nvl72"],
}

# Real hardware whose aggregate capacities are not nested; everything else must grow outward.
#   a40, a10, a10g, rtx-a6000, rtx-3090: GA102's SMs x 100 KiB shared memory (7.8-8.2 MiB) exceed its 6 MiB L2;
#   v100-sxm2-32gb: 80 SMs x 96 KiB (7.5 MiB) exceed GV100's 6 MiB L2.
#   xeon-8480: 56 x 2 MiB private L2 (112 MiB) exceeds the 105 MB non-inclusive L3.
CAPACITY_INVERSIONS = {("a40", "smem", "l2"), ("a10", "smem", "l2"), ("a10g", "smem", "l2"),
                       ("rtx-a6000", "smem", "l2"), ("rtx-3090", "smem", "l2"), ("v100-sxm2-32gb", "smem", "l2"),
                       ("mi355x", "lds", "l2"), ("xeon-8480", "l2", "l3")}

DEVICES = [n for n in hardware_names() if isinstance(load_hardware(n), Device)]
LINKS = [n for n in hardware_names() if isinstance(load_hardware(n), Link)]
SYSTEMS = [n for n in hardware_names() if isinstance(load_hardware(n), System)]


def _A(expected: float):
    return pytest.approx(expected, rel=1e-9)


def _approx(value: float, expected: float, rel: float = 1e-3) -> bool:
    return math.isclose(value, expected, rel_tol=rel)


# --- the shipped library ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(HW_DIR)))
def test_every_file_loads_by_its_name(path):
    name = yaml.safe_load(path.read_text())["name"]
    assert name == path.stem, "file name and `name:` should agree"
    hw = load_hardware(name)
    assert hw.name == name
    assert load_hardware(path) == hw        # and by path


def test_names_are_unique():
    names = [yaml.safe_load(p.read_text())["name"] for p in YAML_FILES]
    assert len(names) == len(set(names))
    assert sorted(names) == hardware_names()


@pytest.mark.parametrize("kind,name", [(k, n) for k, names in REQUIRED.items() for n in names])
def test_required_names_exist_with_kind(kind, name):
    assert load_hardware(name).kind == kind


@pytest.mark.parametrize("name", DEVICES)
def test_device_compute(name):
    dev = load_device(name)
    peak, vector = dev.compute.peak, dev.compute.vector
    assert peak.get("bf16", 0) > 0 or peak.get("fp32", 0) > 0
    # every device states its fp32 rate, so an fp32 GEMM never falls back to the fastest low-precision peak
    assert peak["fp32"] > 0 and dev.compute_dtype("fp32") == "fp32"
    assert set(peak) | set(vector) <= set(DTYPES)
    for dtype, rate in vector.items():        # matrix units are never slower than the vector units
        if dtype in peak:
            assert peak[dtype] >= rate * 0.999, dtype
    if dev.kind == "cpu":
        assert dev.compute.unit_name == "core"
    if dev.kind in ("gpu", "cpu"):
        assert vector.get("fp32", 0) > 0


@pytest.mark.parametrize("name", DEVICES)
def test_memory_hierarchy_is_ordered(name):
    dev = load_device(name)
    levels = dev.memory
    assert len(levels) >= (3 if dev.kind in ("gpu", "cpu") else 2)
    assert len({lvl.name for lvl in levels}) == len(levels)
    for inner, outer in zip(levels, levels[1:], strict=False):
        assert outer.bandwidth < inner.bandwidth, f"{outer.name} should be slower than {inner.name}"
        if (name, inner.name, outer.name) not in CAPACITY_INVERSIONS:
            assert outer.capacity > inner.capacity, f"{outer.name} should be larger than {inner.name}"
    main = dev.main_memory
    assert main is levels[-1]
    assert main.capacity == max(lvl.capacity for lvl in levels) and main.capacity >= 4 * 2**30
    assert main.bandwidth == min(lvl.bandwidth for lvl in levels)
    assert dev.memory_bytes == main.capacity and dev.memory_bw_Bps == main.bandwidth


def test_capacity_inversions_are_real():
    for name, inner, outer in CAPACITY_INVERSIONS:
        dev = load_device(name)
        assert dev.level(inner).capacity > dev.level(outer).capacity


@pytest.mark.parametrize("name", DEVICES)
def test_device_power_energy_price(name):
    dev = load_device(name)
    assert 0 < dev.power.idle < dev.power.tdp
    assert 0 < dev.launch_overhead < 100e-6 and dev.launch_overhead_source
    if dev.energy is not None:
        level_names = {lvl.name for lvl in dev.memory}
        assert set(dev.energy.pj_per_byte) <= level_names
        assert set(dev.energy.pj_per_flop) <= set(DTYPES)
    if dev.price is not None:
        assert 0 < dev.price.per_hour < 50


@pytest.mark.parametrize("name", LINKS)
def test_links(name):
    link = load_hardware(name)
    assert link.bandwidth > 1e9 and 0 < link.latency < 1e-4


@pytest.mark.parametrize("name", SYSTEMS)
def test_systems_resolve(name):
    sys_ = load_system(name)
    assert isinstance(sys_.gpu, Device) and sys_.gpu.kind == "gpu"
    assert isinstance(sys_.intra_link, Link)
    assert sys_.intra_link.type in ("nvlink", "nvswitch", "infinity-fabric", "pcie", "roce")
    if sys_.nics_per_node:
        assert isinstance(sys_.nic, Link) and sys_.nic.type in ("infiniband", "roce", "ethernet")
    assert load_device(name) == sys_.gpu
    # the NICs never out-run the scale-up fabric
    assert sys_.nic is None or sys_.nic.bandwidth < sys_.intra_link.bandwidth


# --- datasheet spot checks ---------------------------------------------------------------------------------------
# Memory capacities are what the driver reports (nvidia-smi total in MiB, rocm-smi bytes), which a program can
# allocate from; the datasheet's figure is within a few percent of it (its "GB" is close to GiB on HBM parts).

def test_spot_checks_nvidia():
    a100 = load_device("a100-sxm-80gb")     # NVIDIA A100 80GB datasheet: BF16 312 TF dense, HBM2e 2,039 GB/s
    assert a100.peak_flops("bf16") == _A(312e12) and _approx(a100.memory_bw_Bps, 2.039e12)
    assert a100.memory_bytes == _A(81920 * 2**20) and "fp8" not in a100.compute.peak
    assert a100.compute_dtype("fp8") == "fp16"                 # no FP8 on Ampere: weights upcast to 16-bit
    assert a100.peak_flops("int4") == _A(1248e12)   # A100 datasheet: INT4 1,248 TOPS dense
    a100_40 = load_device("a100-sxm-40gb")  # A100 whitepaper: 40 GB HBM2 at 1,555 GB/s
    assert _approx(a100_40.memory_bw_Bps, 1.555e12) and a100_40.memory_bytes == _A(40960 * 2**20)
    h100 = load_device("h100-sxm")          # H100 whitepaper Table 3: BF16 989.4 TF dense; datasheet 3.35 TB/s
    assert h100.peak_flops("bf16") == _A(989.4e12) and h100.memory_bw_Bps == _A(3.35e12)
    assert h100.peak_flops("fp32") == _A(66.9e12)
    h100p = load_device("h100-pcie")        # H100 whitepaper Table 3 (PCIe): BF16 756.5 TF dense; 2 TB/s HBM2e
    assert h100p.peak_flops("bf16") == _A(756.5e12) and h100p.memory_bw_Bps == _A(2.0e12)
    h200 = load_device("h200-sxm")          # H200 datasheet: 141 GB HBM3e at 4.8 TB/s, same compute as H100 SXM
    assert h200.memory_bytes == _A(143771 * 2**20) and h200.memory_bw_Bps == _A(4.8e12)
    assert h200.peak_flops("fp8") == _A(1978.9e12)
    b200 = load_device("b200")              # DGX B200 datasheet: FP4 9 PF, BF16 2.25 PF dense; 1,440 GB / 64 TB/s per 8
    assert b200.peak_flops("fp4") == _A(9e15) and b200.peak_flops("bf16") == _A(2.25e15)
    assert b200.memory_bytes == _A(183359 * 2**20) and b200.memory_bw_Bps == _A(8e12) and b200.power.tdp == _A(1000)
    gb200 = load_device("gb200")            # GB200 NVL72 datasheet / 72: FP4 10 PF, BF16 2.5 PF dense, 1200 W class
    assert gb200.peak_flops("fp4") == _A(10e15) and gb200.peak_flops("bf16") == _A(2.5e15)
    assert gb200.power.tdp == _A(1200)
    a40 = load_device("a40")                # A40 datasheet: 48 GB GDDR6 at 696 GB/s, INT4 598.7 TOPS dense
    assert a40.memory_bytes == _A(46068 * 2**20) and a40.memory_bw_Bps == _A(696e9)
    assert a40.peak_flops("int4") == _A(598.7e12)
    l40s = load_device("l40s")              # L40S datasheet: FP8 733 TF dense, 864 GB/s, 350 W
    assert l40s.peak_flops("fp8") == _A(733e12) and l40s.memory_bw_Bps == _A(864e9) and l40s.power.tdp == _A(350)


def test_memory_capacity_is_near_the_datasheet():
    """The driver-reported totals sit within -5%..+8% of the datasheets' decimal GB: HBM's "80 GB" is 80 GiB less
    what the driver reserves, a GDDR card with ECC on loses a little."""
    for name, sheet_gb in [("h100-sxm", 80), ("h200-sxm", 141), ("b200", 180), ("gb200", 186), ("a100-sxm-80gb", 80),
                           ("l40s", 48), ("rtx-pro-6000-blackwell", 96), ("mi300x", 192)]:
        assert 0.95 < load_device(name).memory_bytes / (sheet_gb * 1e9) < 1.08, name


def test_spot_checks_amd():
    mi300x = load_device("mi300x")          # MI300X datasheet: 192 GB HBM3, 5.3 TB/s, FP16/BF16 1307.4 TF dense
    assert mi300x.memory_bytes == _A(206141652992) and mi300x.memory_bw_Bps == _A(5.3e12)
    assert mi300x.peak_flops("bf16") == _A(1307.4e12) and mi300x.peak_flops("fp8") == _A(2614.9e12)
    assert mi300x.level("infinity_cache").capacity == _A(256 * 2**20)   # CDNA 3 whitepaper: 256 MB Infinity Cache
    mi250x = load_device("mi250x")          # MI250X datasheet (whole OAM, 2 GCDs): 383 TF FP16, 128 GB, 3.2 TB/s
    assert mi250x.peak_flops("fp16") == _A(383e12) and mi250x.memory_bytes == _A(128e9)
    assert _approx(mi250x.memory_bw_Bps, 3.2768e12) and mi250x.compute.units == 220
    mi210 = load_device("mi210")            # MI210 datasheet: 181 TF FP16, 64 GB at 1.6 TB/s, 300 W
    assert mi210.peak_flops("fp16") == _A(181e12) and mi210.memory_bytes == _A(64e9) and mi210.power.tdp == _A(300)


def test_spot_checks_cpu_fpga():
    xeon = load_device("xeon-8480")         # Intel ark: 56 cores, 8x DDR5-4800 = 307.2 GB/s; AMX 1024 BF16 FLOP/clk
    assert xeon.compute.units == 56 and _approx(xeon.memory_bw_Bps, 307.2e9)
    assert _approx(xeon.peak_flops("bf16"), 56 * 1024 * 2.0e9, rel=2e-3)
    epyc = load_device("epyc-9654")         # AMD: 96 cores, 12 ch DDR5-4800 = 460.8 GB/s, 384 MB L3
    assert epyc.compute.units == 96 and _approx(epyc.memory_bw_Bps, 460.8e9)
    assert epyc.level("l3").capacity == _A(384 * 2**20)
    grace = load_device("grace")            # Grace superchip datasheet / 2: 72 cores, 3.55 TF FP64, LPDDR5X
    assert grace.compute.units == 72 and _approx(grace.peak_flops("fp64"), 3.55e12)
    assert grace.main_memory.name == "lpddr5x"
    u280 = load_device("alveo-u280")        # UG1393: 8 GB HBM2 (32 x 256 MB), 460 GB/s; DS963: 9,024 DSP slices
    assert u280.memory_bytes == _A(8 * 2**30) and u280.memory_bw_Bps == _A(460e9)
    assert u280.compute.units == 9024
    assert _approx(u280.peak_flops("int8"), 9024 * 2 * 2 * 500e6, rel=2e-3)
    vck = load_device("versal-vck190")      # UG1079: 128 INT8 MACs/clk per AIE; 400 AIEs at 1.25 GHz
    assert vck.peak_flops("int8") == _A(400 * 128 * 2 * 1.25e9)
    assert vck.peak_flops("fp32") == _A(400 * 8 * 2 * 1.25e9)


def test_spot_checks_links_and_systems():
    assert load_hardware("nvlink3").bandwidth == _A(300e9)       # A100 whitepaper: 600 GB/s bidirectional
    assert load_hardware("nvlink4").bandwidth == _A(450e9)       # H100 datasheet: 900 GB/s bidirectional
    assert load_hardware("nvlink5").bandwidth == _A(900e9)       # B200 datasheets: 1.8 TB/s bidirectional
    assert load_hardware("ib-hdr").bandwidth == _A(200e9 / 8)    # ConnectX-6: 200 Gb/s
    assert load_hardware("ib-ndr").bandwidth == _A(400e9 / 8)    # ConnectX-7: 400 Gb/s
    assert load_hardware("infinity-fabric").bandwidth == _A(7 * 64e9)   # MI300X: 7 links x 128 GB/s bidirectional
    assert _approx(load_hardware("pcie5-x16").bandwidth, 32e9 * 16 * 128 / 130 / 8, rel=5e-3)
    nvl72 = load_system("gb200-nvl72")
    assert nvl72.devices_per_node == 72 and nvl72.intra_link.name == "nvlink5" and nvl72.gpu.name == "gb200"
    dgx = load_system("dgx-a100-80gb")
    assert (dgx.gpu.name, dgx.devices_per_node, dgx.intra_link.name, dgx.nic.name) == \
        ("a100-sxm-80gb", 8, "nvlink3", "ib-hdr")
    mi = load_system("mi300x-platform")
    assert (mi.gpu.name, mi.intra_link.type, mi.nic.type) == ("mi300x", "infinity-fabric", "roce")


# --- user files and errors ---------------------------------------------------------------------------------------

def _user_gpu(**changes) -> dict:
    spec = yaml.safe_load((HW_DIR / "devices" / "h100-sxm.yaml").read_text())
    spec["name"] = "my-gpu"
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = spec
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is _DELETE:
            del node[leaf]
        elif isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return spec


_DELETE = object()


def _write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_user_yaml_by_path(tmp_path):
    path = _write(tmp_path, "my-gpu.yaml", _user_gpu(**{"compute__peak__bf16": "500 TFLOP/s"}))
    dev = load_hardware(str(path))
    assert isinstance(dev, Device) and dev.name == "my-gpu" and dev.peak_flops("bf16") == 500e12
    assert load_device(path) == dev
    assert "my-gpu" not in hardware_names()


def test_user_system_by_path_uses_shipped_parts(tmp_path):
    spec = {"name": "my-pod", "kind": "system", "device": "h100-pcie", "devices_per_node": 4,
            "intra_node_link": "pcie5-x16", "nics_per_node": 2, "nic_link": "roce-400g", "source": "my lab"}
    sys_ = load_system(_write(tmp_path, "my-pod.yaml", spec))
    assert sys_.gpu.name == "h100-pcie" and sys_.intra_link.type == "pcie" and sys_.nic.name == "roce-400g"


def _spec_error(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_hardware(str(path))
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    assert isinstance(info.value, PerfsimError)
    return message


BAD_SPECS = {
    "negative-bandwidth": ({"memory__2__bandwidth": "-3 TB/s"}, "memory.2.bandwidth"),
    "zero-capacity": ({"memory__0__capacity": "0 GB"}, "memory.0.capacity"),
    "unknown-field": ({"compute__boost": "2 GHz"}, "compute.boost"),
    "missing-source": ({"compute__source": _DELETE}, "compute.source"),
    "missing-memory-source": ({"memory__1__source": _DELETE}, "memory.1.source"),
    "unknown-dtype": ({"compute__peak__fp7": "1 TFLOP/s"}, "compute.peak"),
    "unknown-kind": ({"kind": "tpu"}, "kind"),
    "kind-not-a-string": ({"kind": ["gpu"]}, "kind"),
    "idle-above-tdp": ({"power__idle": "900 W"}, "power"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_names_the_field(tmp_path, case):
    changes, field = BAD_SPECS[case]
    message = _spec_error(_write(tmp_path, f"{case}.yaml", _user_gpu(**changes)))
    assert field in message and str(tmp_path) in message


def test_link_topology_is_switched_or_a_full_mesh(tmp_path):
    assert load_hardware("infinity-fabric").full_mesh and not load_hardware("nvlink4").full_mesh
    assert load_hardware("gaudi2-roce-intra").full_mesh and not load_hardware("roce-400g").full_mesh
    spec = yaml.safe_load((HW_DIR / "links" / "nvlink4.yaml").read_text())
    message = _spec_error(_write(tmp_path, "ring.yaml", {**spec, "topology": "ring"}))
    assert "topology" in message and "full_mesh" in message


def test_unreadable_quantity(tmp_path):
    message = _spec_error(_write(tmp_path, "bad-unit.yaml", _user_gpu(**{"memory__2__bandwidth": "fast"})))
    assert "bandwidth" in message and "fast" in message


def test_malformed_yaml(tmp_path):
    message = _spec_error(_write(tmp_path, "broken.yaml", "name: x\nkind: gpu\ncompute: [unclosed\n"))
    assert "malformed YAML" in message and "broken.yaml" in message


def test_not_a_mapping(tmp_path):
    message = _spec_error(_write(tmp_path, "list.yaml", "- a\n- b\n"))
    assert "mapping" in message


def test_missing_file():
    with pytest.raises(SpecError):
        load_hardware("no/such/file.yaml")


def test_unknown_name():
    with pytest.raises(UnknownNameError) as info:
        load_hardware("h100-sxm-9000")
    assert "h100-sxm-9000" in str(info.value) and "\n" not in str(info.value)


def test_wrong_kind_where_a_system_or_device_is_needed():
    with pytest.raises(SpecError):
        load_system("h100-sxm")
    with pytest.raises(SpecError):
        load_device("nvlink4")
    with pytest.raises(UnknownNameError):
        load_device("h100-sxm").level("l3")


def test_achievable_matmul_share_carries_a_profile_over():
    """A profile measured on the H100 runs on another device at that device's measured MAMF / peak relative to
    the H100's: MI300X 668.4 of 1307.4 TF against 794.5 of 989.4 (bf16); a device's own profile is not scaled."""
    from perfsim.cost.calibrated import achievable_ratio
    from perfsim.ops import Gemm
    h100, mi300x = load_device("h100-sxm"), load_device("mi300x")
    assert achievable_ratio(mi300x, h100, "bf16") == pytest.approx((668.4 / 1307.4) / (794.5 / 989.4))
    assert achievable_ratio(mi300x, h100, "fp8") == achievable_ratio(mi300x, h100, "bf16")   # no fp8 MAMF: bf16's
    assert achievable_ratio(load_device("l40s"), h100, "bf16") == 1.0                         # none measured
    # B200 FP4 (5,702 of 9,000 TF, DeepGEMM PR 348) against the H100's bf16 share: the H100 profile has no fp4
    # fit, so fp4 matmuls run on its bf16 kernel parameters
    b200 = load_device("b200")
    assert achievable_ratio(b200, h100, "fp4") == pytest.approx((5702 / 9000) / (794.5 / 989.4))
    assert achievable_ratio(b200, h100, "fp8") == pytest.approx((3432.5 / 4500) / (1402.6 / 1978.9))
    big = Gemm(m=8192, n=8192, k=8192)
    from perfsim import op_time
    scaled = op_time(big, mi300x).time_s
    unscaled = op_time(big, mi300x.model_copy(update={"compute": mi300x.compute.model_copy(update={"mamf": {}})}))
    assert scaled / unscaled.time_s == pytest.approx(1 / achievable_ratio(mi300x, h100, "bf16"), rel=0.05)
