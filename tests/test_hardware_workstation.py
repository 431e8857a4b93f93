"""Datasheet spot checks for the Ada/Ampere workstation and PCIe cards (l40, rtx-6000-ada, rtx-a6000, rtx-3090), the
8x L40S PCIe system, and CLI smoke runs on them."""

from __future__ import annotations

import json

import pytest

from perfsim.cli import main
from perfsim.hardware import load_device, load_system

MiB = 2**20


def _A(expected: float, rel: float = 1e-9):
    return pytest.approx(expected, rel=rel)


def test_l40_datasheet():
    l40 = load_device("l40")
    # NVIDIA L40 datasheet (dense): FP32 90.5, TF32 90.5, BF16/FP16 181.05, FP8 362 TF, INT8 362, INT4 724 TOPS
    assert l40.peak_flops("fp32") == _A(90.5e12) and l40.peak_flops("tf32") == _A(90.5e12)
    assert l40.peak_flops("bf16") == _A(181.05e12) and l40.peak_flops("fp16") == _A(181.05e12)
    assert l40.peak_flops("fp8") == _A(362e12)
    assert l40.peak_flops("int8") == _A(362e12) and l40.peak_flops("int4") == _A(724e12)
    # L40 datasheet: 48 GB GDDR6 at 864 GB/s, 300 W; TechPowerUp: 142 SMs at 2490 MHz boost; sm89
    assert l40.memory_bw_Bps == _A(864e9) and l40.memory_bytes == _A(48e9) and l40.power.tdp == _A(300)
    assert l40.compute.units == 142 and l40.compute.clock == _A(2.49e9) and l40.compute.architecture == "sm89"
    # the datasheet's BF16 rate is 512 FLOP/clk/SM (FP32 accumulate at half rate): 142 x 512 x 2.49 GHz
    assert l40.peak_flops("bf16") == _A(142 * 512 * 2.49e9, rel=1e-3)


def test_l40_tensor_rates_are_below_the_l40s():
    """L40 and L40S datasheets, same 142-SM AD102 and 864 GB/s: BF16 181.05 vs 362.05 TF, FP8 362 vs 733 TF dense."""
    l40, l40s = load_device("l40"), load_device("l40s")
    assert l40.peak_flops("bf16") < l40s.peak_flops("bf16")
    assert l40.peak_flops("bf16") == _A(l40s.peak_flops("bf16") / 2, rel=1e-3)   # 181.05 = 362.05 / 2 (rounding)
    assert l40.peak_flops("fp8") < l40s.peak_flops("fp8")
    assert l40.memory_bw_Bps == l40s.memory_bw_Bps and l40.compute.units == l40s.compute.units
    assert l40.power.tdp < l40s.power.tdp                                           # 300 W vs 350 W


def test_rtx_6000_ada_datasheet():
    ada = load_device("rtx-6000-ada")
    # RTX 6000 Ada datasheet: FP32 91.1 TF, 48 GB GDDR6 at 960 GB/s, 300 W; deviceQuery: 142 SMs, 2505 MHz, 96 MiB L2
    assert ada.peak_flops("fp32") == _A(91.1e12) and ada.memory_bw_Bps == _A(960e9) and ada.power.tdp == _A(300)
    assert ada.compute.units == 142 and ada.compute.clock == _A(2.505e9) and ada.compute.architecture == "sm89"
    assert ada.level("l2").capacity == _A(96 * MiB)
    # nvidia-smi (thamada/nvidia-smi gls/RTX6000Ada_x8_smi.py, ECC off): 49,140 MiB total
    assert ada.memory_bytes == _A(49140 * MiB)
    # datasheet tensor 1,457 TF = FP8 sparse at the FP16-accumulate rate; the FP32-accumulate fp8 peak here is the
    # estimate at half of the 728.5 TF dense figure (as on the L40), so a quarter of 1,457
    assert ada.peak_flops("fp8") == _A(1457e12 / 4, rel=1e-3)
    assert ada.peak_flops("bf16") == _A(ada.peak_flops("fp8") / 2, rel=1e-3)
    assert ada.peak_flops("bf16") < load_device("l40s").peak_flops("bf16")
    assert ada.compute_dtype("int8") == "fp16"          # no INT8 rate published: int8 runs at the 16-bit rate


def test_rtx_a6000_datasheet():
    a6000 = load_device("rtx-a6000")
    # GA102 whitepaper Table 3 (RTX A6000): BF16/FP16 with FP32 accumulate 154.8 TF dense, INT8 309.7 TOPS; 84 SMs
    assert a6000.peak_flops("bf16") == _A(154.8e12) and a6000.peak_flops("fp16") == _A(154.8e12)
    assert a6000.peak_flops("int8") == _A(309.7e12) and a6000.compute.units == 84
    # RTX A6000 datasheet: FP32 38.7 TF, 48 GB GDDR6 at 768 GB/s, 300 W; no FP8 on Ampere
    assert a6000.peak_flops("fp32") == _A(38.7e12) and a6000.memory_bw_Bps == _A(768e9) and a6000.power.tdp == _A(300)
    assert "fp8" not in a6000.compute.peak and a6000.compute_dtype("fp8") == "fp16"
    # professional GA102: FP32 accumulate at full rate, 84 SM x 1024 FLOP/clk x 1.8 GHz
    assert a6000.peak_flops("bf16") == _A(84 * 1024 * 1.8e9, rel=1e-3)
    # nvidia-smi (thamada/gls gls/RTX_A6000_x9_smi.py, ECC on): 46,068 MiB total; deviceQuery: 6 MiB L2
    assert a6000.memory_bytes == _A(46068 * MiB) and a6000.level("l2").capacity == _A(6 * MiB)


