"""Collective communication time on a system's links: an NCCL-style latency-bandwidth model.

Notation: p devices in the group, S the message size in bytes (nccl-tests convention: the per-device
buffer for all-reduce, broadcast, send/recv and all-to-all; the gathered output for all-gather; the
input for reduce-scatter), B a link's bandwidth per device per direction (datasheet), alpha a latency.

1. Textbook ring algorithms (Thakur, Rabenseifner & Gropp, "Optimization of Collective Communication
   Operations in MPICH", IJHPCA 2005; Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms for
   clusters of workstations", JPDC 2009; NCCL docs, "Performance reported by NCCL tests": bus bandwidth):
     all-reduce      t = 2(p-1) alpha + 2(p-1)/p * S / B      (reduce-scatter then all-gather)
     all-gather      t =  (p-1) alpha +  (p-1)/p * S / B
     reduce-scatter  t =  (p-1) alpha +  (p-1)/p * S / B
     broadcast       t =  (p-1) alpha +          S / B      (pipelined ring)
     send/recv       t =        alpha +          S / B
     all-to-all      t = ceil(log2 p) alpha + (p-1)/p * S / B (all p-1 exchanges in flight at once on a
                     switch, so latency grows like the log p rounds of Bruck et al., IEEE TPDS 1997)
   The factor in front of S/B is NCCL's "bus bandwidth" factor f(p): busbw = f(p) * S / t.

2. Protocols (NCCL src/graph/tuning.cc and src/enqueue.cc): NCCL times every (algorithm, protocol) pair as
     t = base + steps * alpha_proto + f(p) * S / (busBw * proto_fraction)
   and runs the fastest; so do we. LL sends 4 B of data with a 4 B flag per 8 B store (low latency, a
   quarter of the bandwidth), LL128 120 B per 128 B line (0.92), Simple bulk copies with fences (full
   bandwidth, highest latency). busBw = B * efficiency, the sustained fraction of the datasheet figure.
   As in NCCL, LL128 runs only on all-NVLink paths; send/recv and all-to-all run NCCL's point-to-point
   kernels (LL for small per-peer chunks, else Simple with its own fixed latency, p2p_base_s).
   The minimum of these lines is what bends measured curves from latency- to bandwidth-bound over two
   decades of S, not a single Hockney n_1/2 (which is the same as a larger alpha: for
   eff(S) = eff_max * S / (S + S_half), S / (B eff(S)) = (S + S_half) / (B eff_max)).

3. Hierarchy. A group spans up to three levels, each with its own link and per-step latency:
     scale-up domain  devices on one NVLink/NVSwitch/Infinity Fabric domain (the system's intra-node link,
                      or an NVLink-bridged pair in PCIe servers), bandwidth B per device; a switch gives a
                      device all of B toward any peers, a full mesh of m devices (a link with
                      topology full_mesh: Infinity Fabric, Gaudi's on-chip RoCE) only the
                      links to the group's g-1 peers: B (g-1)/(m-1);
     node             domains of one node joined by PCIe (bridged-pair servers), one PCIe link per crossing;
     scale-out        nodes joined by NICs; a rail-optimized ring routes each channel through a different
                      NIC, so the node's ring bandwidth is the NICs of the group's devices:
                      B_net = nic_bandwidth * min(nics_per_node * d / devices_per_node, max_rails)
                      (d = group devices per node; max_rails, fitted, is how many NICs the library's
                      channels actually drive, all of them on a well-configured DGX).
   A point-to-point transfer across nodes moves its first W bytes (the flow-control window: socket/TCP
   window, NCCL's proxy staging buffer) at a burst rate k times the sustained one, and the rest at the
   sustained rate (a window-limited flow, W / RTT):
     t = max(t_lines(S; k B_nic e_net), base + alpha_net + (S - W) / (B_nic e_net) if S > W)
   A flat ring is paced by its slowest crossing: busBw = min(B_domain e, B_pcie e, B_net e_net). Of the ring's
   steps, 2(N-1) cross nodes for all-reduce (N-1 otherwise), each with the NIC latency of its protocol
   (NCCL's nInterSteps; LL and LL128 poll flags in the receive buffer, Simple waits on a proxy round
   trip per chunk, so Simple's NET latency is a parameter of its own). Across nodes all-reduce may also
   run NCCL's double binary tree (Sanders, Speck & Traff, Parallel Computing 2009): latency
   2((d-1) alpha + log2(N) alpha_net), bandwidth S / (busBw / 2).

4. NVLink SHARP (NVLS, Hopper/Blackwell NVSwitch): the switch reduces and multicasts, each GPU sends and
   receives S once: t = base_nvls + S / (B * e_nvls) (NVIDIA, "NVLink SHARP", Hopper whitepaper 2022).

5. Peer-memory all-reduce (TensorRT-LLM / vLLM custom all-reduce), within one NVLink or Infinity Fabric
   domain (never over PCIe):
     one-shot  t = launch + barrier   + (p-1) * S / (B e_1)       (each GPU reads every peer's buffer)
     two-shot  t = launch + 2 barrier + 2(p-1)/p * S / (B e_2)    (reduce-scatter + all-gather by reads)
     NVLS      t = launch + base_nvls + S / (B e_nvls)            (multimem on NVSwitch systems)

All latencies and efficiencies live in perfsim.cost.comm_params.CommParams (per implementation: nccl,
pytorch, trtllm); defaults are priors from NCCL's tuning tables, fitted by perfsim.calibrate.comm_rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perfsim.cost.comm_params import CollectiveParams, CommParams, CustomAllReduceParams
from perfsim.errors import InvalidInputError
from perfsim.hardware import Link, System, load_hardware

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv")

# NCCL hwLat: PCIe per-step latency relative to NVLink, per protocol (LL, LL128, Simple): 1.0/.47, 2.5/1.9, 5.7/3.4
_PCIE_LATENCY_RATIO = (1.0 / 0.47, 2.5 / 1.9, 5.7 / 3.4)
# NCCL hwLat NET: LL128 per-step latency relative to LL's, 4.0 / 2.7 us
_NET_LL128_RATIO = 4.0 / 2.7
# NVLink generations whose switched systems support NVLS (NVSwitch gen3+ with SHARP)
_NVLS_LINKS = ("nvlink4", "nvlink5", "nvswitch-gen3", "nvswitch-gen4")
# Systems whose devices pair up over an NVLink bridge inside a PCIe node: system -> (devices per bridge, link).
# Read from the System when it carries peer_link / peer_group fields; this table covers the shipped ones.
PEER_DOMAINS = {
    "a100-pcie-nvlink-bridge-4x": (2, "nvlink3-bridge"),
    "h100-nvl-nvlink-bridge-4x": (2, "nvlink4-bridge"),
    "a40-nvlink-bridge-4x": (2, "nvlink3-bridge-a40"),
}


def bus_factor(collective: str, p: int | float) -> float:
    """NCCL's bus-bandwidth factor f(p): bytes each device moves per byte of S on its busiest link."""
    if p <= 1:
        return 0.0
    if collective == "all_reduce":
        return 2.0 * (p - 1) / p
    if collective in ("broadcast", "send_recv"):
        return 1.0
    return (p - 1) / p


