"""The GEMM efficiency model's mechanisms, each checked against its closed form."""

import numpy as np

from perfsim.cost.gemm import K_STEP, DeviceRoofs, gemm_time
from perfsim.cost.params import GemmParams
from perfsim.hardware import load_device

ROOFS = DeviceRoofs.of(load_device("h100-sxm"))
PEAK = load_device("h100-sxm").peak_flops("bf16")


def _time(m, n, k, p):
    return gemm_time(np.atleast_1d(m), n, k, 1.0, 2.0, 2.0, 2.0, PEAK, ROOFS, p)


def test_a_lone_cta_walks_k_in_serial_steps():
    """One small tile, no split-K: t = launch + ceil(k / 64) * L / f + tile overhead, linear in k."""
    p = GemmParams(k_step_cycles=160.0, split_k_s=1.0, tile_overhead_cycles=800.0, launch_s=2e-6,
                   bandwidth_saturation=0.005, overlap=64.0)  # the few weight bytes stream at full bandwidth
    k = np.array([512.0, 1024.0, 2048.0])
    t = _time(np.full(3, 8.0), 32.0, k, p)
    steps = np.ceil(k / K_STEP) * p.k_step_cycles / ROOFS.clock_hz
    assert np.allclose(t, p.launch_s + steps + p.tile_overhead_cycles / ROOFS.clock_hz, rtol=0.05)


def test_split_k_pays_its_reduction_only_when_k_is_long():
    p = GemmParams(k_step_cycles=160.0, split_k_s=2.5e-6, tile_overhead_cycles=800.0, launch_s=2e-6)
    serial = GemmParams(**{**p.model_dump(), "split_k_s": 1.0})
    short, long_ = _time(8.0, 32.0, 512.0, p), _time(8.0, 32.0, 32768.0, p)
    assert np.isclose(short, _time(8.0, 32.0, 512.0, serial))         # too short to split: serial
    assert long_ < _time(8.0, 32.0, 32768.0, serial) - 5e-6           # long: splitting wins despite its pass
    assert long_ >= p.launch_s + p.split_k_s                          # and is charged that pass
