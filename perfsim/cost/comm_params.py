"""Parameters of the collective-communication model (perfsim.cost.comm), one set per implementation.

Every parameter is a latency in seconds or a fraction of a datasheet bandwidth, so a set fitted on one
system carries over to another through its link specs. Defaults are priors: NCCL's own tuning constants
(src/graph/tuning.cc, baseLat/hwLat tables and its LL/LL128 bandwidth factors) where NCCL has one, and
otherwise typical published nccl-tests behaviour. Ranges are the physical bounds used when fitting.

  nccl      nccl-tests: NCCL kernels timed back to back on the GPU (CUDA events around many iterations)
  pytorch   torch.distributed over NCCL (e.g. vidur's profiles): NCCL plus Python dispatch and timing
  trtllm    TensorRT-LLM custom all-reduce (one-shot / two-shot over NVLink peer memory, NVLS multimem)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CollectiveParams(_Params):
    """NCCL-style collectives: ring/tree (and NVLS) algorithms under the LL, LL128 and Simple protocols.

    Time of one (algorithm, protocol) pair, the NCCL tuner's model:
        t = launch_s + base + steps_intra * alpha + steps_net * net_alpha + bus_bytes / (B * efficiency)
    and the collective takes the fastest pair, as NCCL's tuner picks one per call.
    """
    launch_s: float = Field(4e-6, ge=0, le=500e-6,
                            description="kernel launch and timing overhead per call, outside NCCL's own latency "
                                        "(the device specs' launch_overhead, 3-6 us)")
    # LL: 8-byte stores of 4 B data + 4 B flag, no fences; lowest latency, a fraction of the bandwidth
    ll_base_s: float = Field(3.6e-6, ge=0, le=200e-6, description="LL fixed latency (NCCL baseLat ring/LL 3.6 us)")
    ll_alpha_s: float = Field(0.47e-6, ge=0, le=20e-6,
                              description="LL latency per ring step on NVLink (NCCL hwLat 0.47 us; PCIe x2.1)")
    ll_bw_fraction: float = Field(0.25, gt=0, le=1,
                                  description="LL share of the bulk bandwidth (NCCL: 1/4 for all-reduce)")
    # LL128: 128-byte lines of 120 B data + 8 B flag
    ll128_base_s: float = Field(10e-6, ge=0, le=200e-6, description="LL128 fixed latency (NCCL baseLat 10 us)")
    ll128_alpha_s: float = Field(1.9e-6, ge=0, le=20e-6, description="LL128 latency per step on NVLink (NCCL 1.9 us)")
    ll128_bw_fraction: float = Field(0.92, gt=0, le=1, description="LL128 share of the bulk bandwidth (120/128)")
    # Simple: bulk copies with memory fences per chunk; full bandwidth, highest latency
    simple_base_s: float = Field(8.4e-6, ge=0, le=200e-6, description="Simple fixed latency (NCCL baseLat 8.4 us)")
    simple_alpha_s: float = Field(3.4e-6, ge=0, le=50e-6, description="Simple latency per step on NVLink (NCCL 3.4 us)")
    # point-to-point kernels (send/recv, all-to-all): NCCL's p2p path uses LL only up to 16 KiB per peer
    p2p_base_s: float = Field(8.4e-6, ge=0, le=200e-6, description="Simple fixed latency of send/recv and all-to-all")
    p2p_ll_bw_fraction: float = Field(0.05, gt=0, le=1,
                                      description="LL share of the bulk bandwidth in p2p kernels (one warp per peer)")
    bw_efficiency: float = Field(0.78, gt=0, le=1,
                                 description="sustained fraction of the scale-up link bandwidth (NVLink/PCIe) "
                                             "in bulk transfers; NCCL caps A100 bus bandwidth at 235 of 300 GB/s")
    # NVLink SHARP (NVLS): the NVSwitch reduces and multicasts, each GPU moves S each way
    nvls_base_s: float = Field(12e-6, ge=0, le=200e-6, description="NVLS fixed latency")
    nvls_efficiency: float = Field(0.60, gt=0, le=1,
                                   description="NVLS all-reduce algorithm bandwidth as a fraction of link bandwidth")
    # scale-out (NICs)
    net_alpha_s: float = Field(2.7e-6, ge=0, le=100e-6,
                               description="LL latency per inter-node step (NCCL hwLat NET 2.7 us; "
                                           "LL128 scales it by NCCL's 4.0/2.7)")
    net_simple_alpha_s: float = Field(9.6e-6, ge=0, le=300e-6,
                                      description="Simple latency per inter-node step (NCCL hwLat NET 9.6 us): "
                                                  "a proxy round trip per chunk, apart from LL's flag polling")
    net_bw_efficiency: float = Field(0.80, gt=0, le=1,
                                     description="sustained fraction of the NIC bandwidth a device's rail delivers")
    net_window_bytes: float = Field(4 * 2**20, ge=64 * 2**10, le=2**30,
                                    description="bytes a point-to-point transfer over the network moves at the "
                                                "burst rate before flow control paces it to the sustained rate "
                                                "(socket/TCP window, NCCL's proxy staging buffer: NCCL_BUFFSIZE, "
                                                "4 MiB by default)")
    net_burst_factor: float = Field(1.0, ge=1.0, le=16.0,
                                    description="how much faster than the sustained NIC rate the first window of a "
                                                "point-to-point transfer goes (1: no burst)")
    net_max_rails: float = Field(64.0, ge=1, le=1024,
                                 description="most NICs of a node one collective's channels drive at once "
                                             "(NCCL spreads channels over every rail of a DGX: no limit)")


class CustomAllReduceParams(_Params):
    """Peer-memory all-reduce (TensorRT-LLM custom all-reduce, vLLM custom all-reduce).

    one-shot: every GPU reads all p-1 peers' whole buffers and reduces locally; one barrier.
        t = launch_s + barrier_s + (p-1) * S / (B * oneshot_efficiency)
    two-shot: reduce-scatter then all-gather by direct peer reads; two barriers.
        t = launch_s + 2 barrier_s + 2 (p-1)/p * S / (B * bw_efficiency)
    NVLS (NVSwitch multimem, Hopper+): t = launch_s + nvls_base_s + S / (B * nvls_efficiency)
    """
    launch_s: float = Field(2.5e-6, ge=0, le=200e-6, description="kernel launch (CUDA graphs in TensorRT-LLM)")
    barrier_s: float = Field(0.5e-6, ge=0, le=50e-6, description="one cross-GPU flag barrier over NVLink")
    oneshot_efficiency: float = Field(0.5, gt=0, le=1,
                                      description="fraction of link bandwidth one-shot peer reads sustain")
    bw_efficiency: float = Field(0.78, gt=0, le=1, description="fraction of link bandwidth two-shot sustains")
    nvls_base_s: float = Field(10e-6, ge=0, le=200e-6, description="NVLS multimem all-reduce fixed latency")
    nvls_efficiency: float = Field(0.60, gt=0, le=1, description="NVLS algorithm bandwidth / link bandwidth")


def _pytorch_prior() -> CollectiveParams:
    # torch.distributed: NCCL plus Python dispatch, the c10d work object and event timing (~10-30 us)
    return CollectiveParams(launch_s=20e-6)


class CommParams(_Params):
    """Collective-communication parameters by implementation (see the module docstring)."""
    nccl: CollectiveParams = CollectiveParams()
    pytorch: CollectiveParams = Field(default_factory=_pytorch_prior)
    trtllm: CustomAllReduceParams = CustomAllReduceParams()

    def for_implementation(self, implementation: str) -> CollectiveParams | CustomAllReduceParams:
        """The parameter set of an implementation; unknown names (e.g. 'rccl', 'vllm') get NCCL's."""
        impl = IMPLEMENTATION_ALIASES.get(implementation, implementation)
        return getattr(self, impl) if impl in ("nccl", "pytorch", "trtllm") else self.nccl


IMPLEMENTATION_ALIASES = {"torch": "pytorch", "custom": "trtllm", "custom_allreduce": "trtllm", "rccl": "nccl"}
IMPLEMENTATIONS = ("nccl", "pytorch", "trtllm")
