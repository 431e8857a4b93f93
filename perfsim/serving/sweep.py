"""Load sweeps and capacity search over one deployment.

A sweep runs the same deployment at several loads (closed-loop concurrencies or Poisson rates) and gives the
latency-throughput curve that serving benchmarks plot: output tokens/s per GPU against tokens/s per user
(1 / mean TPOT, the "interactivity" axis of NVIDIA's and SemiAnalysis's throughput-interactivity charts), and
TTFT against throughput. Capacity is the highest Poisson rate whose SLO attainment (the share of requests that
meet every SLO) reaches a goal: DistServe's goodput definition (Zhong et al., OSDI 2024, 90% by default there).

    from perfsim.serving.sweep import capacity, sweep
    points = sweep(lambda c: serve("llama-3.1-8b", "h100-sxm", concurrency=c), [1, 4, 16, 64])
    best = capacity(lambda r: serve("llama-3.1-8b", "h100-sxm", rate=r, slo_ttft=0.5, slo_tpot=0.05),
                    saturated_rate=20.0)   # requests/s with every request waiting; searched up to twice it
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from perfsim.errors import InvalidInputError, check_int, check_number

MAX_POINTS = 64          # loads in one sweep
BISECTIONS = 8           # capacity: the rate bracket is halved this many times (to 1/256 of its top)
DEFAULT_ATTAINMENT = 0.9  # DistServe's SLO attainment goal


def parse_loads(text: str, flag: str, integer: bool, low: float, what: str = "") -> list:
    """Comma-separated loads ('4' or '1,4,16'): each an integer >= low (integer) or a finite number >= low,
    at most MAX_POINTS of them, in the order given, duplicates dropped; a one-line error naming `flag`."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts) or len(parts) > MAX_POINTS:
        raise InvalidInputError(f"{flag}: expected a number or up to {MAX_POINTS} comma-separated numbers, "
                                f"got {text!r}")
    out = []
    for p in parts:
        try:
            value = float(p)
        except ValueError:
            raise InvalidInputError(f"{flag}: expected a number or comma-separated numbers, got {p!r}") from None
        if integer:
            if not value.is_integer():
                raise InvalidInputError(f"{flag}: must be an integer >= {low:g}, got {p!r}")
            value = check_int(flag, int(value), int(low))
        else:
            value = check_number(flag, value, what, low=low, inclusive=True)
        if value not in out:
            out.append(value)
    return out


@dataclass
class SweepPoint:
    """One load of a sweep and its serve() result."""
    load: float
    result: object

    def row(self) -> dict:
        """The figures a sweep table shows."""
        s = self.result.summary
        tpot = s["tpot_s"]
        return {"load": self.load, "ttft_s": s["ttft_s"], "ttft_p99_s": s["ttft_p99_s"], "tpot_s": tpot,
                "tpot_p99_s": s["tpot_p99_s"], "throughput_tokens_per_s": s["throughput_tokens_per_s"],
                "throughput_tokens_per_s_per_gpu": s["throughput_tokens_per_s_per_gpu"],
                "tokens_per_s_per_user": 1.0 / tpot if tpot and tpot > 0 else None,
                "requests_per_s": s["requests_per_s"], "slo_attainment": s["slo_attainment"],
                "energy_per_token_j": s["energy_per_token_j"],
                "cost_per_million_tokens_usd": s["cost_per_million_tokens_usd"]}


def sweep(run: Callable[[float], object], loads: list) -> list[SweepPoint]:
    """run(load) -> ServeResult at each load, in order."""
    return [SweepPoint(load, run(load)) for load in loads]


def best_within_slo(points: list[SweepPoint], goal: float = DEFAULT_ATTAINMENT) -> SweepPoint | None:
    """The load with the most output tokens/s per GPU among those whose SLO attainment reaches `goal` (the
    operating point a deployment would pick); None when no load does."""
    ok = [p for p in points if p.result.summary["slo_attainment"] >= goal]
    return max(ok, key=lambda p: p.result.summary["throughput_tokens_per_s_per_gpu"]) if ok else None


def max_rate(meets: Callable[[float], bool], hi: float, bisections: int = BISECTIONS) -> float:
    """The highest rate below hi at which meets(rate) holds, by bisection of [0, hi] (meets assumed to hold below
    some rate and fail above it): within hi / 2^bisections of it; 0.0 when every probed rate fails."""
    lo = 0.0
    for _ in range(bisections):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


@dataclass
class Capacity:
    """The highest Poisson rate meeting the SLO attainment goal, its serve() result (None when no rate does) and
    the saturated rate the search started from."""
    rate: float
    result: object | None
    saturated_rate: float
    attainment_goal: float
    at_top: bool = False   # every probe met the goal: the capacity is at least `rate`


def saturated_rate(summary: dict) -> float:
    """Requests/s of a run with every request waiting at once (a serve() summary): its output tokens/s while
    saturated over the output tokens per request; the whole run's rate where no window was saturated."""
    tokens = summary["saturated_tokens_per_s"]
    if tokens is None or not math.isfinite(tokens) or tokens <= 0:
        return summary["requests_per_s"]
    return tokens * summary["requests_per_s"] / summary["throughput_tokens_per_s"]


def capacity(run: Callable[[float], object], saturated_rate: float, goal: float = DEFAULT_ATTAINMENT,
             bisections: int = BISECTIONS) -> Capacity:
    """The highest Poisson rate r < 2 x saturated_rate whose run(r) has slo_attainment >= goal. run must apply
    the SLOs (serve(..., slo_ttft=, slo_tpot=)); saturated_rate is the deployment's rate with every request
    waiting (an upper bound on what it sustains)."""
    goal = check_number("slo-attainment", goal, "(a share of the requests)", low=0.0, high=1.0)
    saturated_rate = check_number("saturated_rate", saturated_rate, "requests/s")
    seen: dict[float, object] = {}

    def meets(rate: float) -> bool:
        seen[rate] = res = run(rate)
        return res.summary["slo_attainment"] >= goal

    top = 2.0 * saturated_rate
    rate = max_rate(meets, top, bisections)
    return Capacity(rate, seen.get(rate), saturated_rate, goal, at_top=rate >= top * (1.0 - 1.5 / 2 ** bisections))


def curve_figure(points: list[SweepPoint], load_name: str, title: str):
    """Two panels: output tokens/s per GPU against tokens/s per user, and mean / p99 TTFT against output
    tokens/s; each point labelled with its load."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [p.row() for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3))
    user = [r["tokens_per_s_per_user"] or 0.0 for r in rows]
    per_gpu = [r["throughput_tokens_per_s_per_gpu"] for r in rows]
    left.plot(user, per_gpu, "o-", color="C0")
    tput = [r["throughput_tokens_per_s"] for r in rows]
    right.plot(tput, [r["ttft_s"] * 1e3 for r in rows], "o-", color="C1", label="mean TTFT")
    right.plot(tput, [r["ttft_p99_s"] * 1e3 for r in rows], "s--", color="C3", label="p99 TTFT")
    for r, x, y, x2 in zip(rows, user, per_gpu, tput, strict=True):
        label = f"{load_name} {r['load']:g}"
        left.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        right.annotate(label, (x2, r["ttft_s"] * 1e3), textcoords="offset points", xytext=(4, 4), fontsize=7)
    left.set_xlabel("output tokens/s per user (1 / mean TPOT)")
    left.set_ylabel("output tokens/s per GPU")
    right.set_xlabel("output tokens/s")
    right.set_ylabel("TTFT (ms)")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