def ring_steps(collective: str, p: int) -> int:
    """Latency steps of the ring algorithm (all-to-all: ceil(log2 p) rounds, all exchanges in flight)."""
    if p <= 1:
        return 0
    if collective == "all_reduce":
        return 2 * (p - 1)
    if collective == "send_recv":
        return 1
    if collective == "all_to_all":
        return max(1, math.ceil(math.log2(p)))
    return p - 1


def _check(collective: str) -> None:
    if collective not in COLLECTIVES:
        raise InvalidInputError(f"collective: got {collective!r}; accepted: {', '.join(COLLECTIVES)}")


def ring_time(collective: str, size_bytes: float, p: int, alpha_s: float, bw_Bps: float) -> float:
    """Textbook ring time of one collective of `size_bytes` over `p` peers on links of (alpha, B)."""
    _check(collective)
    if p <= 1:
        return 0.0
    return ring_steps(collective, p) * alpha_s + bus_factor(collective, p) * size_bytes / bw_Bps


# ----------------------------------------------------------------------------------------------- topology
@dataclass(frozen=True)
class Topology:
    """Where a group of `group` devices sits: `per_node` on each of `nodes` nodes."""
    group: int
    per_node: int
    nodes: int
    link: Link               # device-to-device link inside one scale-up domain
    domain: int              # devices per scale-up domain (NVLink/NVSwitch island)
    bridge: Link | None      # link between domains inside a node (PCIe in bridged-pair servers)
    nic: Link | None
    nic_Bps: float           # NIC bandwidth serving the group's devices on one node (all their rails)
    nic_single_Bps: float    # NIC bandwidth one device reaches (its rail)
    nvls: bool               # the domain's switch can reduce (NVLink SHARP)
    mesh_size: int = 0       # devices of a full-mesh domain (Infinity Fabric, Gaudi's RoCE), 0 when switched or bridged

    def domain_Bps(self, peers: int | None = None) -> float:
        """Per-device bandwidth toward `peers` other devices of its domain (default: the group's).

        Switched fabrics (NVSwitch) give every device its full link bandwidth whatever the peers; in a full
        mesh a device reaches each peer over its own link, so it uses peers / (mesh_size - 1) of its links.
        """
        peers = self.in_domain - 1 if peers is None else peers
        if self.mesh_size > 1:
            return self.link.bandwidth * min(1.0, max(peers, 1) / (self.mesh_size - 1))
        return self.link.bandwidth

    @property
    def domains_per_node(self) -> int:
        return -(-self.per_node // self.domain)

    @property
    def in_domain(self) -> int:
        """Devices of the group in one scale-up domain."""
        return min(self.per_node, self.domain)


def _peer_domain(system: System) -> tuple[int, Link] | None:
    link = getattr(system, "peer_link", None)
    if link:
        hw = load_hardware(link) if isinstance(link, str) else link
        return int(getattr(system, "peer_group", 2) or 2), hw
    if system.name in PEER_DOMAINS:
        size, name = PEER_DOMAINS[system.name]
        return size, load_hardware(name)
    return None


def topology(system: System, group: int, devices_per_node: int | None = None) -> Topology:
    """Place `group` devices on `system`: packed onto as few nodes as possible unless `devices_per_node` says."""
    if group < 1:
        raise InvalidInputError(f"group: got {group}; accepted: 1 or more devices")
    sys_dpn = system.devices_per_node
    if devices_per_node is not None and not 1 <= int(devices_per_node) <= sys_dpn:
        raise InvalidInputError(f"devices_per_node: got {devices_per_node}; {system.name} has {sys_dpn} per node")
    d = min(group, sys_dpn if devices_per_node is None else int(devices_per_node))
    nodes = -(-group // d)
    nic = system.nic
    if nodes > 1 and (nic is None or system.nics_per_node == 0):
        raise InvalidInputError(f"group: {group} devices exceed one node of {system.name} "
                                f"({sys_dpn} devices) and it has no NICs")
    rails = system.nics_per_node / sys_dpn if nic is not None else 0.0   # NICs per device
    nic_single = nic.bandwidth * max(1.0, rails) if nic is not None else 0.0
    nic_all = nic.bandwidth * min(system.nics_per_node, max(1.0, rails * d)) if nic is not None else 0.0
    peer = _peer_domain(system)
    if peer is not None:
        domain, link = peer
        bridge = system.intra_link
    else:
        domain, link, bridge = sys_dpn, system.intra_link, None
    nvls = domain >= 4 and (link.type == "nvswitch" or link.name in _NVLS_LINKS)
    mesh = domain if link.full_mesh else 0
    return Topology(group, d, nodes, link, domain, bridge, nic, nic_all, nic_single, nvls, mesh)


# ----------------------------------------------------------------------------------------------- NCCL model
def _alpha(prm: CollectiveParams, link: Link) -> np.ndarray:
    """Per-step latency of (LL, LL128, Simple) on a scale-up link; PCIe costs NCCL's PCI/NVLink ratio more."""
    a = np.array([prm.ll_alpha_s, prm.ll128_alpha_s, prm.simple_alpha_s])
    return a * np.array(_PCIE_LATENCY_RATIO) if link.type == "pcie" else a


def _protocols(prm: CollectiveParams, topo: Topology, p2p: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(fixed latency, bandwidth fraction) of LL, LL128, Simple; LL128 only on all-NVLink paths, as NCCL.

    Point-to-point kernels (send/recv, all-to-all) have their own Simple latency and LL share, and no LL128.
    """
    if p2p:
        base = np.array([prm.ll_base_s, 0.0, prm.p2p_base_s]) + prm.launch_s
        return base, np.array([prm.p2p_ll_bw_fraction, 0.0, 1.0])
    base = np.array([prm.ll_base_s, prm.ll128_base_s, prm.simple_base_s]) + prm.launch_s
    frac = np.array([prm.ll_bw_fraction, prm.ll128_bw_fraction, 1.0])
    pcie = topo.link.type == "pcie" or (topo.bridge is not None and topo.domains_per_node > 1)
    if pcie:
        frac[1] = 0.0
    return base, frac


def _net_Bps(topo: Topology, prm: CollectiveParams) -> float:
    """NIC bandwidth of one node that a collective drives: its devices' rails, at most net_max_rails NICs."""
    return min(topo.nic_Bps, topo.nic.bandwidth * prm.net_max_rails)


def _ring_bus_bw(topo: Topology, prm: CollectiveParams) -> float:
    """Bus bandwidth of a flat ring over the group: its slowest crossing."""
    bw = []
    if topo.in_domain > 1:
        bw.append(topo.domain_Bps() * prm.bw_efficiency)
    if topo.bridge is not None and topo.domains_per_node > 1:
        bw.append(topo.bridge.bandwidth * prm.bw_efficiency)
    if topo.nodes > 1:
        bw.append(_net_Bps(topo, prm) * prm.net_bw_efficiency)
    return min(bw) if bw else topo.domain_Bps() * prm.bw_efficiency


def _lines(latency: np.ndarray, bytes_: np.ndarray, bw: float, frac: np.ndarray) -> np.ndarray:
    """Fastest protocol: min over protocols of latency + bytes / (bw * fraction)."""
    t = np.full(bytes_.shape, np.inf)
    for lat, f in zip(latency, frac, strict=True):
        if f > 0:
            t = np.minimum(t, lat + bytes_ / (bw * f))
    return t


def nccl_time(collective: str, size_bytes, topo: Topology, prm: CollectiveParams) -> np.ndarray:
    """Time of an NCCL collective over `topo` for each size in `size_bytes` (array in, array out)."""
    _check(collective)
    S = np.asarray(size_bytes, dtype=float)
    p, d, N = topo.group, topo.per_node, topo.nodes
    if p <= 1:
        return np.zeros_like(S)
    base, frac = _protocols(prm, topo, p2p=collective in ("send_recv", "all_to_all"))
    a_dom = _alpha(prm, topo.link)
    a_br = _alpha(prm, topo.bridge) if topo.bridge is not None else a_dom
    a_net = np.array([prm.net_alpha_s, prm.net_alpha_s * _NET_LL128_RATIO, prm.net_simple_alpha_s])
    n_dom = topo.domains_per_node

    if collective == "send_recv":
        if N > 1:
            lat, bw = a_net, topo.nic_single_Bps * prm.net_bw_efficiency
            burst = _lines(base + lat, S, bw * prm.net_burst_factor, frac)
            beyond = S - prm.net_window_bytes
            paced = np.where(beyond > 0, base[2] + lat[2] + np.maximum(beyond, 0.0) / bw, 0.0)
            return np.maximum(burst, paced)
        if topo.in_domain > 1:
            lat, bw = a_dom, topo.domain_Bps(1) * prm.bw_efficiency
        else:
            lat, bw = a_br, topo.bridge.bandwidth * prm.bw_efficiency
        return _lines(base + lat, S, bw, frac)

    if collective == "all_to_all":
        g = topo.in_domain   # peers reached over each level, each device's share of S on that level
        terms = [(g - 1) / p * S / (topo.domain_Bps() * prm.bw_efficiency)]
        if topo.bridge is not None and n_dom > 1:
            terms.append((d - g) / p * S / (topo.bridge.bandwidth * prm.bw_efficiency))
        if N > 1:
            terms.append((p - d) / p * S / (_net_Bps(topo, prm) / d * prm.net_bw_efficiency))
        rounds = ring_steps("all_to_all", p)
        lat = a_net if N > 1 else (a_br if n_dom > 1 else a_dom)
        return _lines(base + rounds * lat, np.maximum.reduce(terms), 1.0, frac)

    # ring: all_reduce, all_gather, reduce_scatter, broadcast
    twice = 2 if collective == "all_reduce" else 1
    steps = ring_steps(collective, p)
    n_net = twice * (N - 1)
    n_br = twice * N * (n_dom - 1) if topo.bridge is not None else 0
    n_in = max(steps - n_net - n_br, 0)
    latency = base + n_in * a_dom + n_br * a_br + n_net * a_net
    bus_bw = _ring_bus_bw(topo, prm)
    t = _lines(latency, bus_factor(collective, p) * S, bus_bw, frac)
    if collective == "all_reduce" and N > 1:   # double binary tree across nodes
        tree_lat = base + 2 * ((d - 1) * a_dom + math.log2(N) * a_net)
        t = np.minimum(t, _lines(tree_lat, 2.0 * S, bus_bw, frac))
    if collective == "all_reduce" and N == 1 and topo.nvls and p == d <= topo.domain:
        nvls = prm.launch_s + prm.nvls_base_s + S / (topo.link.bandwidth * prm.nvls_efficiency)
        t = np.minimum(t, nvls)
    return t


def custom_allreduce_time(size_bytes, topo: Topology, prm: CustomAllReduceParams) -> np.ndarray:
    """Peer-memory all-reduce (one-shot / two-shot / NVLS), the fastest, inside one NVLink domain."""
    S = np.asarray(size_bytes, dtype=float)
    p = topo.group
    if p <= 1:
        return np.zeros_like(S)
    B = topo.domain_Bps()
    one = prm.launch_s + prm.barrier_s + (p - 1) * S / (B * prm.oneshot_efficiency)
    two = prm.launch_s + 2 * prm.barrier_s + bus_factor("all_reduce", p) * S / (B * prm.bw_efficiency)
    t = np.minimum(one, two)
    if topo.nvls:
        t = np.minimum(t, prm.launch_s + prm.nvls_base_s + S / (B * prm.nvls_efficiency))
    return t


def collective_times(collective: str, size_bytes, topo: Topology, params: CommParams | None = None,
                     implementation: str = "nccl") -> np.ndarray:
    """Vectorised over sizes: the time of `collective` under an implementation's parameters."""
    params = params or CommParams()
    prm = params.for_implementation(implementation)
    if isinstance(prm, CustomAllReduceParams):
        # peer-memory kernels need a scale-up fabric: over PCIe TensorRT-LLM's AUTO strategy picks NCCL (allreduceOp
        # selectImplementation: no NVLink -> NCCL); vLLM keeps its own for two PCIe GPUs only
        single_domain = topo.nodes == 1 and topo.group <= topo.in_domain and topo.link.type != "pcie"
        if collective == "all_reduce" and single_domain:
            return custom_allreduce_time(size_bytes, topo, prm)
        prm = params.nccl   # custom kernels cover one NVLink domain's all-reduce; NCCL does the rest
    return nccl_time(collective, size_bytes, topo, prm)


def collective_time(collective: str, size_bytes: float, group: int, system: System,
                    params: CommParams | None = None, implementation: str = "nccl",
                    devices_per_node: int | None = None) -> float:
    """Time of a collective over `group` devices of `system`: within a node, or hierarchical across nodes."""
    _check(collective)
    if group <= 1:
        return 0.0
    topo = topology(system, group, devices_per_node)
    return float(collective_times(collective, np.array([float(size_bytes)]), topo, params, implementation)[0])
