"""Collective-communication model (perfsim.cost.comm): formulas by hand, physical monotonicity, topology,
and a validation floor against measured NCCL tables (skipped without the measured data)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfsim.calibrate import comm_rows
from perfsim.calibrate.fit import fit, get
from perfsim.cost.comm import (
    COLLECTIVES,
    bus_factor,
    collective_time,
    collective_times,
    nccl_time,
    ring_steps,
    ring_time,
    topology,
)
from perfsim.cost.comm_params import CollectiveParams, CommParams, CustomAllReduceParams
from perfsim.cost.params import CostParams
from perfsim.errors import DataError, InvalidInputError
from perfsim.hardware import load_device, load_hardware, load_system
from perfsim.validate import score_dataset

US = 1e-6
A100 = load_system("dgx-a100-80gb")     # NVSwitch, no NVLS: rings only within a node
H100 = load_system("dgx-h100")


def _ring_only(alpha: float, eff: float = 1.0, **kw) -> CommParams:
    """Only the Simple ring with no fixed latency: the textbook alpha-beta model."""
    prm = CollectiveParams(launch_s=0.0, simple_base_s=0.0, simple_alpha_s=alpha, bw_efficiency=eff,
                           p2p_base_s=0.0, ll_base_s=1e-4 * 2, ll_bw_fraction=1e-6, ll128_base_s=2e-4,
                           ll128_bw_fraction=1e-6, nvls_base_s=2e-4, nvls_efficiency=1e-6, **kw)
    return CommParams(nccl=prm)


# ------------------------------------------------------------------------------------------- formulas by hand
@pytest.mark.parametrize("p", [2, 3, 4, 8])
@pytest.mark.parametrize("size", [1024.0, 1e6, 3.3e8])
def test_ring_all_reduce_by_hand(p, size):
    alpha, B = 2e-6, A100.intra_link.bandwidth
    expected = 2 * (p - 1) / p * size / B + 2 * (p - 1) * alpha
    assert collective_time("all_reduce", size, p, A100, _ring_only(alpha)) == pytest.approx(expected, rel=1e-12)
    assert ring_time("all_reduce", size, p, alpha, B) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("collective,steps,factor", [
    ("all_gather", lambda p: p - 1, lambda p: (p - 1) / p),
    ("reduce_scatter", lambda p: p - 1, lambda p: (p - 1) / p),
    ("broadcast", lambda p: p - 1, lambda p: 1.0),
    ("send_recv", lambda p: 1, lambda p: 1.0),
    ("all_to_all", lambda p: math.ceil(math.log2(p)), lambda p: (p - 1) / p),
])
@pytest.mark.parametrize("p", [2, 4, 8])
def test_other_collectives_by_hand(collective, steps, factor, p):
    alpha, B, S = 1.5e-6, A100.intra_link.bandwidth, 4e6
    expected = steps(p) * alpha + factor(p) * S / B
    got = collective_time(collective, S, p, A100, _ring_only(alpha))
    assert got == pytest.approx(expected, rel=1e-12)
    assert ring_steps(collective, p) == steps(p) and bus_factor(collective, p) == pytest.approx(factor(p))


def test_efficiency_divides_bandwidth():
    S, p = 64e6, 4
    full = collective_time("all_gather", S, p, A100, _ring_only(0.0, 1.0))
    half = collective_time("all_gather", S, p, A100, _ring_only(0.0, 0.5))
    assert half == pytest.approx(2 * full, rel=1e-12)


def test_fastest_protocol_is_the_minimum_of_the_three_lines():
    prm = CollectiveParams()
    B, p, n = A100.intra_link.bandwidth, 8, 14
    for S in (2048.0, 256e3, 8e6, 512e6):
        f = 2 * (p - 1) / p * S
        lines = [prm.launch_s + prm.ll_base_s + n * prm.ll_alpha_s + f / (B * prm.bw_efficiency * prm.ll_bw_fraction),
                 prm.launch_s + prm.ll128_base_s + n * prm.ll128_alpha_s
                 + f / (B * prm.bw_efficiency * prm.ll128_bw_fraction),
                 prm.launch_s + prm.simple_base_s + n * prm.simple_alpha_s + f / (B * prm.bw_efficiency)]
        assert collective_time("all_reduce", S, p, A100) == pytest.approx(min(lines), rel=1e-12)


def test_nvls_all_reduce_on_hopper_switch_only():
    prm = CommParams()
    assert topology(H100, 8).nvls and not topology(A100, 8).nvls
    S = 1e9
    nvls = prm.nccl.launch_s + prm.nccl.nvls_base_s + S / (H100.intra_link.bandwidth * prm.nccl.nvls_efficiency)
    assert collective_time("all_reduce", S, 8, H100, prm) == pytest.approx(min(nvls, collective_time(
        "all_reduce", S, 8, H100, prm.model_copy(update={"nccl": prm.nccl.model_copy(
            update={"nvls_efficiency": 1e-6})}))), rel=1e-12)


def test_custom_all_reduce_needs_a_scale_up_fabric_not_pcie():
    """TensorRT-LLM's AUTO all-reduce strategy falls back to NCCL without NVLink (allreduceOp.cpp,
    selectImplementation); vLLM disables its custom all-reduce on PCIe beyond two GPUs."""
    pcie = load_system("rtx-pro-6000-pcie-8x")
    nvlink = load_system("dgx-h100")
    for size in (16e3, 1e6, 64e6):
        assert collective_time("all_reduce", size, 8, pcie, implementation="trtllm") == collective_time(
            "all_reduce", size, 8, pcie, implementation="nccl")
    assert collective_time("all_reduce", 16e3, 8, nvlink, implementation="trtllm") < collective_time(
        "all_reduce", 16e3, 8, nvlink, implementation="nccl")


def test_custom_all_reduce_one_and_two_shot_by_hand():
    prm = CustomAllReduceParams()
    B, p = A100.intra_link.bandwidth, 4
    for S in (1024.0, 1e6, 1e9):
        one = prm.launch_s + prm.barrier_s + (p - 1) * S / (B * prm.oneshot_efficiency)
        two = prm.launch_s + 2 * prm.barrier_s + 2 * (p - 1) / p * S / (B * prm.bw_efficiency)
        got = collective_time("all_reduce", S, p, A100, CommParams(trtllm=prm), implementation="trtllm")
        assert got == pytest.approx(min(one, two), rel=1e-12)
    # outside all-reduce the custom kernels do nothing: NCCL's model answers
    assert collective_time("all_gather", 1e6, 4, A100, implementation="trtllm") == collective_time(
        "all_gather", 1e6, 4, A100)


# ------------------------------------------------------------------------------------------------- topology
def test_cross_node_ring_is_paced_by_the_node_nics():
    # 16 GPUs on two DGX H100: busBw = min(NVLink 450 GB/s * e, 8 NICs x 50 GB/s * e_net)
    S, alpha = 1e9, 0.0
    prm = _ring_only(alpha, 1.0, net_alpha_s=0.0, net_simple_alpha_s=0.0, net_bw_efficiency=1.0)
    nic_node = H100.nic.bandwidth * H100.nics_per_node
    expected = 2 * 15 / 16 * S / min(H100.intra_link.bandwidth, nic_node)
    assert collective_time("all_reduce", S, 16, H100, prm) == pytest.approx(expected, rel=1e-9)


def test_cross_node_simple_steps_pay_their_own_net_latency():
    # 2 GPUs on two nodes, Simple ring only: t = 2 net steps of Simple's NIC latency + S / B_net, whatever LL's is
    a_simple, S = 7e-6, 4096.0
    prm = _ring_only(0.0, 1.0, net_alpha_s=90e-6, net_simple_alpha_s=a_simple, net_bw_efficiency=1.0)
    expected = 2 * a_simple + S / A100.nic.bandwidth
    got = collective_time("all_reduce", S, 2, A100, prm, devices_per_node=1)
    assert got == pytest.approx(expected, rel=1e-9)
    slower = prm.nccl.model_copy(update={"net_simple_alpha_s": 2 * a_simple})
    assert collective_time("all_reduce", S, 2, A100, CommParams(nccl=slower), devices_per_node=1) > got


def test_cross_node_send_bursts_one_window_then_paces():
    # no latencies, Simple only: the first W bytes at k x the sustained rate, the rest at the sustained rate
    W, k, eff = 1e6, 4.0, 0.5
    base = dict(launch_s=0.0, p2p_base_s=0.0, ll_base_s=2e-4, p2p_ll_bw_fraction=1e-3, net_alpha_s=0.0,
                net_simple_alpha_s=0.0, net_bw_efficiency=eff)
    topo = topology(A100, 2, 1)
    rate = topo.nic_single_Bps * eff
    plain = CollectiveParams(**base)
    burst = CollectiveParams(**base, net_window_bytes=W, net_burst_factor=k)
    small, big = np.array([0.5 * W]), np.array([100 * W])
    assert nccl_time("send_recv", small, topo, burst)[0] == pytest.approx(0.5 * W / (k * rate), rel=1e-9)
    assert nccl_time("send_recv", big, topo, burst)[0] == pytest.approx(99 * W / rate, rel=1e-9)
    assert nccl_time("send_recv", big, topo, plain)[0] == pytest.approx(100 * W / rate, rel=1e-9)
    # the prior (no burst) leaves every size as the plain protocol lines give it
    sizes = np.geomspace(1e3, 1e9, 50)
    lines = nccl_time("send_recv", sizes, topo, CollectiveParams(net_window_bytes=2**30))
    assert np.allclose(nccl_time("send_recv", sizes, topo, CollectiveParams()), lines, rtol=1e-12)


def test_rails_follow_devices_per_node():
    topo1, topo4 = topology(A100, 2, 1), topology(A100, 8, 4)
    assert topo1.nodes == 2 and topo1.nic_Bps == A100.nic.bandwidth
    assert topo4.nodes == 2 and topo4.nic_Bps == pytest.approx(4 * A100.nic.bandwidth)


@pytest.mark.parametrize("collective", [c for c in COLLECTIVES])
@pytest.mark.parametrize("size", [4096.0, 1e6, 256e6])
def test_cross_node_slower_than_intra_node(collective, size):
    intra = collective_time(collective, size, 8, H100, devices_per_node=8)
    cross = collective_time(collective, size, 8, H100, devices_per_node=4)
    assert cross > intra
    assert collective_time(collective, size, 2, A100, devices_per_node=1) > collective_time(collective, size, 2, A100)


def test_bridged_pairs_use_nvlink_then_pcie():
    sys_ = load_system("a100-pcie-nvlink-bridge-4x")
    pair, four = topology(sys_, 2), topology(sys_, 4)
    assert pair.link.name == "nvlink3-bridge" and pair.domains_per_node == 1
    assert four.domains_per_node == 2 and four.bridge.type == "pcie"
    S = 256e6
    prm = _ring_only(0.0)
    bridge = load_hardware("nvlink3-bridge").bandwidth
    assert collective_time("all_reduce", S, 2, sys_, prm) == pytest.approx(S / bridge)
    pcie = load_hardware("pcie4-x16").bandwidth
    assert collective_time("all_reduce", S, 4, sys_, prm) == pytest.approx(1.5 * S / pcie)


def test_full_mesh_pair_gets_one_link():
    mi = load_system("mi300x-platform")        # 7 Infinity Fabric links of 64 GB/s per GPU, one per peer
    assert topology(mi, 2).domain_Bps() == pytest.approx(mi.intra_link.bandwidth / 7)
    assert topology(mi, 8).domain_Bps() == pytest.approx(mi.intra_link.bandwidth)
    assert topology(H100, 2).domain_Bps() == H100.intra_link.bandwidth   # a switch serves any pair fully


def test_errors_and_trivial_groups():
    with pytest.raises(InvalidInputError):
        collective_time("all_reduce_v", 1e6, 8, H100)
    with pytest.raises(InvalidInputError):
        collective_time("all_reduce", 1e6, 8, load_system("dgx-h100"), devices_per_node=9)
    assert collective_time("all_reduce", 1e6, 1, H100) == 0.0
    assert ring_time("all_gather", 1e6, 1, 1e-6, 1e9) == 0.0


# --------------------------------------------------------------------------------------------- monotonicity
SIZES = st.floats(min_value=1.0, max_value=2e10, allow_nan=False)
SETUPS = st.sampled_from([(A100, 2, 2), (A100, 8, 8), (H100, 8, 8), (H100, 16, 8), (A100, 8, 4), (A100, 2, 1),
                          (load_system("a100-pcie-nvlink-bridge-4x"), 4, 4), (load_system("mi300x-platform"), 4, 4)])
IMPLS = st.sampled_from(["nccl", "pytorch", "trtllm"])


@settings(max_examples=150, deadline=None)
@given(SETUPS, st.sampled_from(COLLECTIVES), SIZES, SIZES, IMPLS)
def test_bigger_message_never_faster(setup, collective, a, b, impl):
    system, group, dpn = setup
    small, big = sorted((a, b))
    t = collective_times(collective, np.array([small, big]), topology(system, group, dpn), CommParams(), impl)
    assert t[1] >= t[0] > 0


@settings(max_examples=150, deadline=None)
@given(SETUPS, st.sampled_from(COLLECTIVES), SIZES, st.floats(min_value=1.0, max_value=16.0), IMPLS)
def test_more_bandwidth_never_slower(setup, collective, size, factor, impl):
    system, group, dpn = setup
    topo = topology(system, group, dpn)
    faster = topo.__class__(**{**topo.__dict__,
                               "link": topo.link.model_copy(update={"bandwidth": topo.link.bandwidth * factor}),
                               "bridge": topo.bridge and topo.bridge.model_copy(
                                   update={"bandwidth": topo.bridge.bandwidth * factor}),
                               "nic_Bps": topo.nic_Bps * factor, "nic_single_Bps": topo.nic_single_Bps * factor})
    slow = collective_times(collective, [size], topo, CommParams(), impl)[0]
    fast = collective_times(collective, [size], faster, CommParams(), impl)[0]
    assert fast <= slow * (1 + 1e-12)


@settings(max_examples=100, deadline=None)
@given(SETUPS, st.sampled_from(COLLECTIVES), SIZES, st.floats(min_value=0.05, max_value=1.0))
def test_higher_efficiency_never_slower(setup, collective, size, eff):
    system, group, dpn = setup
    topo = topology(system, group, dpn)
    lo = CommParams(nccl=CollectiveParams(bw_efficiency=eff * 0.5, net_bw_efficiency=eff * 0.5))
    hi = CommParams(nccl=CollectiveParams(bw_efficiency=eff, net_bw_efficiency=eff))
    assert nccl_time(collective, [size], topo, hi.nccl)[0] <= nccl_time(collective, [size], topo, lo.nccl)[0]


# ------------------------------------------------------------------------------------------ rows and fitting
def _frame() -> pd.DataFrame:
    rows = [("all_reduce", 8, 8, "dgx-h100", "nccl"), ("all_gather", 4, 4, "dgx-a100-80gb", "nccl"),
            ("all_reduce", 16, 8, "a100_dgx", "pytorch"), ("send_recv", 2, 1, "h100_dgx", "pytorch"),
            ("all_reduce", 4, 4, "a100_pairwise_nvlink", "pytorch"), ("all_reduce", 8, 8, "h100_sxm", "trtllm")]
    out = [dict(op=o, num_gpus=p, devices_per_node=d, system=s, implementation=i, size_bytes=float(S),
                crosses_nodes=d < p, measured_s=1e-4)
           for o, p, d, s, i in rows for S in (2048, 1 << 20, 1 << 26)]
    return pd.DataFrame(out)


def test_collective_rows_match_collective_time():
    df = _frame()
    pred = comm_rows.collective_rows(df, CommParams())
    for r, t in zip(df.itertuples(), pred, strict=True):
        system = load_system(comm_rows.perfsim_system(r.system))
        assert t == pytest.approx(collective_time(r.op, r.size_bytes, r.num_gpus, system,
                                                  implementation=r.implementation,
                                                  devices_per_node=r.devices_per_node), rel=1e-12)


def test_free_parameters_exist_and_fit_recovers_known_params():
    df = _frame()
    free = comm_rows.comm_free(df, prefix="")
    params = CommParams()
    for f in free:   # priors sit inside the fitting bounds (an unlimited NIC count is clipped to the NICs)
        value = get(CostParams(comm=params), "comm." + f.path)
        assert f.lo <= value <= f.hi or f.path.endswith("net_max_rails"), f.path
    assert any(f.path == "pytorch.net_bw_efficiency" for f in free)
    assert all(f.path.startswith(("nccl.", "pytorch.", "trtllm.")) for f in free)
    # rows generated by known parameters: the fit should land near them
    truth = CommParams(nccl=CollectiveParams(bw_efficiency=0.55, launch_s=6e-6))
    sizes = np.geomspace(512, 1 << 29, 30)
    df = pd.DataFrame([dict(op=o, num_gpus=p, devices_per_node=p, system="dgx-a100-80gb", implementation="nccl",
                            size_bytes=s, crosses_nodes=False, measured_s=1.0)
                       for o in ("all_reduce", "all_gather") for p in (2, 4, 8) for s in sizes])
    df["measured_s"] = comm_rows.collective_rows(df, truth)
    fitted = fit(df, "collective", load_device("a100-sxm-80gb")).comm
    assert np.abs(comm_rows.collective_rows(df, fitted) / df.measured_s - 1).mean() < 0.02
    assert fitted.nccl.bw_efficiency == pytest.approx(0.55, rel=0.1)


# --------------------------------------------------------------------------------------- validation floor
def _measured_or_skip():
    from perfsim import measured
    try:
        measured.data_root()
    except DataError:
        pytest.skip("measured data (shared/data/measured) not found")
    return measured


def test_validation_floor_aic_nccl():
    """Fitted on a random half of each system's nccl-tests rows, the other half stays within 35% MAPE."""
    _measured_or_skip()
    scores = [s for s in score_dataset("aic-nccl", max_rows=400) if s.group == "all"]
    assert len(scores) == 3
    for s in scores:
        assert s.mape_calibrated < 0.35, (s.dataset, s.mape_calibrated)
        assert s.mape_calibrated < s.mape_uncalibrated


def test_validation_floor_custom_allreduce_and_vidur_h100():
    _measured_or_skip()
    for name in ("aic-h100-custom-allreduce", "vidur-net-h100_dgx-all_reduce",
                 "vidur-net-a100_pairwise_nvlink-send_recv"):
        overall = score_dataset(name, max_rows=400)[0]
        assert overall.mape_calibrated < 0.35, (name, overall.mape_calibrated)


def test_validation_floor_cross_node_vidur_a100():
    """Two DGX A100 nodes over InfiniBand, 2-16 GPUs, 1-8 per node: the NIC model holds on held-out rows."""
    _measured_or_skip()
    for name in ("vidur-net-a100_dgx-all_reduce", "vidur-net-a100_dgx-send_recv"):
        overall = score_dataset(name, max_rows=600)[0]
        assert overall.mape_calibrated < 0.25, (name, overall.mape_calibrated)
        assert overall.mape_calibrated < overall.mape_uncalibrated
