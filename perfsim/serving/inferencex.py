"""Score the serving simulator against SemiAnalysis InferenceX: DeepSeek-R1-0528 served on one node.

Rows live in tests/data/inferencex_dsr1_single_node.csv (the records of InferenceX's results API with disagg and
is_multinode false; see its header): GPU (B200, B300, H200, MI300X, MI325X, MI355X), engine (SGLang, TensorRT-LLM,
AMD's ATOM), FP8 or FP4 weights, tensor / expert parallelism and attention data parallelism, speculative decoding
(MTP) or none, input/output lengths (1k/1k, 1k/8k, 8k/1k) and client concurrency, with the measured mean and median
TTFT, mean TPOT and tokens/s per GPU. Each row is simulated as InferenceX's client drove it: a closed loop at its
concurrency, 10 prompts per client all started at once, lengths uniform in [0.8, 1.0] x isl and osl. The engine's
settings are those of InferenceX's launch scripts (ENGINE_SETTINGS). Nothing is fitted to the measured latencies;
speculative drafts are accepted at the rate the runs' own streamed chunks show (mtp_acceptance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from perfsim.errors import DataError, PerfsimError
from perfsim.published_runs import DATA_DIR, Comparison

DEFAULT_PATH = DATA_DIR / "inferencex_dsr1_single_node.csv"
SOURCE = "SemiAnalysis InferenceX (results API snapshot, SemiAnalysisAI/InferenceX-app)"
MODEL = "deepseek-v3"   # DeepSeek-R1-0528: DeepSeek-V3's architecture
SYSTEMS = {"b200": "dgx-b200", "b300": "dgx-b300", "h200": "hgx-h200", "mi300x": "mi300x-platform",
           "mi325x": "mi325x-platform", "mi355x": "mi355x-platform"}
ENGINES = {"sglang": "sglang", "trt": "trtllm"}   # ATOM (AMD's engine) has no host or batching model here
# The client (utils/bench_serving/benchmark_serving.py, --random-range-ratio 0.8): lengths uniform in
# [0.8 L, L], mean 0.9 L, spread 0.1 / 0.9 around it; 10 x conc prompts (benchmark_lib.sh callers)
LENGTH_LOW = 0.8
PROMPTS_PER_CLIENT = 10
REQUIRED = ("hardware", "framework", "precision", "spec_method", "decode_tp", "decode_ep", "decode_dp_attention",
            "isl", "osl", "conc", "mean_ttft", "median_ttft", "mean_tpot", "tput_per_gpu", "date", "run_id")
# metric -> (measured column, serve summary key)
METRICS = {"ttft_s": ("mean_ttft", "ttft_s"), "ttft_p50_s": ("median_ttft", "ttft_p50_s"),
           "tpot_s": ("mean_tpot", "tpot_s"), "tokens_per_s_per_gpu": ("tput_per_gpu", "total_tokens_per_s")}
# InferenceX's launch scripts (SemiAnalysisAI/InferenceX benchmarks/single_node/fixed_seq_len/dsr1_*.sh at 8eec0d4):
# the KV-cache dtype (SGLang --kv-cache-dtype fp8_e4m3 everywhere but H200, which sets none: BF16; TensorRT-LLM
# kv_cache_config.dtype fp8) and SGLang's --chunked-prefill-size (B200/B300 FP4 16384; FP8 32768 at TP8, 8192 at
# TP4; H200 32768; MI300X/MI325X 131072; MI355X 196608) and --mem-fraction-static (FP4 0.85, FP8 0.82 but 0.95 at
# TP4, AMD 0.8). SGLang takes new requests every --scheduler-recv-interval decode steps on B200 and B300 (10 below 16
# clients, 30 from 16, unless attention is data parallel) and every --num-continuous-decode-steps on AMD (4; MI355X
# FP8 8). TensorRT-LLM's max_num_tokens is
# max(8192, conc + isl rounded up to 64). Speculative decoding: SGLang EAGLE (MTP) with 2 steps; TensorRT-LLM MTP
# with 3 next-n layers, 1 under attention data parallelism.
SGLANG_BUDGET = {("b200", "fp4"): 16384, ("b300", "fp4"): 16384, ("h200", "fp8"): 32768,
                 ("mi300x", "fp8"): 131072, ("mi325x", "fp8"): 131072, ("mi355x", "fp8"): 196608,
                 ("mi355x", "fp4"): 196608}
SGLANG_BF16_KV = ("h200",)
SGLANG_AMD = ("mi300x", "mi325x", "mi355x")
SGLANG_RECV_AMD = {("mi355x", "fp8"): 8}


def engine_settings(r) -> dict:
    """serve() keywords for one row's engine: KV dtype, token budget, memory share, receive interval, speculative
    draft tokens."""
    tp, dpa = int(r["decode_tp"]), _flag(r["decode_dp_attention"])
    k = draft_tokens(r)
    if r["framework"] == "trt":
        budget = max(8192, -(-(int(r["conc"]) + int(r["isl"])) // 64) * 64)
        return {"kv_dtype": "fp8", "max_num_batched_tokens": budget, "spec_tokens": k}
    budget = SGLANG_BUDGET.get((r["hardware"], r["precision"]), 32768 if tp >= 8 else 8192)
    fp4 = r["precision"] == "fp4"
    amd = r["hardware"] in SGLANG_AMD
    memory = 0.8 if amd else 0.85 if fp4 else 0.82 if tp >= 8 else 0.95
    if amd:
        recv = SGLANG_RECV_AMD.get((r["hardware"], r["precision"]), 4)
    elif r["hardware"] in ("b200", "b300") and not dpa:
        recv = 10 if int(r["conc"]) < 16 else 30
    else:
        recv = 1
    return {"kv_dtype": None if r["hardware"] in SGLANG_BF16_KV else "fp8", "max_num_batched_tokens": budget,
            "gpu_memory_utilization": memory, "recv_interval": recv, "spec_tokens": k}


def draft_tokens(r) -> int:
    """MTP draft tokens of a row's engine (InferenceX's launch scripts; 0 without speculative decoding)."""
    if str(r["spec_method"]).lower() != "mtp":
        return 0
    return (1 if _flag(r["decode_dp_attention"]) else 3) if r["framework"] == "trt" else 2


def mtp_acceptance(df: pd.DataFrame) -> dict:
    """{(engine, draft tokens): per-draft acceptance rate} as InferenceX's own runs stream it. An engine streams every
    `stream interval` decode steps, so a chunk holds interval x tokens-per-step tokens and mean ITL / mean TPOT is
    the tokens per chunk: the interval is that ratio on the runs without speculation (the same engine, GPU and
    precision), and a speculating run's tokens per step tau = 1 + a + ... + a^k give the rate a (one per engine and
    draft depth, the median over its runs): how often InferenceX's random prompts let a draft through, a property
    of the prompts, not of the hardware."""
    chunk = df.mean_itl / df.mean_tpot
    key = ["framework", "hardware", "precision"]
    plain = df.spec_method.str.lower() != "mtp"
    interval = chunk[plain].groupby([df.loc[plain, k] for k in key]).median().round()
    taus: dict = {}
    for i in df.index[~plain]:
        r = df.loc[i]
        iv = interval.get(tuple(r[k] for k in key))
        if iv and iv >= 1:
            taus.setdefault((r["framework"], draft_tokens(r)), []).append(chunk[i] / iv)
    return {k: _rate(float(np.median(v)), k[1]) for k, v in taus.items() if k[1] > 0}


def _rate(tau: float, k: int) -> float:
    """The per-draft rate a with 1 + a + ... + a^k = tau (bisection; clipped to [0, 1])."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if sum(mid ** i for i in range(k + 1)) < tau:
            lo = mid
        else:
            hi = mid
    return round((lo + hi) / 2, 4)


