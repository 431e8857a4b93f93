"""Score the training-step model against published end-to-end training runs.

Rows live in tests/data/published_training_runs.yaml (Korthikanti et al. 2022 Table 4 iteration times;
Narayanan et al. 2021 Table 1 per-GPU throughput; Llama 3 405B's pre-training throughput on H100; DeepSeek-V3's on
H800), each with its source. `compare()` predicts every row
with perfsim.parallel.train_step and returns the signed and absolute percentage errors.

Nothing here is fitted to these rows: operator costs come from the device's calibration profile (or the
priors of the calibrated model when no profile ships), overlap follows what the software of the time did.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from perfsim.calibrate.profile import Profile, resolve
from perfsim.errors import DataError
from perfsim.hardware import load_hardware
from perfsim.model import ModelSpec, load_model
from perfsim.parallel.plan import Plan, plan_problems
from perfsim.parallel.step import train_step
from perfsim.published_runs import DATA_DIR, Comparison
from perfsim.published_runs import load_runs as _load_runs

DEFAULT_PATH = DATA_DIR / "published_training_runs.yaml"
SEARCH_MICRO_BATCHES = (1, 2, 4, 8)
SEARCH_RECOMPUTE = ("none", "selective", "full")


def load_runs(path: str | Path | None = None) -> list[dict]:
    return _load_runs(path or DEFAULT_PATH, "training")


def gpt_model(row: dict) -> ModelSpec:
    """The GPT-3 style model of a row given by its shape (Megatron: 4h MLP, GELU, learned positions, tied)."""
    g = row["gpt"]
    h = g["hidden"]
    return ModelSpec(name=f"gpt-{row['id']}", family="megatron-gpt", source=row["source"], hidden_size=h,
                     num_layers=g["layers"], num_heads=g["heads"], intermediate_size=4 * h,
                     vocab_size=row.get("vocab", 51200), max_seq_len=row["seq"], mlp="plain", activation="gelu",
                     norm="layernorm", position="learned", tie_embeddings=True, qkv_bias=True, out_bias=True,
                     mlp_bias=True)


def narayanan_flops(model: ModelSpec, batch: int, seq: int) -> float:
    """Narayanan et al. 2021 Eq. 3: FLOPs per iteration with full recomputation."""
    h, L, V = model.hidden_size, model.num_layers, model.vocab_size
    return 96.0 * batch * seq * L * h * h * (1 + seq / (6 * h) + V / (16 * L * h))


def palm_flops(model: ModelSpec, batch: int, seq: int) -> float:
    """Model FLOPs of a training step by Chowdhery et al. 2022 (PaLM), App. B: (6 N + 12 L H Q T) per token."""
    per_token = 6.0 * model.params_total + 12.0 * model.num_layers * model.num_heads * model.dim_head * seq
    return per_token * batch * seq


def default_profile(device_name: str, profile="auto"):
    """'auto': the device's shipped profile (or the transfer profile), else the calibrated model's priors
    (perfsim.cost.params defaults) rather than the bare roofline; None: the roofline; or a profile path."""
    prof = resolve(profile, device_name)
    if prof is None and profile == "auto":
        return Profile(device=device_name)
    return prof


def predict_row(row: dict, profile="auto") -> Comparison:
    model = gpt_model(row) if "gpt" in row else load_model(row["model"])
    system = load_hardware(row["hardware"])
    prof = default_profile(system.gpu.name, profile)
    gb, seq, n = row["global_batch"], row["seq"], row["num_gpus"]
    tp, pp = row["tp"], row["pp"]
    dp = row.get("dp") or n // (tp * pp)
    common = dict(tp=tp, pp=pp, dp=dp, ep=row.get("ep", 1), zero=row.get("zero", 0),
                  sequence_parallel=row["sequence_parallel"], attention=row["attention"],
                  dtype=row["dtype"], dp_overlap=row["dp_overlap"], ep_overlap=row.get("ep_overlap", False),
                  dispatcher=row.get("dispatcher", "alltoall"), stage_layout=row.get("stage_layout", "even"))
    mbs = SEARCH_MICRO_BATCHES if row["micro_batch"] == "search" else (row["micro_batch"],)
    lps = -(-model.num_layers // pp)   # the heaviest stage's layers, when the stages are uneven
    vs = [v for v in range(1, lps + 1) if lps % v == 0] if row["interleave"] == "search" else [row["interleave"]]
    rcs = SEARCH_RECOMPUTE if row["recompute"] == "search" else (row["recompute"],)
    searched = len(mbs) * len(vs) * len(rcs) > 1
    best = None
    for mb, v, rc in itertools.product(mbs, vs, rcs):
        plan = Plan(micro_batch=mb, interleave=v, recompute=rc, **common)
        if plan_problems(plan, model, global_batch=gb, seq=seq):
            continue
        est = train_step(model, system, plan, gb, seq, profile=prof)
        if searched and not est.fits_in_memory:
            continue
        if best is None or est.latency_s < best[1].latency_s:
            best = (plan, est)
    if best is None:
        raise DataError(f"{row['id']}: no valid plan for the published configuration")
    plan, est = best
    if row["metric"] == "iteration_time_s":
        predicted = est.latency_s
    elif row["metric"] == "tflops_per_gpu":
        predicted = narayanan_flops(model, gb, seq) / (n * est.latency_s) / 1e12
    elif row["metric"] == "palm_tflops_per_gpu":
        predicted = palm_flops(model, gb, seq) / (n * est.latency_s) / 1e12
    elif row["metric"] == "tokens_per_s_per_gpu":
        predicted = gb * seq / (n * est.latency_s)
    else:
        raise DataError(f"{row['id']}: unknown metric {row['metric']!r}")
    return Comparison(id=row["id"], source=row["source"], metric=row["metric"], published=float(row["value"]),
                      predicted=float(predicted), plan=plan.degrees(), assumed=row.get("assumed", []))


def compare(path: str | Path | None = None, profile="auto", prefix: str | None = None) -> list[Comparison]:
    return [predict_row(r, profile) for r in load_runs(path) if prefix is None or r["id"].startswith(prefix)]


def mean_abs_error(rows: list[Comparison]) -> float:
    return float(np.mean([abs(r.error) for r in rows])) if rows else float("nan")
