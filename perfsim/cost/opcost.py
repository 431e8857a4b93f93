"""OpCost: the time, traffic, bound and energy of one operator on one device."""

from __future__ import annotations

from dataclasses import dataclass

from perfsim.ops import Op


@dataclass(frozen=True, slots=True)
class OpCost:
    op: Op
    time_s: float
    compute_s: float      # FLOPs / achievable peak of the dtype
    memory_s: float       # bytes / achievable bandwidth of the serving level
    overhead_s: float     # launch and host overhead not hidden behind the op
    comm_s: float         # communication on links (collectives)
    bound: str            # compute | memory | comm | overhead
    level: str            # memory level whose traffic bounds the memory term
    energy_j: float = 0.0  # dynamic energy (static power is charged on the whole run)

    @property
    def flops(self) -> float:
        return self.op.flops

    @property
    def bytes(self) -> float:
        return self.op.bytes


def classify(compute_s: float, memory_s: float, overhead_s: float = 0.0, comm_s: float = 0.0) -> str:
    """Name the largest of the terms."""
    terms = {"compute": compute_s, "memory": memory_s, "overhead": overhead_s, "comm": comm_s}
    return max(terms, key=terms.get)
