"""Spot checks of the measured maximum-achievable-matmul (mamf) figures in hardware/devices/, and the invariant
that no measured figure exceeds the device's own peak for the format."""

from __future__ import annotations

import pytest

from perfsim.cost.calibrated import achievable_ratio
from perfsim.hardware import Device, list_hardware, load_device

TF = 1e12
ZZC = "github.com/zzc0721/torch-performance-test-data"

# (device, format, published TFLOP/s): the best of torch.matmul at 1024..10240 square shapes
PUBLISHED = [
    ("a10g", "bf16", 69.47),        # ZZC issue 126 (NVIDIA A10G, torch 2.7.0+cu128), 10240 x 10240
    ("a40", "bf16", 122.29),        # ZZC issue 185 (NVIDIA A40, torch 2.11.0+cu128), 10240 x 10240
    ("h100-pcie", "bf16", 495.93),  # ZZC issue 95 (NVIDIA H100 PCIe, torch 2.9.0+cu128), 4096 x 4096
    ("h20", "bf16", 142.25),        # ZZC issue 77 (NVIDIA H20, torch 2.7.0+cu128), 10240 x 10240
    ("l4", "bf16", 70.89),          # ZZC issue 120 (NVIDIA L4, torch 2.9.0+cu128), 2048 x 2048
    ("rtx-a6000", "bf16", 123.34),  # ZZC issue 46 (NVIDIA RTX A6000, torch 2.8.0+cu128), shape not given
    ("t4", "fp16", 42.71),          # ZZC database.md, NVIDIA Tesla T4 16GB (Kaggle, PyTorch 2.6.0 + CUDA 12.4)
    ("mi210", "bf16", 130.83),      # ZZC issue 195 (AMD Instinct MI210, torch 2.13.0+rocm7.2), 10240 x 10240
    ("rtx-pro-6000-blackwell", "bf16", 417.3),  # ZZC issue 161 (RTX PRO 6000 Blackwell Server Edition, torch
    #                                             2.7.0+cu128), 417.34 at 8192 x 8192
    ("rtx-3090", "bf16", 76.68),    # ZZC issue 20 (NVIDIA GeForce RTX 3090, torch 2.8.0+cu128), shape not given
    ("rtx-4090", "bf16", 164.81),   # ZZC issue 78 (NVIDIA GeForce RTX 4090, torch 2.7.0+cu128), 2048 x 2048
    ("rtx-5090", "bf16", 240.05),   # ZZC issue 96 (NVIDIA GeForce RTX 5090, torch 2.7.0+cu128), 10240 x 10240
]


@pytest.mark.parametrize("name, fmt, tflops", PUBLISHED)
def test_mamf_matches_published_figure(name, fmt, tflops):
    dev = load_device(name)
    assert dev.compute.mamf[fmt] == pytest.approx(tflops * TF, rel=1e-12)
    # a measured figure is recorded only in a format the device has a peak for
    assert fmt in dev.compute.peak


def test_no_bf16_mamf_where_bf16_runs_at_the_fp16_rate():
    """T4 has no bf16 tensor cores: its figure is keyed fp16, and a bf16 matmul's ratio reads it through promotion."""
    t4, h100 = load_device("t4"), load_device("h100-sxm")
    assert "bf16" not in t4.compute.mamf and "bf16" not in t4.compute.peak
    expected = (42.71 / 65) / (794.5 / 989.4)
    assert achievable_ratio(t4, h100, "bf16") == pytest.approx(expected, rel=1e-3)


def test_mamf_never_exceeds_peak():
    """A max-achievable figure above the peak means the peak (or its accumulate mode) is wrong, not the kernel."""
    checked = 0
    devices = [hw for hw in list_hardware() if isinstance(hw, Device)]
    assert len(devices) > 30
    for dev in devices:
        name = dev.name
        for fmt, value in dev.compute.mamf.items():
            assert fmt in dev.compute.peak, f"{name}: mamf {fmt} has no peak"
            assert value <= dev.compute.peak[fmt], f"{name}: mamf {fmt} {value / TF:.1f} > peak"
            checked += 1
    assert checked >= len(PUBLISHED)
