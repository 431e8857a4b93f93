"""Plan search: enumerate every valid parallel plan, drop those that do not fit, rank the rest, Pareto front.

Training plans vary tp, cp, pp, dp (tp x cp x pp x dp GPUs: the GPUs given, or half, a quarter or an eighth
of them, so that cost and energy objectives can leave GPUs idle), ep (MoE), micro-batch, recomputation
(none, selective, full), ZeRO stage (0-3) and pipeline interleaving. Inference plans vary tp, pp, dp and ep.

Speed: the space is built and scored as numpy arrays (one entry per plan); per-layer costs depend only on
(tp, micro-batch, cp, ep) and are priced once per distinct key (perfsim.parallel.costing), so a search over
~10^5 plans costs a few hundred operator evaluations. Redundant plans are not generated: ZeRO > 0 without
data parallelism, micro-batch sizes above `max_micro_batch`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from perfsim.errors import InvalidInputError, check_int, check_number
from perfsim.hardware import Hardware, System, load_hardware
from perfsim.model import ModelSpec, load_model
from perfsim.parallel.costing import Costing
from perfsim.parallel.memory import ModelMemory
from perfsim.parallel.plan import BLOCK_Q, Plan, plan_problems
from perfsim.parallel.step import Options, evaluate_infer, evaluate_train

OBJECTIVES = ("time", "cost", "energy")
RECOMPUTE_NAMES = ("none", "selective", "full")
GPU_FRACTIONS = (1, 2, 4, 8)   # plans may use N, N/2, N/4 or N/8 of the GPUs given


class PlanResult(BaseModel):
    """One ranked plan: its degrees and what it costs."""
    model_config = ConfigDict(frozen=True)

    rank: int
    num_gpus: int
    tp: int
    pp: int
    dp: int
    ep: int
    cp: int
    micro_batch: int
    recompute: str
    zero: int
    interleave: int
    latency_s: float
    tokens_per_s: float
    mfu: float
    memory_per_device_bytes: float
    energy_j: float
    cost: float | None
    pareto: bool

    def plan(self, **options) -> Plan:
        return Plan(tp=self.tp, pp=self.pp, dp=self.dp, ep=self.ep, cp=self.cp, micro_batch=self.micro_batch,
                    recompute=self.recompute, zero=self.zero, interleave=self.interleave, **options)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class SearchResult(BaseModel):
    """Everything a search saw: the ranked feasible plans and counts of what was dropped, and why."""
    model_config = ConfigDict(arbitrary_types_allowed=True)

    task: str
    objective: str
    evaluated: int
    feasible: int
    plans: list[PlanResult]
    dropped: dict[str, int]
    seconds: float = 0.0
    arrays: dict[str, Any] = {}   # every evaluated plan's degrees and metrics (numpy), for charts

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame([p.to_dict() for p in self.plans])


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _gpu_counts(num_gpus: int) -> list[int]:
    return sorted({num_gpus // f for f in GPU_FRACTIONS if num_gpus % f == 0 and num_gpus // f >= 1}, reverse=True)


def _tp_candidates(model: ModelSpec, task: str) -> list[int]:
    out = []
    for t in _divisors(model.num_heads):
        if not plan_problems(Plan(tp=t), model, task=task):
            out.append(t)
    return out


def _check_common(model, hw, num_gpus, objective, max_memory_fraction) -> System:
    if not isinstance(hw, System):
        if num_gpus == 1:
            from perfsim.parallel.step import _single
            return _single(hw)  # type: ignore[return-value]
        raise InvalidInputError(f"hardware: a plan over {num_gpus} GPUs needs a system (e.g. dgx-h100), "
                                f"got {getattr(hw, 'name', hw)!r}")
    check_int("num_gpus", num_gpus)
    avail = hw.devices_per_node * hw.max_nodes
    if num_gpus > avail:
        raise InvalidInputError(f"num_gpus: {num_gpus} exceeds {hw.name}'s {hw.max_nodes} nodes x "
                                f"{hw.devices_per_node} GPUs = {avail}")
    if objective not in OBJECTIVES:
        raise InvalidInputError(f"objective: got {objective!r}; accepted: {', '.join(OBJECTIVES)}")
    check_number("max_memory_fraction", max_memory_fraction, "(a share of the GPU's memory)", high=1.0)
    return hw


# ------------------------------------------------------------------------------------------------ spaces
def train_space(model: ModelSpec, num_gpus: int, global_batch: int, seq: int, max_micro_batch: int = 32,
                attention: str = "flash") -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Every valid training plan as arrays (tp, pp, dp, ep, cp, mb, rc, zero, v) and the count of those
    dropped per rule."""
    L = model.num_layers
    tps = _tp_candidates(model, "train")
    base = []
    for n in _gpu_counts(num_gpus):
        for t in tps:
            if n % t:
                continue
            for c in _divisors(n // t):
                if c > 1 and (attention != "flash" or seq % (2 * c) or seq // c < BLOCK_Q):
                    continue
                for p in _divisors(n // (t * c)):
                    if L % p:
                        continue
                    base.append((t, c, p, n // (t * c * p)))
    dropped: dict[str, int] = {}
    if not base:
        return {k: np.zeros(0, np.int64) for k in ("tp", "pp", "dp", "ep", "cp", "mb", "rc", "zero", "v")}, dropped
    B = np.array(base, dtype=np.int64)
    mbs = np.array([b for b in _divisors(global_batch) if b <= max_micro_batch], dtype=np.int64)
    vs = np.array(_divisors(L), dtype=np.int64)
    eps = np.array(_divisors(model.moe.num_experts) if model.moe else [1], dtype=np.int64)

    def cross(*cols):
        grids = np.meshgrid(*cols, indexing="ij")
        return [g.ravel() for g in grids]

    def drop(name, bad, *cols):
        dropped[name] = dropped.get(name, 0) + int(np.count_nonzero(bad))
        return [c[~bad] for c in cols]

    # stage 1: base degrees x micro-batch x interleave, filtered before the next cross product
    bi, mb, v = cross(np.arange(len(B)), mbs, vs)
    dp, pp = B[bi, 3], B[bi, 2]
    bi, mb, v = drop("global_batch: not a multiple of dp x micro_batch", global_batch % (dp * mb) != 0, bi, mb, v)
    pp = B[bi, 2]
    bi, mb, v = drop("interleave: needs pp > 1 and pp x interleave dividing the layers",
                     (v > 1) & ((pp == 1) | (L % (pp * v) != 0)), bi, mb, v)
    dp, pp = B[bi, 3], B[bi, 2]
    bi, mb, v = drop("interleave: micro-batches not a multiple of pp",
                     (v > 1) & ((global_batch // (dp * mb)) % pp != 0), bi, mb, v)
    # stage 2: expert parallel
    j, ep = cross(np.arange(len(bi)), eps)
    bi, mb, v = bi[j], mb[j], v[j]
    gshard, tpb = B[bi, 3] * B[bi, 1], B[bi, 0]
    bad_ep = (gshard % ep != 0) & ((ep % tpb != 0) | (gshard % np.maximum(1, ep // tpb) != 0))
    bi, mb, v, ep = drop("ep: must divide dp x cp (or be tp x a divisor of it)", bad_ep, bi, mb, v, ep)
    # stage 3: recomputation x ZeRO stage
    j, rc, zero = cross(np.arange(len(bi)), np.arange(3), np.arange(4))
    bi, mb, v, ep = bi[j], mb[j], v[j], ep[j]
    pp, gshard = B[bi, 2], B[bi, 3] * B[bi, 1]
    bi, mb, v, ep, rc, zero = drop("zero: ZeRO-2/3 with pipeline parallelism", (zero >= 2) & (pp > 1),
                                   bi, mb, v, ep, rc, zero)
    gshard = B[bi, 3] * B[bi, 1]
    keep = ~((zero > 0) & (gshard == 1))     # ZeRO without data parallelism is ZeRO-0: not generated twice
    bi, mb, v, ep, rc, zero = (c[keep] for c in (bi, mb, v, ep, rc, zero))
    arrays = {"tp": B[bi, 0], "pp": B[bi, 2], "dp": B[bi, 3], "ep": ep, "cp": B[bi, 1], "mb": mb, "rc": rc,
              "zero": zero, "v": v}
    return arrays, dropped


def infer_space(model: ModelSpec, num_gpus: int, batch: int, task: str) -> tuple[dict[str, np.ndarray], dict]:
    L = model.num_layers
    rows = []
    dropped = {"batch: not a multiple of dp": 0, "ep: must divide dp (or be tp x a divisor of it)": 0}
    eps = _divisors(model.moe.num_experts) if model.moe else [1]
    for n in _gpu_counts(num_gpus):
        for t in _tp_candidates(model, task):
            if n % t:
                continue
            for p in _divisors(n // t):
                if L % p:
                    continue
                d = n // (t * p)
                if batch % d:
                    dropped["batch: not a multiple of dp"] += 1
                    continue
                for e in eps:
                    if d % e and (e % t or d % (e // t)):
                        dropped["ep: must divide dp (or be tp x a divisor of it)"] += 1
                        continue
                    rows.append((t, p, d, e))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return {"tp": arr[:, 0], "pp": arr[:, 1], "dp": arr[:, 2], "ep": arr[:, 3]}, dropped


# ------------------------------------------------------------------------------------------------ ranking
def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats on both x and y (lower is better)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    order = np.lexsort((y, x))
    best = np.inf
    mask = np.zeros(len(x), bool)
    for i in order:
        if y[i] < best:
            mask[i] = True
            best = y[i]
    return mask


def plan(model: str | Path | ModelSpec, hardware: str | Path | Hardware, num_gpus: int, task: str = "train",
         global_batch: int | None = None, seq: int | None = None, context: int | None = None,
         objective: str = "time", max_memory_fraction: float = 0.9, top: int | None = None,
         profile: str | Path | None = "auto", max_micro_batch: int = 32, options: Options | None = None,
         full: bool = False) -> SearchResult:
    """Search every valid plan for `task` on up to `num_gpus` GPUs of `hardware`; rank feasible ones.

    train: global_batch sequences (default: num_gpus) of seq tokens (default: min(max_seq_len, 4096)).
    prefill: global_batch sequences (default 1) of seq tokens; decode: global_batch sequences at `context`
    cached tokens (default: min(max_seq_len, 4096) - 1). objective: time (latency_s), cost (USD per step)
    or energy (J per step). A plan fits when its memory per GPU is at most max_memory_fraction of the GPU's.
    Returns a SearchResult whose `plans` are ranked best first (the `top` best when given).
    """
    import time as _time
    t0 = _time.perf_counter()
    spec = load_model(model)
    hw = load_hardware(hardware)
    system = _check_common(spec, hw, num_gpus, objective, max_memory_fraction)
    if top is not None:
        check_int("top", top)
    check_int("max_micro_batch", max_micro_batch)
    if task not in ("train", "prefill", "decode"):
        raise InvalidInputError(f"task: got {task!r}; accepted: train, prefill, decode")
    default_seq = min(spec.max_seq_len, 4096)
    opts = options or Options(dtype=spec.run_dtype(task))   # inference in the checkpoint's format
    costing = Costing(spec, system, profile, opts.dtype)
    mm = ModelMemory(spec, training=task == "train")
    if task == "train":
        gb = num_gpus if global_batch is None else global_batch
        seq = default_seq if seq is None else seq
        _check_batch_seq(spec, gb, seq, "global_batch")
        arrays, dropped = train_space(spec, num_gpus, gb, seq, max_micro_batch, opts.attention)
        if len(arrays["tp"]) == 0:
            raise InvalidInputError(f"num_gpus: no valid training plan for {spec.name} on {num_gpus} GPUs with "
                                    f"global_batch {gb}: " + _why(dropped))
        r = evaluate_train(costing, arrays, gb, seq, opts, max_memory_fraction, mm)
    else:
        gb = 1 if global_batch is None else global_batch
        if task == "decode":
            context = default_seq - 1 if context is None else context
            seq = None
        else:
            seq = default_seq if seq is None else seq
        _check_batch_seq(spec, gb, seq if task == "prefill" else context + 1, "global_batch")
        arrays, dropped = infer_space(spec, num_gpus, gb, task)
        if len(arrays["tp"]) == 0:
            raise InvalidInputError(f"num_gpus: no valid {task} plan for {spec.name} on {num_gpus} GPUs with "
                                    f"batch {gb}: " + _why(dropped))
        r = evaluate_infer(costing, arrays, task, gb, seq, context, max_memory_fraction, mm=mm)
        arrays = {**arrays, "cp": np.ones_like(arrays["tp"]), "mb": np.ones_like(arrays["tp"]),
                  "rc": np.zeros_like(arrays["tp"]), "zero": np.zeros_like(arrays["tp"]),
                  "v": np.ones_like(arrays["tp"])}
    fits = r["fits"]
    evaluated = len(fits)
    dropped["memory: does not fit"] = int(np.count_nonzero(~fits))
    if not fits.any():
        best = int(np.argmin(r["memory_per_device_bytes"]))
        need = r["memory_per_device_bytes"][best] / 2**30
        have = max_memory_fraction * costing.device.memory_bytes / 2**30
        raise InvalidInputError(f"num_gpus: no plan of {spec.name} fits in {num_gpus} x {costing.device.name} "
                                f"(the leanest needs {need:.1f} GiB per GPU, {have:.1f} GiB allowed by "
                                f"max_memory_fraction {max_memory_fraction}); add GPUs or lower the batch")
    key = {"time": r["latency_s"], "cost": r["cost_usd"], "energy": r["energy_j"]}[objective]
    if objective == "cost" and np.isnan(key).all():
        raise InvalidInputError(f"objective: {costing.device.name} has no price; use time or energy")
    second = r["energy_j"] if objective == "energy" else np.nan_to_num(r["cost_usd"], nan=0.0)
    idx = np.flatnonzero(fits)
    front = np.zeros(evaluated, bool)
    front[idx] = pareto_front(r["latency_s"][idx], second[idx])
    order = idx[np.lexsort((r["memory_per_device_bytes"][idx], r["latency_s"][idx], key[idx]))]
    if top is not None:
        order = order[:top]
    plans = [_result(i, rank + 1, arrays, r, front) for rank, i in enumerate(order)]
    out = SearchResult(task=task, objective=objective, evaluated=evaluated, feasible=int(fits.sum()), plans=plans,
                       dropped=dropped, seconds=_time.perf_counter() - t0)
    if full:
        out.arrays = {**{k: v for k, v in arrays.items()}, **{k: v for k, v in r.items()}, "pareto": front}
    return out


def _check_batch_seq(spec: ModelSpec, batch, seq, field: str) -> None:
    check_int(field, batch)
    check_int("seq", seq)
    if seq > spec.max_seq_len:
        raise InvalidInputError(f"seq: {seq} exceeds {spec.name}'s maximum sequence length {spec.max_seq_len}")


def _why(dropped: dict[str, int]) -> str:
    worst = sorted(((v, k) for k, v in dropped.items() if v), reverse=True)[:2]
    return "; ".join(f"{k} ({v} plans)" for v, k in worst) or "no divisor of the GPU count fits the model's shape"


def _result(i: int, rank: int, arrays, r, front) -> PlanResult:
    cost = float(r["cost_usd"][i])
    return PlanResult(
        rank=rank, num_gpus=int(r["num_gpus"][i]), tp=int(arrays["tp"][i]), pp=int(arrays["pp"][i]),
        dp=int(arrays["dp"][i]), ep=int(arrays["ep"][i]), cp=int(arrays["cp"][i]), micro_batch=int(arrays["mb"][i]),
        recompute=RECOMPUTE_NAMES[int(arrays["rc"][i])], zero=int(arrays["zero"][i]),
        interleave=int(arrays["v"][i]), latency_s=float(r["latency_s"][i]),
        tokens_per_s=float(r["tokens_per_s"][i]), mfu=float(r["mfu"][i]),
        memory_per_device_bytes=float(r["memory_per_device_bytes"][i]), energy_j=float(r["energy_j"][i]),
        cost=None if np.isnan(cost) else cost, pareto=bool(front[i]))


def pareto_figure(result: SearchResult, title: str = ""):
    """Scatter of every feasible plan (step time vs cost, or vs energy), the Pareto front drawn through."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a = result.arrays
    fits = a["fits"]
    lat = a["latency_s"][fits]
    energy = result.objective == "energy"
    y = (a["energy_j"] if energy else a["cost_usd"])[fits]
    front = a["pareto"][fits]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(lat, y, s=6, alpha=0.35, color="tab:gray", label=f"feasible plans ({fits.sum()})")
    order = np.argsort(lat[front])
    ax.plot(lat[front][order], y[front][order], "o-", color="tab:red", ms=4, label="Pareto front")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step latency (s)")
    ax.set_ylabel("energy per step (J)" if energy else "cost per step (USD)")
    ax.set_title(title or f"{result.task}: {result.feasible} feasible of {result.evaluated} plans")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return fig
