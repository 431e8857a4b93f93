"""Serving validation against measured end-to-end runs.

aiconfigurator silicon_refs (NVIDIA; TensorRT-LLM, SGLang and vLLM on H100/H200/B200/GB200 and newer):
each row is a benchmark at a fixed client concurrency and fixed input/output lengths, aggregated or
disaggregated. Each supported row is simulated as a closed loop at that concurrency with its layout (tp,
attention-DP, MoE ep, pp; prefill and decode pools and their worker counts) and precision, and the
simulated mean TTFT and TPOT are compared with the measured ones. vLLM rows from release 0.14 on schedule
asynchronously (their host overhead overlaps the GPU's steps; perfsim.serving.host), earlier ones do not.

ML.ENERGY v3 LM-Arena chat (vLLM on H100 and B200): per configuration the median inter-token latency
(ITL) and energy per output token at the measured average batch. ITL is predicted as one decode step at
the average batch and the mean context (an assumed prompt length plus half the average output), plus
vLLM's host overhead per step and per sequence (perfsim.serving.host; vLLM 0.11.1 schedules synchronously)
fitted on a random half of the rows
(seed 0); energy per token is (n_gpu * P_static * ITL + s * E_dyn) / batch with P_static and s fitted per
GPU type on the same half. Both are scored on the other half.

Rows whose model or system perfsim lacks are skipped and counted, with the reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from perfsim.errors import PerfsimError
from perfsim.model import model_for_repo
from perfsim.serving.host import ENGINES, HostOverhead, modelled_engines, reload_fits, schedules_async
from perfsim.serving.host import FIT_FILE as HOST_FIT_FILE
from perfsim.serving.scheduler import engine_batching

# aiconfigurator system -> perfsim system
AIC_SYSTEMS = {"h100_sxm": "dgx-h100", "h200_sxm": "hgx-h200", "b200_sxm": "dgx-b200", "gb200": "gb200-nvl72",
               "b300_sxm": "dgx-b300", "gb300": "gb300-nvl72"}
# ML.ENERGY GPU (perfsim device) -> perfsim system
MLE_SYSTEMS = {"h100-sxm": "dgx-h100", "b200": "dgx-b200", "h200-sxm": "hgx-h200", "a100-sxm-80gb": "dgx-a100-80gb"}
AIC_PRECISION = {"fp8": "fp8", "fp4": "fp4", "bf16": "bf16", "fp16": "fp16"}
# KV cache of a row: aiconfigurator's default quantization, FP8 KV on GPUs of SM >= 89 (sdk task.py, TaskConfig
# _get_quant_mode: kvcache_quant_mode "fp8"), which its generator writes into each engine's KV dtype (TensorRT-LLM
# kv_cache_config.dtype, SGLang --kv-cache-dtype fp8_e4m3, vLLM --kv-cache-dtype); the 16-bit rows keep theirs
AIC_KV_DTYPE = {"fp8": "fp8", "fp4": "fp8"}
# LM-Arena chat prompts: the data set gives no input length. Each request is a conversation so far (all earlier
# turns concatenated); their mean is 634 tokens (ML.ENERGY's v3.0 leaderboard post, ml-energy/blog
# docs/posts/ml-energy-leaderboard-v3.0.md at 2bfa158d: "mean 634 vs. 224" input tokens, chat vs. GPQA).
MLE_ASSUMED_ISL = 634
TARGET_MAPE = 0.20
# Models whose silicon rows are simulated with multi-token prediction: DeepSeek-V3/R1 ship one MTP module and
# the engines' DeepSeek recipes decode with it (aiconfigurator's default for the architecture, nextn = 1);
# accepted at DeepSeek's measured rate (perfsim.serving.speculative).
MTP_DRAFT_TOKENS = {"deepseek-v3": 1}
# ... except the runs of NVIDIA's benchmark database (provenance 'db-dump/...'), which decode without it: on the
# database's 115 DeepSeek configurations outside silicon_refs.csv (389 runs of aiconfigurator's silicon_sample.csv,
# perfsim.serving.aic_sample) TPOT is predicted at 0.69x measured with MTP and 1.06x without (MAPE 32% vs 21%).
NO_MTP_ORIGINS = ("db-dump/",)
SPLIT = "random half of the rows (seed 0) to fit the energy coefficients (per GPU type) and vLLM's host " \
        "overhead (all GPUs), the other half scored; the shipped coefficients are refitted on every row"


def mape(pred, meas) -> float:
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    ok = np.isfinite(pred) & np.isfinite(meas) & (meas > 0)
    return float(np.mean(np.abs(pred[ok] / meas[ok] - 1.0))) if ok.any() else float("nan")


@dataclass
class ServingReport:
    rows: pd.DataFrame
    scores: dict
    skipped: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"scores": self.scores, "skipped": self.skipped, "notes": self.notes,
                "rows": self.rows.replace({np.nan: None}).to_dict(orient="records")}


def _int(v, default: int = 1) -> int:
    try:
        if v is None or (isinstance(v, float) and math.isnan(v)) or pd.isna(v):
            return default
    except (TypeError, ValueError):
        pass
    return int(v)


def _skip(skipped: dict, reason: str) -> None:
    skipped[reason] = skipped.get(reason, 0) + 1


# ------------------------------------------------------------------------------ silicon refs
# Closed-loop requests per client, as aiconfigurator's silicon benchmarks run aiperf: --num-requests concurrency x 20
# (BENCH_MULTI_ROUND), profiled after 2 x concurrency warm-up requests that aiperf lets finish first, so the
# profiled phase starts from an idle server with every client at once (ai-dynamo/aiconfigurator,
# tests/baseline/*/bench_run.sh; aiperf docs/tutorials/warmup.md). At least 64 requests in all.
REQUESTS_PER_CLIENT = 20


def _num_requests(concurrency: int, max_requests: int | None) -> int:
    n = max(REQUESTS_PER_CLIENT * concurrency, 64)
    return int(min(n, max_requests) if max_requests else n)


def deflated_layout(tp: int, adp: int, moe_tp: int, moe_ep: int) -> tuple[int, int]:
    """(tp, attention dp) of an aggregated row whose attention degree records the TP x EP product, as legacy
    benchmark-database rows do (tp 64 = moe_tp 8 x moe_ep 8 on one 8-GPU node; ai-dynamo/aisimulate's measurement
    adapter deflates such 'inflated TP*EP' counts): the deployment ran on moe_tp GPUs, the experts over moe_ep of
    them. Other rows as recorded."""
    if moe_tp > 1 and moe_ep > 1 and tp * adp == moe_tp * moe_ep:
        return (moe_tp, 1) if adp == 1 else (1, moe_tp)
    return tp, adp


def draft_tokens(model: str, origin: str) -> int:
    """MTP draft tokens a silicon row is simulated with (MTP_DRAFT_TOKENS unless its origin runs without)."""
    return 0 if str(origin).startswith(NO_MTP_ORIGINS) else MTP_DRAFT_TOKENS.get(model, 0)


def silicon_row(r: pd.Series, max_requests: int | None = None, profile="auto", ramp=0.0,
                overrides: dict | None = None) -> dict:
    """Simulate one silicon_refs row; returns predicted TTFT/TPOT beside the measured ones.

    The closed loop issues REQUESTS_PER_CLIENT requests per client (capped at `max_requests` only when given, for
    quick checks): fewer, and the start burst, not the steady state, sets a high-concurrency row's TTFT.
    `overrides`: serve() keywords over the row's own (request_latency_s, disagg_handoff_s for the latency fits).
    """
    from perfsim.serving.simulate import serve
    spec = model_for_repo(r["model"])   # in the row's checkpoint format (a publisher's FP8 release: block-scaled)
    model = spec.name
    system = AIC_SYSTEMS[r["system"]]
    dtype = AIC_PRECISION.get(str(r["precision"]).lower(), "bf16")
    conc = _int(r["concurrency"], 0) or None
    isl, osl = int(r["isl"]), int(r["osl"])
    moe = spec.moe is not None
    backend = str(r["backend"]).lower()
    # the engine's own defaults on the row's GPU (batching, token budget, KV memory); its host overhead where
    # perfsim.serving.host has one
    common = dict(dtype=dtype, kv_dtype=AIC_KV_DTYPE.get(dtype), isl=isl, osl=osl, profile=profile, timeline_bins=1,
                  ramp=ramp,
                  engine=backend if backend in ENGINES else "none",
                  async_scheduling=schedules_async(backend, r.get("backend_version")),
                  spec_tokens=draft_tokens(model, r.get("origin", "")), **(overrides or {}))
    if r["mode"] == "disagg":
        def layout(prefix):
            tp = _int(r[f"{prefix}_tp_size"])
            adp = _int(r[f"{prefix}_attention_dp_size"])
            ep = _int(r[f"{prefix}_moe_ep_size"]) if moe else 1
            pp = _int(r[f"{prefix}_pp_size"])
            workers = _int(r[f"{prefix}_num_workers"])
            return {"tp": tp, "attn_dp": adp, "ep": max(ep, 1), "pp": pp}, workers * tp * adp * pp
        pre, p_gpus = layout("prefill")
        dec, d_gpus = layout("decode")
        # aiconfigurator batch sizes are per attention-DP rank (decode_batch_size x adp x workers = concurrency)
        dec["max_num_seqs"] = max(1, _int(r["decode_batch_size"]))
        pre["max_num_seqs"] = max(1, _int(r["prefill_batch_size"]))
        if conc is None:  # no client concurrency recorded: the decode pool full
            conc = _int(r["decode_batch_size"]) * dec["attn_dp"] * _int(r["decode_num_workers"])
        res = serve(spec, system, num_gpus=p_gpus + d_gpus, tp=pre["tp"], ep=pre["ep"], pp=pre["pp"],
                    attn_dp=pre["attn_dp"], concurrency=conc, disagg=f"{p_gpus}:{d_gpus}",
                    num_requests=_num_requests(conc, max_requests),
                    prefill=pre, decode=dec, **common)
        layout_txt = f"P {p_gpus}x[tp{pre['tp']} adp{pre['attn_dp']} ep{pre['ep']}] D {d_gpus}x[tp{dec['tp']} " \
                     f"adp{dec['attn_dp']} ep{dec['ep']}]"
    else:
        tp, adp, pp = _int(r["tp_size"]), _int(r["attention_dp_size"]), _int(r["pp_size"])
        ep = max(_int(r["moe_ep_size"]), 1) if moe else 1
        tp, adp = deflated_layout(tp, adp, _int(r["moe_tp_size"], 1), ep)
        clients = conc or _int(r["batch_size"])   # no client concurrency recorded: the batch full
        res = serve(spec, system, num_gpus=tp * adp * pp, tp=tp, ep=ep, pp=pp, attn_dp=adp,
                    concurrency=clients, max_num_seqs=max(1, math.ceil(clients / adp)),
                    num_requests=_num_requests(clients, max_requests), **common)
        layout_txt = f"tp{tp} adp{adp} ep{ep} pp{pp}"
    s = res.summary
    recorded = re.search(r"_c\d+", str(r["id"])) is not None
    return {"id": r["id"], "concurrency_recorded": recorded, "model": model, "system": system,
            "backend": r["backend"], "mode": r["mode"],
            "precision": dtype, "isl": isl, "osl": osl, "concurrency": conc, "layout": layout_txt,
            "ttft_measured_s": float(r["ttft_s"]), "ttft_predicted_s": s["ttft_s"],
            "tpot_measured_s": float(r["tpot_s"]), "tpot_predicted_s": s["tpot_s"],
            "ttft_ape": abs(s["ttft_s"] / float(r["ttft_s"]) - 1),
            "tpot_ape": abs(s["tpot_s"] / float(r["tpot_s"]) - 1),
            "preemptions": s["preemptions"], "sim_wall_s": s["sim_wall_s"]}


def validate_silicon(frame: pd.DataFrame | None = None, max_requests: int | None = None, profile="auto",
                     progress=None, ramp=0.0, overrides: dict | None = None) -> ServingReport:
    from perfsim import measured
    df = measured.load("aic-silicon-refs") if frame is None else frame
    skipped: dict = {}
    rows = []
    for _, r in df.iterrows():
        if model_for_repo(r["model"]) is None:
            _skip(skipped, f"model {r['model']} not in perfsim's model library")
            continue
        if r["system"] not in AIC_SYSTEMS:
            _skip(skipped, f"system {r['system']} not in perfsim's hardware library")
            continue
        if progress:
            progress(str(r["id"]))
        try:
            rows.append(silicon_row(r, max_requests, profile, ramp, overrides))
        except PerfsimError as exc:
            _skip(skipped, f"layout not servable in perfsim: {exc}")
    out = pd.DataFrame(rows)
    scores = {}
    if len(out):
        known = out[out.concurrency_recorded]
        unknown = int((~out.concurrency_recorded).sum())
        if unknown:
            skipped["TTFT only: client concurrency not recorded (queueing unknown); TPOT still scored"] = unknown
        scores = {"rows": int(len(out)), "ttft_rows": int(len(known)),
                  "ttft_mape": mape(known.ttft_predicted_s, known.ttft_measured_s),
                  "tpot_mape": mape(out.tpot_predicted_s, out.tpot_measured_s),
                  "ttft_p90_ape": float(np.percentile(known.ttft_ape, 90)) if len(known) else float("nan"),
                  "tpot_p90_ape": float(np.percentile(out.tpot_ape, 90)),
                  "ttft_median_ape": float(known.ttft_ape.median()), "tpot_median_ape": float(out.tpot_ape.median()),
                  "target_mape": TARGET_MAPE}
    return ServingReport(out, scores, skipped, [
        "closed loop at the row's concurrency, fixed input/output lengths, mean TTFT and TPOT over all requests",
        f"requests per row: {REQUESTS_PER_CLIENT} x concurrency"
        + (f", at most {max_requests}" if max_requests else ""),
        "precision fp8/fp4: weights and GEMMs in that format but the LM head and MoE routers (bf16), KV cache in fp8 "
        "(aiconfigurator's default quantization, which its generator writes into the engines' arguments)",
        "batching and KV memory: each row's engine as it ships on the row's GPU (" + ", ".join(
            f"{e} {engine_batching(e)[0]}" for e in ("sglang", "trtllm", "vllm")) + "; token budgets, batch and "
        "memory limits by GPU: perfsim.serving.scheduler engine_batching, engine_max_seqs, engine_memory)",
        f"host overhead: perfsim.serving.host's for {', '.join(modelled_engines()) or 'no engine'} rows, none "
        f"for other engines (no data for theirs)"])


# ------------------------------------------------------------------------------ ML.ENERGY
def _mle_deployment(r: pd.Series):
    """vLLM layout of a row. vLLM's expert parallelism spans tp x dp GPUs, so a row with tp=1, ep=E on E GPUs
    and dp=1 ran attention tensor parallel over the E GPUs (tp = num_gpus / dp) and the experts over ep."""
    from perfsim.serving.steptime import make_deployment
    spec = model_for_repo(r["model_id"])   # in the row's checkpoint format
    dtype = "fp8" if str(r["weight_precision"]) == "fp8" else "bf16"
    dp = max(1, int(r["dp"]))
    return make_deployment(spec, MLE_SYSTEMS[r["gpu"]], tp=int(r["num_gpus"]) // dp, ep=int(r["ep"]),
                           attn_dp=dp if int(r["ep"]) > 1 else 1, dtype=dtype)


def mlenergy_predictions(frame: pd.DataFrame | None = None, profile="auto", isl: int = MLE_ASSUMED_ISL,
                         progress=None) -> tuple[pd.DataFrame, dict]:
    """Per supported row: predicted ITL (one decode step at the average batch; GPU time only, no host
    overhead) and the step's switching energy, beside the measurements."""
    from perfsim import measured
    from perfsim.serving.simulate import step_model
    df = measured.load("mlenergy-lm-arena-chat") if frame is None else frame
    skipped: dict = {}
    supported = []
    for _, r in df.iterrows():
        if model_for_repo(r["model_id"]) is None:
            _skip(skipped, f"model {r['model_id']} not in perfsim's model library")
            continue
        if r["gpu"] not in MLE_SYSTEMS:
            _skip(skipped, f"GPU {r['gpu']} has no perfsim system")
            continue
        try:
            dep = _mle_deployment(r)
        except PerfsimError as exc:
            _skip(skipped, f"layout not servable in perfsim: {exc}")
            continue
        if dep.gpus != int(r["num_gpus"]):
            _skip(skipped, f"layout tp x ep does not match num_gpus (tp={r['tp']}, ep={r['ep']}, "
                           f"gpus={r['num_gpus']})")
            continue
        supported.append((r, dep))
    # one step-time table per deployment, wide enough for its largest batch
    widest: dict = {}
    for r, dep in supported:
        key = (dep.model.name, dep.device.name, dep.label(), dep.dtype)
        widest[key] = max(widest.get(key, 1), int(r["max_num_seqs"]))
    rows = []
    for r, dep in supported:
        if progress:
            progress(f"{r['model_id']} {r['gpu']} b={r['max_num_seqs']}")
        seqs = widest[(dep.model.name, dep.device.name, dep.label(), dep.dtype)]
        sm = step_model(dep, max(seqs, 8192), seqs, isl + 4096, profile, grid=14)
        b = max(1, int(round(float(r["avg_batch_size"]))))
        ctx = isl + float(r["avg_output_len"]) / 2.0
        t, e_gpu = sm.decode(b, ctx)
        rows.append({"config_index": int(r["config_index"]), "model": dep.model.name, "model_id": r["model_id"],
                     "gpu": r["gpu"], "num_gpus": dep.gpus, "layout": dep.label(), "dtype": dep.dtype,
                     "max_num_seqs": int(r["max_num_seqs"]), "batch": b, "seqs_per_rank": -(-b // dep.attn_dp),
                     "context": ctx, "itl_measured_s": float(r["median_itl_s"]), "itl_gpu_s": t, "itl_predicted_s": t,
                     "energy_per_token_measured_j": float(r["energy_per_token_j"]),
                     "avg_power_measured_w": float(r["avg_power_w"]),
                     "step_dynamic_j": e_gpu * dep.gpus})
    return pd.DataFrame(rows), skipped


def fit_host(rows: pd.DataFrame) -> HostOverhead:
    """Non-negative least squares on relative error: ITL ~ t_gpu + step_s + per_seq_s * n (n per rank)."""
    from scipy.optimize import nnls
    y = rows.itl_measured_s.to_numpy()
    n = rows.seqs_per_rank.to_numpy(float)
    coef, _ = nnls(np.column_stack([1.0 / y, n / y]), 1.0 - rows.itl_gpu_s.to_numpy() / y)
    return HostOverhead(float(coef[0]), float(coef[1]))


def fit_energy(rows: pd.DataFrame) -> tuple[float, float]:
    """Non-negative least squares on relative error: E_tok ~ P_static * (n t / b) + s * (E_dyn / b)."""
    from scipy.optimize import nnls
    y = rows.energy_per_token_measured_j.to_numpy()
    a = rows.num_gpus.to_numpy() * rows.itl_predicted_s.to_numpy() / rows.batch.to_numpy()
    b = rows.step_dynamic_j.to_numpy() / rows.batch.to_numpy()
    coef, _ = nnls(np.column_stack([a / y, b / y]), np.ones_like(y))
    return float(coef[0]), float(coef[1])


def validate_mlenergy(frame: pd.DataFrame | None = None, profile="auto", seed: int = 0,
                      isl: int = MLE_ASSUMED_ISL, progress=None) -> tuple[ServingReport, dict]:
    """Returns the report and the energy fits per GPU {gpu: {static_w, dynamic_scale, ...}}; the host-overhead
    fit is in the report's scores ("host")."""
    rows, skipped = mlenergy_predictions(frame, profile, isl, progress)
    fits = {}
    if len(rows):
        rng = np.random.default_rng(seed)
        rows["split"] = np.where(rng.random(len(rows)) < 0.5, "fit", "test")
        host = fit_host(rows[rows.split == "fit"])
        rows["itl_predicted_s"] = rows.itl_gpu_s + host.step_s + host.per_seq_s * rows.seqs_per_rank
        test = rows[rows.split == "test"]
        host_fit = {"step_s": host.step_s, "per_seq_s": host.per_seq_s, "fit_rows": int((rows.split == "fit").sum()),
                    "test_rows": int(len(test)), "itl_mape_test": mape(test.itl_predicted_s, test.itl_measured_s)}
        # what ships: the same form refitted on every row, once the held-out half has scored it
        shipped = fit_host(rows)
        host_fit["shipped"] = {"step_s": shipped.step_s, "per_seq_s": shipped.per_seq_s, "rows": int(len(rows))}
        itl_all = rows.itl_gpu_s + shipped.step_s + shipped.per_seq_s * rows.seqs_per_rank
        rows["energy_per_token_predicted_j"] = np.nan
        for gpu, g in rows.groupby("gpu"):
            train = g[g.split == "fit"]
            if len(train) < 2:
                continue
            p_static, scale = fit_energy(train)
            all_static, all_scale = fit_energy(g.assign(itl_predicted_s=itl_all[g.index]))
            pred = (g.num_gpus * p_static * g.itl_predicted_s + scale * g.step_dynamic_j) / g.batch
            rows.loc[g.index, "energy_per_token_predicted_j"] = pred
            test = g[g.split == "test"]
            fits[gpu] = {"static_w": p_static, "dynamic_scale": scale, "fit_rows": int(len(train)),
                         "shipped": {"static_w": all_static, "dynamic_scale": all_scale, "rows": int(len(g))},
                         "test_rows": int(len(test)),
                         "energy_mape_test": mape(pred[test.index], test.energy_per_token_measured_j)}
        rows["avg_power_predicted_w"] = rows.energy_per_token_predicted_j * rows.batch / rows.itl_predicted_s
        rows["itl_ape"] = (rows.itl_predicted_s / rows.itl_measured_s - 1).abs()
        rows["energy_ape"] = (rows.energy_per_token_predicted_j / rows.energy_per_token_measured_j - 1).abs()
    test = rows[rows.split == "test"] if len(rows) else rows
    scores = {}
    if len(test):
        scores = {"rows": int(len(rows)), "test_rows": int(len(test)),
                  "itl_mape_test": mape(test.itl_predicted_s, test.itl_measured_s),
                  "itl_mape_all": mape(rows.itl_predicted_s, rows.itl_measured_s),
                  "energy_per_token_mape_test": mape(test.energy_per_token_predicted_j,
                                                     test.energy_per_token_measured_j),
                  "itl_gpu_only_mape_test": mape(test.itl_gpu_s, test.itl_measured_s),
                  "avg_power_mape_test": mape(test.avg_power_predicted_w, test.avg_power_measured_w),
                  "target_mape": TARGET_MAPE, "fits": fits, "host": host_fit}
    notes = [f"ITL: one decode step at the measured average batch, context = {isl} (assumed prompt) + "
             f"average output / 2, plus vLLM's host overhead per step and sequence", "fits: " + SPLIT,
             "avg power follows from energy per token x batch / ITL"]
    return ServingReport(rows, scores, skipped, notes), fits


def write_energy_fit(fits: dict, path=None, source_note: str = "") -> None:
    """Write fitted (static_w, dynamic_scale) per device for serving runs to use (atomic replace)."""
    from perfsim.serving.energy import FIT_FILE
    doc = {"about": "Energy coefficients per GPU for perfsim.serving, fitted by "
                    "perfsim.serving.validation.validate_mlenergy (benchmarks/serving_validation.py --write-fit). "
                    "P = static_w + dynamic_scale * E_dyn / t per GPU while it runs steps.",
           "devices": {gpu: {"static_w": round(f["shipped"]["static_w"], 2),
                             "dynamic_scale": round(f["shipped"]["dynamic_scale"], 4),
                             "source": f"fitted on all {f['shipped']['rows']} ML.ENERGY v3 lm-arena-chat rows of "
                                       f"the GPU; fitted on a random half ({f['fit_rows']} rows, seed 0), the form "
                                       f"scores energy/token MAPE {100 * f['energy_mape_test']:.1f}% on the other "
                                       f"{f['test_rows']}{source_note}"}
                       for gpu, f in sorted(fits.items())}}
    _write_yaml(doc, path or FIT_FILE)


def write_host_fit(host: dict, path=None) -> None:
    """Write vLLM's fitted host overhead for serving runs to use (atomic replace)."""
    doc = {"about": "Host overhead per engine step for perfsim.serving (perfsim/serving/host.py): t_host = step_s + "
                    "per_seq_s * sequences in the step, fitted by perfsim.serving.validation.validate_mlenergy "
                    "(benchmarks/serving_validation.py --write-fit).",
           "engines": {"vllm": {"step_s": float(f"{host['shipped']['step_s']:.4g}"),
                                "per_seq_s": float(f"{host['shipped']['per_seq_s']:.4g}"),
                                "source": f"fitted on all {host['shipped']['rows']} ML.ENERGY v3 lm-arena-chat rows, "
                                          f"vLLM on H100 and B200; fitted on a random half ({host['fit_rows']} rows, "
                                          f"seed 0), the form scores ITL MAPE {100 * host['itl_mape_test']:.1f}% on "
                                          f"the other {host['test_rows']}"}}}
    _write_yaml(doc, path or HOST_FIT_FILE)
    reload_fits()


def _write_yaml(doc: dict, path) -> None:
    import os
    import tempfile
    from pathlib import Path

    import yaml
    path = Path(path)
    fd, tmp = tempfile.mkstemp(suffix=".yaml", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ perfsim validate
SERVING_DATASETS = {"aic-silicon-refs": "serving", "mlenergy-lm-arena-chat": "serving_energy"}


def serving_dataset_of(frame: pd.DataFrame) -> str | None:
    """The serving data set whose format a loaded measured file has (its rows are scored as that set's), or None."""
    cols = set(frame.columns)
    if {"ttft_s", "tpot_s", "isl", "osl", "system", "backend"} <= cols:
        return "aic-silicon-refs"
    if {"median_itl_s", "energy_per_token_j", "avg_batch_size", "gpu"} <= cols:
        return "mlenergy-lm-arena-chat"
    return None


def validate_scores(name: str, seed: int = 0, progress=None, max_requests: int | None = None,
                    frame: pd.DataFrame | None = None, label: str | None = None) -> list:
    """perfsim.validate.Score rows for a serving data set, for `perfsim validate` (or for `frame`, a file in that
    set's format, reported as `label`):
    aic-silicon-refs -> groups ttft, tpot: 'uncalibrated' = the efficiency model with prior parameters,
    'calibrated' = the shipped calibration profiles ('auto'; the same as prior where none is shipped);
    mlenergy-lm-arena-chat -> groups itl (not fitted: uncalibrated = prior, calibrated = auto) and
    energy_per_token (uncalibrated = device-spec power, calibrated = coefficients fitted on the other half)."""
    from perfsim.validate import Score
    if name not in SERVING_DATASETS:
        raise ValueError(f"{name!r} is not a serving data set; known: {', '.join(SERVING_DATASETS)}")

    def score(group, n, ape_u, ape_c):
        ape_u, ape_c = np.asarray(ape_u, float), np.asarray(ape_c, float)
        return Score(dataset=label or name, group=group, hardware="all", n_test=int(n),
                     mape_uncalibrated=float(np.nanmean(ape_u)), p90_uncalibrated=float(np.nanpercentile(ape_u, 90)),
                     mape_calibrated=float(np.nanmean(ape_c)), p90_calibrated=float(np.nanpercentile(ape_c, 90)))

    if name == "aic-silicon-refs":
        prior = validate_silicon(frame, max_requests=max_requests, profile="prior", progress=progress).rows
        auto = validate_silicon(frame, max_requests=max_requests, profile="auto", progress=progress).rows
        if not len(auto):
            return []
        known = auto.concurrency_recorded.to_numpy()
        return [score("ttft", known.sum(), prior.ttft_ape[known], auto.ttft_ape[known]),
                score("tpot", len(auto), prior.tpot_ape, auto.tpot_ape)]
    rows_prior, _ = mlenergy_predictions(frame, profile="prior", progress=progress)
    rep, _ = validate_mlenergy(frame, profile="auto", seed=seed, progress=progress)
    rows = rep.rows
    if not len(rows):
        return []
    test = rows[rows.split == "test"]
    itl_prior = (rows_prior.itl_predicted_s / rows_prior.itl_measured_s - 1).abs()[test.index]
    from perfsim.hardware import load_device
    spec_pred = []
    for _, r in test.iterrows():  # device spec: idle power as static power, cost-model switching energy as is
        idle = load_device(r["gpu"]).power.idle
        spec_pred.append((r.num_gpus * idle * r.itl_predicted_s + r.step_dynamic_j) / r.batch)
    e_spec = np.abs(np.asarray(spec_pred) / test.energy_per_token_measured_j.to_numpy() - 1)
    return [score("itl", len(test), itl_prior, test.itl_ape), score("energy_per_token", len(test), e_spec,
                                                                   test.energy_ape)]