def _flag(v) -> bool:
    return str(v).strip().lower() in ("true", "1")


def load(path: str | Path | None = None) -> pd.DataFrame:
    """The rows; a one-line DataError naming what is missing or malformed."""
    path = Path(path or DEFAULT_PATH)
    if not path.is_file():
        raise DataError(f"{path}: InferenceX rows not found (the file ships with the repository's tests)")
    df = pd.read_csv(path, comment="#")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; InferenceX rows need {', '.join(REQUIRED)}")
    values = df[[m for m, _ in METRICS.values()] + ["isl", "osl", "conc", "decode_tp"]]
    bad = ~(values.apply(pd.to_numeric, errors="coerce") > 0).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: row {i + 1}: isl, osl, conc, decode_tp and the metrics must be positive numbers")
    return df


def simulate(r, profile="auto", acceptance: dict | None = None) -> dict:
    """The serve() summary of one row; `acceptance` ({(engine, draft tokens): rate}, mtp_acceptance) sets its
    drafts' acceptance (default: DeepSeek's reported MTP rate)."""
    from perfsim.serving.simulate import serve
    tp, ep, dpa = int(r["decode_tp"]), int(r["decode_ep"]), _flag(r["decode_dp_attention"])
    layout = {"tp": 1, "attn_dp": tp, "ep": ep} if dpa else {"tp": tp, "ep": ep, "attn_dp": 1}
    mid = (1 + LENGTH_LOW) / 2
    return serve(MODEL, SYSTEMS[r["hardware"]], num_gpus=tp, dtype=r["precision"], engine=ENGINES[r["framework"]],
                 isl=int(round(mid * int(r["isl"]))), osl=int(round(mid * int(r["osl"]))),
                 length_spread=(1 - LENGTH_LOW) / (1 + LENGTH_LOW), concurrency=int(r["conc"]),
                 num_requests=PROMPTS_PER_CLIENT * int(r["conc"]), ramp=0.0, profile=profile, timeline_bins=1,
                 spec_accept=(acceptance or {}).get((r["framework"], draft_tokens(r))),
                 **layout, **engine_settings(r)).summary


