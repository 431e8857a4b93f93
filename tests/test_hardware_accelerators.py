"""Datasheet spot checks for the non-NVIDIA accelerators (gaudi2, mi300a), the HLS-Gaudi2 system
and its RoCE scale-up link, and CLI smoke runs on them."""

from __future__ import annotations

import json

import pytest

from perfsim.cli import main
from perfsim.cost.comm import collective_time, topology
from perfsim.hardware import load_device, load_hardware, load_system

GiB, MiB = 2**30, 2**20


def _A(expected: float, rel: float = 1e-9):
    return pytest.approx(expected, rel=rel)


def _run(args, capsys) -> dict:
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


# --- devices -----------------------------------------------------------------------------------------------------

def test_gaudi2_datasheet():
    g2 = load_device("gaudi2")
    # Hot Chips 2024 generation table / Intel Gaudi 2 brief: BF16 432 TF (MME), 600 W; Bekman table: FP8 865 TF
    assert g2.peak_flops("bf16") == _A(432e12) and g2.peak_flops("fp8") == _A(865e12) and g2.power.tdp == _A(600)
    # 2 MMEs of 256x256 MACs at 1650 MHz give the 432 TF (ml-engineering, "How To Calculate Theoretical TFLOPS")
    assert g2.peak_flops("bf16") == _A(2 * 256 * 256 * 2 * 1.65e9, rel=2e-3)
    # Gaudi 2 brief: 96 GB HBM2e at 2.45 TB/s (hl-smi: 98304 MiB), 48 MB SRAM; HAL: 24 TPC engines
    assert g2.memory_bytes == _A(98304 * MiB) and g2.memory_bw_Bps == _A(2.45e12)
    assert g2.level("sram").capacity == _A(48 * MiB) and g2.compute.units == 24 and g2.compute.unit_name == "TPC"
    # Gaudi 2 HAL: sramBwGBps = 6554
    assert g2.level("sram").bandwidth == _A(6.554e12, rel=1e-3)
    # ml-engineering MAMF table: BF16 418.7 TF, FP8 826.5 TF (torch 2.6.0+hpu_1.21.2)
    assert g2.compute.mamf["bf16"] == _A(418.7e12) and g2.compute.mamf["fp8"] == _A(826.5e12)
    # hl-smi of an idle HL-225: 80 W of 600 W
    assert g2.power.idle == _A(80)
    # no published FP16 rate: an fp16 GEMM is costed at the BF16 MME rate
    assert g2.compute_dtype("fp16") == "bf16"


def test_gaudi2_against_gaudi3():
    """Hot Chips 2024 generation table: Gaudi 3 is 4x the BF16 rate (1835 vs 432 TF), 1.5x the HBM bandwidth
    (3.67 vs 2.46 TB/s); FP8 is 2x BF16 on Gaudi 2 but 1x on Gaudi 3."""
    g2, g3 = load_device("gaudi2"), load_device("gaudi3")
    assert g3.peak_flops("bf16") / g2.peak_flops("bf16") == _A(1835 / 432)
    assert g3.memory_bw_Bps / g2.memory_bw_Bps == _A(1.5, rel=0.01)
    assert g2.peak_flops("fp8") == _A(2 * g2.peak_flops("bf16"), rel=2e-3)
    assert g3.peak_flops("fp8") == g3.peak_flops("bf16")


def test_mi300a_datasheet():
    apu = load_device("mi300a")
    # AMD MI300A datasheet: 228 CUs at 2100 MHz; FP16/BF16 980.6, FP8 1961.2 TF, INT8 1961.2 TOPS dense
    assert apu.compute.units == 228 and apu.compute.clock == _A(2.1e9)
    assert apu.peak_flops("bf16") == _A(980.6e12) and apu.peak_flops("fp16") == _A(980.6e12)
    assert apu.peak_flops("fp8") == _A(1961.2e12) and apu.peak_flops("int8") == _A(1961.2e12)
    # FP64/FP32 matrix 122.6, TF32 490.3; vector FP64 61.3, FP32 122.6 TF
    assert apu.peak_flops("fp64") == _A(122.6e12) and apu.peak_flops("tf32") == _A(490.3e12)
    assert apu.vector_flops("fp64") == _A(61.3e12) and apu.vector_flops("fp32") == _A(122.6e12)
    # ROCm MI300 microarchitecture: 2048 BF16 FLOP/clk/CU
    assert apu.peak_flops("bf16") == _A(228 * 2048 * 2.1e9, rel=1e-3)
    # datasheet: 128 GB unified HBM3 at 5.3 TB/s, 550 W; ROCm specs table: 24 MiB L2, 256 MiB Infinity Cache
    assert apu.memory_bytes == _A(128 * GiB) and apu.memory_bw_Bps == _A(5.3e12) and apu.power.tdp == _A(550)
    assert apu.level("l2").capacity == _A(24 * MiB) and apu.level("infinity_cache").capacity == _A(256 * MiB)
    # the unified memory is shared with the 24 Zen 4 cores: the spec must say so
    assert "24 Zen 4" in apu.summary and "shared" in apu.summary