def test_rtx_3090_bf16_is_the_fp32_accumulate_rate():
    rtx3090 = load_device("rtx-3090")
    # GA102 whitepaper Appendix A (RTX 3090, at its 1695 MHz rated boost clock): FP16 tensor 142 TF with FP16
    # accumulate, 71 with FP32 accumulate (BF16 71), TF32 35.6, INT8 284 TOPS, FP32 35.6 TF; frameworks accumulate in
    # FP32, so the peak is the 71's rate, taken at the 2100 MHz maximum graphics clock (nvidia-smi -q "Max Clocks")
    assert rtx3090.peak_flops("bf16") == _A(88.2e12) and rtx3090.peak_flops("fp16") == _A(88.2e12)
    assert rtx3090.peak_flops("bf16") == _A(142e12 / 2 * 2100 / 1695, rel=5e-3)
    assert rtx3090.peak_flops("bf16") == _A(82 * 512 * 2.1e9, rel=1e-3)      # 512, not 1024, FLOP/clk/SM
    assert rtx3090.peak_flops("tf32") == _A(44.1e12) and rtx3090.peak_flops("fp32") == _A(44.1e12)   # 35.6 x 2100/1695
    assert rtx3090.peak_flops("int8") == _A(352.7e12)                                                 # 284 x 2100/1695
    # and half the A6000's per-SM-per-clock rate, the same GA102 die
    a6000 = load_device("rtx-a6000")
    per_clk = rtx3090.peak_flops("bf16") / (rtx3090.compute.units * rtx3090.compute.clock)
    assert per_clk == _A(a6000.peak_flops("bf16") / (a6000.compute.units * a6000.compute.clock) / 2, rel=3e-3)
    # RTX 3090 specs: 24 GB GDDR6X at 936 GB/s, 350 W, 82 SMs; nvidia-smi (thamada/nvidia-smi gls/RTX3090_smi.py)
    assert rtx3090.memory_bw_Bps == _A(936e9) and rtx3090.power.tdp == _A(350) and rtx3090.compute.units == 82
    assert rtx3090.memory_bytes == _A(24576 * MiB) and rtx3090.compute.architecture == "sm86"


@pytest.mark.parametrize("name,sheet_gb", [("l40", 48), ("rtx-6000-ada", 48), ("rtx-a6000", 48), ("rtx-3090", 24)])
def test_memory_capacity_is_near_the_datasheet(name, sheet_gb):
    assert 0.95 < load_device(name).memory_bytes / (sheet_gb * 1e9) < 1.08


def test_l40s_pcie_8x_system():
    sys_ = load_system("l40s-pcie-8x")
    # AWS g6e.48xlarge: 8x L40S, no NVLink (PCIe Gen4 x16), 400 Gbps over up to four network cards (EFA)
    assert sys_.gpu.name == "l40s" and sys_.devices_per_node == 8
    assert sys_.intra_link.name == "pcie4-x16" and sys_.intra_link.type == "pcie"
    assert sys_.intra_link.bandwidth == _A(16 * 16e9 * 128 / 130 / 8, rel=5e-3)   # PCIe 4.0 x16: 31.5 GB/s a way
    assert sys_.nic.name == "ethernet-100g" and sys_.nics_per_node == 4
    assert sys_.nics_per_node * sys_.nic.bandwidth == _A(400e9 / 8)               # 400 Gb/s per instance


def _run(args, capsys):
    code = main(args)
    return code, capsys.readouterr().out


def test_cli_predict_on_rtx_6000_ada(capsys):
    code, out = _run(["predict", "-m", "qwen3-8b", "-H", "rtx-6000-ada", "--task", "decode", "--batch", "16",
                      "--context", "2048"], capsys)
    assert code == 0 and "rtx-6000-ada" in out
    code, out = _run(["predict", "-m", "qwen3-8b", "-H", "rtx-6000-ada", "--task", "decode", "--batch", "16",
                      "--context", "2048", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["latency_s"] > 0
    # decode at batch 16 is bandwidth-bound: a step cannot beat reading the ~16 GB of bf16 weights at 960 GB/s
    assert data["latency_s"] > 16e9 / 960e9


def test_cli_serve_on_l40s_pcie_8x(capsys):
    code, out = _run(["serve", "-m", "llama-3.1-70b", "-H", "l40s-pcie-8x", "--num-gpus", "8", "--tp", "8",
                      "--dtype", "fp8", "--isl", "1024", "--osl", "256", "--rate", "1", "--num-requests", "200",
                      "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["ttft_s"] > 0 and data["tpot_s"] > 0 and data["num_requests"] == 200
