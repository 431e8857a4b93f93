"""More PCIe GPU servers: AWS g6.48xlarge (8x L4) and an 8x GeForce RTX 4090 server whose GPUs cannot use
peer-to-peer, with the host-staged PCIe link (pcie4-x16-no-p2p) fitted to a published nccl-tests result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfsim.cli import main
from perfsim.cost.comm import bus_factor, collective_time, collective_times, topology
from perfsim.cost.comm_params import CommParams
from perfsim.hardware import load_hardware, load_system

MiB = 2**20


def _A(expected: float, rel: float = 1e-9):
    return pytest.approx(expected, rel=rel)


def _busbw(collective: str, size: float, group: int, system) -> float:
    """nccl-tests bus bandwidth of perfsim's predicted time."""
    return bus_factor(collective, group) * size / collective_time(collective, size, group, system)


# --- AWS g6.48xlarge -----------------------------------------------------------------------------------------------

def test_aws_g6_48xlarge_system():
    sys_ = load_system("aws-g6-48xlarge")
    # AWS G6 page / EC2 instance-type specs: 8x NVIDIA L4, no NVLink (PCIe Gen4 x16), 100 Gbps on one network card
    assert sys_.gpu.name == "l4" and sys_.devices_per_node == 8
    assert sys_.intra_link.name == "pcie4-x16" and sys_.intra_link.type == "pcie"
    assert sys_.intra_link.bandwidth == _A(16 * 16e9 * 128 / 130 / 8, rel=5e-3)   # PCIe 4.0 x16: 31.5 GB/s a way
    assert sys_.nic.name == "ethernet-100g" and sys_.nic.type == "ethernet" and sys_.nics_per_node == 1
    assert sys_.nics_per_node * sys_.nic.bandwidth == _A(100e9 / 8)               # 100 Gb/s per instance
    # 8 x 24 GB L4 (the driver reports 23,034 MiB each)
    assert sys_.gpu.memory_bytes == _A(23034 * MiB)


def test_aws_g6_48xlarge_collectives_match_other_pcie4_servers():
    # the same PCIe Gen4 P2P fabric as g6e.48xlarge (l40s-pcie-8x): NCCL's all-reduce does not depend on the GPU
    g6, g6e = load_system("aws-g6-48xlarge"), load_system("l40s-pcie-8x")
    size = 256 * MiB
    assert collective_time("all_reduce", size, 8, g6) == _A(collective_time("all_reduce", size, 8, g6e))
    # across nodes one 100 Gb/s NIC (g6) is slower than four (g6e)
    assert collective_time("all_reduce", size, 16, g6) > collective_time("all_reduce", size, 16, g6e)


# --- 8x RTX 4090 without peer-to-peer --------------------------------------------------------------------------------

# github.com/NVIDIA/nccl/issues/1603: 4x RTX 4090, all_reduce busbw 18 GB/s through SHM (22 GB/s with a P2P patch)
MEASURED_SHM_BUSBW = 18e9
NCCL_BW_EFFICIENCY = 0.78           # perfsim.cost.comm_params.CollectiveParams.bw_efficiency, the fit's divisor


def test_no_p2p_link_is_the_cited_derivation():
    link = load_hardware("pcie4-x16-no-p2p")
    assert link.kind == "link" and link.type == "pcie"
    assert CommParams().nccl.bw_efficiency == NCCL_BW_EFFICIENCY        # the derivation's premise still holds
    assert link.bandwidth == _A(MEASURED_SHM_BUSBW / NCCL_BW_EFFICIENCY, rel=2e-3)   # 18 / 0.78 = 23.08 GB/s
    assert link.bandwidth < load_hardware("pcie4-x16").bandwidth       # host-staged: below the PCIe Gen4 rate
    # p2pBandwidthLatencyTest P2P=Disabled matrix on 8x RTX 4090 (nccl-tests issue 117): median 14.3 us
    assert link.latency == _A(14e-6)


def test_rtx_4090_pcie_8x_system():
    sys_ = load_system("rtx-4090-pcie-8x")
    assert sys_.gpu.name == "rtx-4090" and sys_.devices_per_node == 8
    assert sys_.intra_link.name == "pcie4-x16-no-p2p" and sys_.intra_link.type == "pcie"
    assert sys_.nic.name == "ethernet-100g" and sys_.nics_per_node == 1   # assumed: one 100 GbE port


@pytest.mark.parametrize("group", [4, 8])
def test_rtx_4090_all_reduce_reproduces_the_measurement(group):
    # large-message bus bandwidth comes back to the measured 18 GB/s (4 GPUs measured; 8 GPUs an estimate)
    sys_ = load_system("rtx-4090-pcie-8x")
    assert _busbw("all_reduce", 1024 * MiB, group, sys_) == _A(MEASURED_SHM_BUSBW, rel=0.01)


def test_rtx_4090_all_reduce_slower_than_p2p_over_the_same_pcie():
    size = 256 * MiB
    t_4090 = collective_time("all_reduce", size, 8, load_system("rtx-4090-pcie-8x"))
    t_l40s = collective_time("all_reduce", size, 8, load_system("l40s-pcie-8x"))
    assert t_4090 > t_l40s
    # bandwidth-bound at 256 MB: the ratio is about the two links' bandwidth ratio (31.5 / 23.1)
    assert t_4090 / t_l40s == pytest.approx(31.5 / 23.1, rel=0.02)


@pytest.mark.parametrize("system", ["rtx-4090-pcie-8x", "aws-g6-48xlarge"])
def test_no_custom_all_reduce_over_pcie(system):
    # peer-memory (TensorRT-LLM / vLLM) custom all-reduce needs an NVLink domain; over PCIe NCCL runs instead
    topo = topology(load_system(system), 8)
    sizes = np.array([64e3, 4 * MiB, 256 * MiB])
    assert np.allclose(collective_times("all_reduce", sizes, topo, implementation="trtllm"),
                       collective_times("all_reduce", sizes, topo, implementation="nccl"))


# --- CLI -----------------------------------------------------------------------------------------------------------

def test_cli_serve_on_aws_g6_48xlarge(capsys):
    code = main(["serve", "-m", "llama-3.1-8b", "-H", "aws-g6-48xlarge", "--num-gpus", "8", "--tp", "1",
                 "--isl", "512", "--osl", "128", "--rate", "4", "--num-requests", "200", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads(out)
    assert data["ttft_s"] > 0 and data["tpot_s"] > 0 and data["num_requests"] == 200