def test_mi300a_is_six_eighths_of_an_mi300x():
    """Same CDNA 3 CU and clock, 6 XCDs instead of 8 (228 vs 304 CUs), same 5.3 TB/s HBM3."""
    apu, x = load_device("mi300a"), load_device("mi300x")
    assert apu.peak_flops("bf16") / x.peak_flops("bf16") == _A(228 / 304, rel=1e-3)
    assert apu.memory_bw_Bps == x.memory_bw_Bps and apu.memory_bytes < x.memory_bytes


# --- link and system ---------------------------------------------------------------------------------------------

def test_gaudi2_scale_up_link():
    link = load_hardware("gaudi2-roce-intra")
    # Intel Gaudi network configuration docs: 21 x 100 Gb/s = 262.5 GB/s scale-up per Gaudi 2 per direction
    assert link.bandwidth == _A(21 * 100e9 / 8) and link.bandwidth == _A(262.5e9)
    assert "RoCE" in link.summary


def test_hls_gaudi2_resolves():
    hls = load_system("hls-gaudi2")
    assert (hls.gpu.name, hls.devices_per_node, hls.intra_link.name) == ("gaudi2", 8, "gaudi2-roce-intra")
    # 3 scale-out 100 GbE ports per Gaudi 2, 24 per server (2.4 Tb/s)
    assert hls.nics_per_node == 24 and hls.nic.bandwidth == _A(100e9 / 8)
    assert hls.nics_per_node * hls.nic.bandwidth == _A(2.4e12 / 8)
    assert load_device("hls-gaudi2") == load_device("gaudi2")


def test_hls_gaudi2_is_a_full_mesh_in_the_collective_model():
    """Intel docs: 3 ports (37.5 GB/s) per peer pair, 262.5 GB/s per Gaudi 2 toward all 7 peers, 37.5 GB/s scale-out
    per Gaudi 2 and 300 GB/s per HLS-2 box."""
    hls = load_system("hls-gaudi2")
    pair, node = topology(hls, 2), topology(hls, 8)
    assert pair.mesh_size == 8 and pair.domain_Bps() == _A(37.5e9) and node.domain_Bps() == _A(262.5e9)
    two_nodes = topology(hls, 16)
    assert two_nodes.nic_single_Bps == _A(37.5e9) and two_nodes.nic_Bps == _A(300e9)
    # so a 2-way all-reduce is slower than an 8-way one of the same buffer (7x the bandwidth for 8/7x the traffic)
    size = 64 * MiB
    assert collective_time("all_reduce", size, 2, hls) > collective_time("all_reduce", size, 8, hls)


def test_hls_gaudi3_matches_intels_network_figures():
    """Intel Gaudi network configuration docs: 21 scale-up ports at 200 Gb/s, 525 GB/s per Gaudi 3 per direction,
    3 per peer pair (75 GB/s); 3 scale-out ports per Gaudi 3, 75 GB/s each and 600 GB/s per HLS-3 box."""
    hls = load_system("hls-gaudi3")
    assert (hls.gpu.name, hls.devices_per_node, hls.intra_link.name) == ("gaudi3", 8, "gaudi3-roce-intra")
    pair, node = topology(hls, 2), topology(hls, 8)
    assert pair.domain_Bps() == _A(75e9) and node.domain_Bps() == _A(525e9)
    two_nodes = topology(hls, 16)
    assert two_nodes.nic_single_Bps == _A(75e9) and two_nodes.nic_Bps == _A(600e9)
    assert collective_time("all_reduce", 64 * MiB, 8, hls) < collective_time("all_reduce", 64 * MiB, 8,
                                                                               load_system("hls-gaudi2"))


# --- CLI smoke ---------------------------------------------------------------------------------------------------

def test_cli_prefill_tp8_on_hls_gaudi2(capsys):
    d = _run(["predict", "-m", "llama-3.1-70b", "-H", "hls-gaudi2", "--tp", "8", "--task", "prefill", "--seq", "2048",
              "--json"], capsys)
    assert d["latency_s"] > 0
    kinds = {b["kind"] for b in d["breakdown"]}
    assert "collective" in kinds          # tensor parallelism pays all-reduces over the RoCE mesh
    # 2 x 70.6e9 params x 2048 tokens over 8 Gaudi 2 at 432 TF: never faster than the BF16 peak
    assert d["latency_s"] > 2 * 70.6e9 * 2048 / (8 * 432e12)


def test_cli_serve_on_gaudi2(capsys):
    d = _run(["serve", "-m", "llama-3.1-8b", "-H", "gaudi2", "--isl", "512", "--osl", "128", "--rate", "2",
              "--num-requests", "200", "--json"], capsys)
    assert d["num_requests"] == 200 and d["tpot_s"] > 0 and d["ttft_s"] > 0
    assert d["power_cap_w"] == _A(600)   # Gaudi 2 TDP
    # each output token reads the 16 GB of weights at 2.45 TB/s at least once per decode step
    assert d["tpot_s"] > 16e9 / 2.45e12


@pytest.mark.parametrize("hardware", ["gaudi2", "mi300a"])
def test_cli_roofline(hardware, tmp_path, capsys):
    out = tmp_path / "roofline.png"
    code = main(["roofline", "-m", "llama-3.1-8b", "-H", hardware, "--context", "1024", "-o", str(out)])
    capsys.readouterr()
    assert code == 0 and out.stat().st_size > 0