def compare(path: str | Path | None = None, profile="auto", progress=None) -> tuple[list[Comparison], dict]:
    """(one Comparison per row and metric, {reason: rows skipped})."""
    rows, skipped = [], {}
    frame = load(path)
    acceptance = mtp_acceptance(frame)
    for _, r in frame.iterrows():
        reason = None
        if r["hardware"] not in SYSTEMS:
            reason = f"GPU {r['hardware']} not in perfsim's hardware library"
        elif r["framework"] not in ENGINES:
            reason = f"engine {r['framework']} not modelled"
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        tag = f"{r['hardware']}-{r['framework']}-{r['precision']}-{r['spec_method']}"
        rid = f"{tag}-tp{r['decode_tp']}-ep{r['decode_ep']}{'-dpa' if _flag(r['decode_dp_attention']) else ''}-" \
              f"{r['isl']}x{r['osl']}-c{r['conc']}"
        if progress:
            progress(rid)
        try:
            s = simulate(r, profile, acceptance)
        except PerfsimError as exc:
            skipped[f"not servable in perfsim: {exc}"] = skipped.get(f"not servable in perfsim: {exc}", 0) + 1
            continue
        gpus = int(r["decode_tp"])
        plan = {"group": tag, "concurrency": int(r["conc"]), "isl": int(r["isl"]), "osl": int(r["osl"]),
                "date": r["date"], "run_id": r["run_id"]}
        for metric, (column, key) in METRICS.items():
            predicted = s[key] / gpus if metric == "tokens_per_s_per_gpu" else s[key]
            rows.append(Comparison(rid, SOURCE, metric, float(r[column]), predicted, plan,
                                   ["engine_settings"], MODEL))
    return rows, skipped


def summary(rows: list[Comparison]) -> pd.DataFrame:
    """Per group (GPU-engine-precision-speculation) and metric: rows, MAPE, median ratio; and 'all'."""
    df = pd.DataFrame([{"group": r.plan["group"], "metric": r.metric, "ratio": r.predicted / r.published}
                       for r in rows])
    if df.empty:
        return df
    df["ape"] = (df.ratio - 1).abs()
    parts = [df, df.assign(group="all")]
    out = pd.concat(parts).groupby(["group", "metric"]).agg(rows=("ratio", "size"), mape=("ape", "mean"),
                                                             median_ratio=("ratio", "median"))
    return out.reset_index()
