"""Collective communication time on a system's links: latency-bandwidth (alpha-beta) model.

Ring algorithms (Patarasuk & Yuan 2009; Thakur, Rabenseifner & Gropp 2005), per device of p:
  all-reduce      t = 2(p-1) * alpha + 2(p-1)/p * S / B
  all-gather      t = (p-1) * alpha + (p-1)/p * S / B      (S = gathered output size)
  reduce-scatter  t = (p-1) * alpha + (p-1)/p * S / B      (S = input size)
  all-to-all      t = (p-1) * alpha + (p-1)/p * S / B      (pairwise exchange)
  broadcast       t = (p-1) * alpha + S / B                (pipelined ring)
  send/recv       t = alpha + S / B
Across nodes the inter-node step runs over the NICs, each device sharing its node's NIC bandwidth.
"""

from __future__ import annotations

from perfsim.errors import InvalidInputError
from perfsim.hardware import System

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv")


def ring_time(collective: str, size_bytes: float, p: int, alpha_s: float, bw_Bps: float) -> float:
    """Ring-algorithm time of one collective of `size_bytes` over `p` peers on links of (alpha, B)."""
    if collective not in COLLECTIVES:
        raise InvalidInputError(f"collective: got {collective!r}; accepted: {', '.join(COLLECTIVES)}")
    if p <= 1:
        return 0.0
    if collective == "send_recv":
        return alpha_s + size_bytes / bw_Bps
    if collective == "broadcast":
        return (p - 1) * alpha_s + size_bytes / bw_Bps
    steps = 2 * (p - 1) if collective == "all_reduce" else p - 1
    return steps * alpha_s + steps / p * size_bytes / bw_Bps


def collective_time(collective: str, size_bytes: float, group: int, system: System) -> float:
    """Time of a collective over `group` devices of `system`: within a node, or hierarchical across nodes."""
    link, per_node = system.intra_link, system.devices_per_node
    if group <= per_node:
        return ring_time(collective, size_bytes, group, link.latency, link.bandwidth)
    nic = system.nic
    if nic is None or system.nics_per_node == 0:
        raise InvalidInputError(f"group: {group} devices exceed one node of {system.name} "
                                f"({per_node} devices) and it has no NICs")
    nodes = -(-group // per_node)
    nic_bw = nic.bandwidth * system.nics_per_node / per_node  # each device's share of the node's NICs
    intra = ring_time(collective, size_bytes, per_node, link.latency, link.bandwidth)
    inter = ring_time(collective, size_bytes / per_node, nodes, nic.latency, nic_bw)
    return intra + inter
