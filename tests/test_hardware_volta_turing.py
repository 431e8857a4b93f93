"""Datasheet spot checks for the Volta, Turing and A10G specs (v100-sxm2-32gb, t4, a10g), their links (nvlink2,
ib-edr) and systems (dgx-1-v100, aws-g5-48xlarge), and the CLI on them."""

from __future__ import annotations

import json
import math

import pytest

import perfsim
from perfsim.cli import main
from perfsim.cost.comm import topology
from perfsim.hardware import load_device, load_hardware, load_system

MiB = 2**20


def _A(expected: float):
    return pytest.approx(expected, rel=1e-9)


def run_json(args, capsys) -> dict:
    code = main(args + ["--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


# --- devices --------------------------------------------------------------------------------------------------

def test_v100_sxm2_32gb_datasheet():
    v100 = load_device("v100-sxm2-32gb")
    # V100 datasheet, SXM2: tensor 125, single 15.7, double 7.8 TFLOPS; 32 GB HBM2 at 900 GB/s; 300 W
    assert v100.peak_flops("fp16") == _A(125e12)
    assert v100.peak_flops("fp32") == _A(15.7e12) and v100.peak_flops("fp64") == _A(7.8e12)
    assert v100.memory_bw_Bps == _A(900e9) and v100.power.tdp == _A(300)
    # nvidia-smi on Tesla V100-SXM2-32GB: 32768MiB total
    assert v100.memory_bytes == _A(32768 * MiB)
    # Volta whitepaper Table 1: 80 SMs, 8 tensor cores x 64 FMA per SM, 1530 MHz boost -> 125 TF; 6144 KB L2
    assert v100.compute.units == 80 and v100.compute.architecture == "sm70"
    assert math.isclose(80 * 1024 * v100.compute.clock, 125e12, rel_tol=5e-3)
    assert v100.level("l2").capacity == _A(6 * MiB)
    # Volta whitepaper: non-tensor FP16 31.4 TF, twice FP32
    assert v100.vector_flops("fp16") == _A(31.4e12)
    # Volta tensor cores take FP16 only: no BF16, TF32, INT8 or FP8 rate, bf16 runs at the fp16 rate
    assert not {"bf16", "tf32", "int8", "fp8"} & set(v100.compute.peak)
    assert v100.compute_dtype("bf16") == "fp16" and v100.peak_flops("bf16") == _A(125e12)
    assert v100.compute_dtype("int8") == "fp16"


def test_t4_datasheet():
    t4 = load_device("t4")
    # T4 datasheet: FP16/FP32 mixed 65 TF, INT8 130 TOPS, INT4 260 TOPS, FP32 8.1 TF; 16 GB GDDR6 at 320 GB/s; 70 W
    assert t4.peak_flops("fp16") == _A(65e12)
    assert t4.peak_flops("int8") == _A(130e12) and t4.peak_flops("int4") == _A(260e12)
    assert t4.peak_flops("fp32") == _A(8.1e12)
    assert t4.memory_bw_Bps == _A(320e9) and t4.power.tdp == _A(70)
    # nvidia-smi on Tesla T4: 15360MiB total
    assert t4.memory_bytes == _A(15360 * MiB)
    # 40 SMs (2560 CUDA cores / 64), 1024 FP16 FLOP/clk/SM at the 1590 MHz boost -> 65 TF; 4 MB L2
    assert t4.compute.units == 40 and t4.compute.architecture == "sm75"
    assert math.isclose(40 * 1024 * t4.compute.clock, 65e12, rel_tol=5e-3)
    assert t4.level("l2").capacity == _A(4 * MiB)
    # Turing has no BF16 tensor cores: bf16 runs at the fp16 rate
    assert "bf16" not in t4.compute.peak and t4.peak_flops("bf16") == _A(65e12)


def test_a10g_datasheet():
    a10g = load_device("a10g")
    # A10G datasheet for AWS: FP32 35 TF, TF32 35 TF, BF16/FP16 tensor 70 TF dense; 24 GB GDDR6 at 600 GB/s
    assert a10g.peak_flops("bf16") == _A(70e12) and a10g.peak_flops("fp16") == _A(70e12)
    assert a10g.peak_flops("fp32") == _A(35e12) and a10g.peak_flops("tf32") == _A(35e12)
    assert a10g.memory_bw_Bps == _A(600e9)
    # nvidia-smi on g5: NVIDIA A10G 23028MiB, power cap 300 W
    assert a10g.memory_bytes == _A(23028 * MiB) and a10g.power.tdp == _A(300)
    # GA102 with 80 SMs at 512 FP16 FLOP/clk: half the A10's per-SM tensor rate (A10: 72 SMs, 125 TF)
    assert a10g.compute.units == 80 and a10g.compute.architecture == "sm86"
    assert math.isclose(80 * 512 * a10g.compute.clock, 70e12, rel_tol=5e-3)
    a10 = load_device("a10")
    assert a10g.peak_flops("bf16") / a10g.compute.units < 0.6 * a10.peak_flops("bf16") / a10.compute.units
    assert "fp8" not in a10g.compute.peak


@pytest.mark.parametrize("name,sheet_gb", [("v100-sxm2-32gb", 32), ("t4", 16), ("a10g", 24)])
def test_driver_capacity_is_near_the_datasheet(name, sheet_gb):
    # nvidia-smi's MiB total sits within -5%..+8% of the datasheet's decimal GB (as tests/test_hardware.py)
    assert 0.95 < load_device(name).memory_bytes / (sheet_gb * 1e9) < 1.08


def test_prices_are_the_cloud_on_demand_rates():
    # AWS on-demand: p3dn.24xlarge (8x V100 32GB) $31.212/h, g4dn.xlarge (1x T4) $0.526/h, g5.xlarge (1x A10G) $1.006/h
    assert load_device("v100-sxm2-32gb").price.per_hour == pytest.approx(31.212 / 8, abs=0.005)
    assert load_device("t4").price.per_hour == _A(0.526)
    assert load_device("a10g").price.per_hour == _A(1.006)


# --- links and systems ----------------------------------------------------------------------------------------

def test_links():
    nvlink2 = load_hardware("nvlink2")      # V100: 6 NVLink 2 links x 25 GB/s per direction (300 GB/s bidirectional)
    assert nvlink2.type == "nvlink" and nvlink2.bandwidth == _A(6 * 25e9)
    assert nvlink2.bandwidth == _A(load_hardware("nvlink3").bandwidth / 2)   # A100 doubles the link count
    edr = load_hardware("ib-edr")           # InfiniBand EDR: 100 Gb/s per port
    assert edr.type == "infiniband" and edr.bandwidth == _A(100e9 / 8)


def test_dgx_1_v100_resolves():
    dgx1 = load_system("dgx-1-v100")        # DGX-1 datasheet: 8x V100 on NVLink (hybrid cube-mesh), 4x IB EDR 100 Gb/s
    assert (dgx1.gpu.name, dgx1.devices_per_node, dgx1.intra_link.name, dgx1.nic.name, dgx1.nics_per_node) == \
        ("v100-sxm2-32gb", 8, "nvlink2", "ib-edr", 4)
    assert load_device("dgx-1-v100") == load_device("v100-sxm2-32gb")
    # point-to-point NVLink 2: a GPU pair gets a share of the six links, not all of them as through a switch
    from perfsim.cost.comm import topology
    assert topology(dgx1, 2).domain_Bps() == _A(150e9 / 7) and topology(dgx1, 8).domain_Bps() == _A(150e9)
    topo = topology(dgx1, 8)
    assert not topo.nvls                    # no NVSwitch, so no NVLink SHARP
    assert topo.domain_Bps() == _A(150e9)


def test_aws_g5_48xlarge_resolves():
    g5 = load_system("aws-g5-48xlarge")     # AWS: 8x A10G, PCIe Gen4 (no NVLink), 100 Gbps networking
    assert (g5.gpu.name, g5.devices_per_node, g5.intra_link.name, g5.nic.name, g5.nics_per_node) == \
        ("a10g", 8, "pcie4-x16", "ethernet-100g", 1)
    assert g5.intra_link.type == "pcie" and g5.nic.bandwidth == _A(100e9 / 8)
    topo = topology(g5, 8)
    assert topo.link.type == "pcie" and topo.bridge is None and not topo.nvls


# --- the CLI on them ------------------------------------------------------------------------------------------

def test_predict_decode_on_t4(capsys):
    data = run_json(["predict", "-m", "llama-3.1-8b", "-H", "t4", "--dtype", "fp16", "--task", "decode",
                     "--batch", "8", "--context", "1024"], capsys)
    weights = data["memory_breakdown"]["weights"]
    assert weights == _A(2.0 * perfsim.load_model("llama-3.1-8b").params_total)
    # a decode step streams every weight once: never faster than the weights over 320 GB/s of GDDR6
    assert data["latency_s"] > weights / 320e9
    # 16 GB weights plus the KV cache do not fit the T4's 15,360 MiB
    assert data["fits_in_memory"] is False


def test_predict_prefill_on_v100_runs_bf16_at_the_fp16_rate(capsys):
    base = ["predict", "-m", "llama-2-7b", "-H", "v100-sxm2-32gb", "--task", "prefill", "--seq", "2048"]
    bf16 = run_json(base, capsys)
    fp16 = run_json(base + ["--dtype", "fp16"], capsys)
    assert bf16["latency_s"] == _A(fp16["latency_s"])
    # compute bound: never above the 125 TF tensor peak, and within 2x of it (the measured MAMF is ~78% of peak)
    assert bf16["flops"] / bf16["latency_s"] < 125e12
    assert bf16["flops"] / bf16["latency_s"] > 0.5 * 125e12
    assert bf16["fits_in_memory"] is True
    # and says so: Volta has no bf16 tensor cores (plain torch bf16 matmuls there are emulated; engines cast to fp16)
    assert "runs at the fp16 rate" in bf16["assumptions"][0] and "runs at" not in fp16["assumptions"][0]


def test_serve_on_aws_g5_48xlarge(capsys):
    data = run_json(["serve", "-m", "llama-3.1-8b", "-H", "aws-g5-48xlarge", "--num-gpus", "8", "--tp", "8",
                     "--isl", "512", "--osl", "128", "--rate", "2", "--num-requests", "200"], capsys)
    assert data["num_requests"] == 200
    assert data["price_per_gpu_hour"] == _A(1.006) and data["power_cap_w"] == _A(300)
    # each decode step reads an eighth of the 16 GB of weights per GPU over 600 GB/s
    weights_per_gpu = 2.0 * perfsim.load_model("llama-3.1-8b").params_total / 8
    assert data["tpot_s"] > weights_per_gpu / 600e9
    assert 0 < data["ttft_s"] < data["e2e_s"]
