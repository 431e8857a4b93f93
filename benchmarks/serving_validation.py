"""Serving validation (run: python benchmarks/serving_validation.py [--write-fit]).

1. aiconfigurator silicon_refs: every row whose model and system perfsim has is simulated as a closed loop at
   its concurrency with its layout and precision; mean TTFT and TPOT against the measured ones (target MAPE
   <= 20% each). Rows without a recorded client concurrency are scored on TPOT only.
2. ML.ENERGY v3 LM-Arena chat: median inter-token latency (one decode step at the measured average batch)
   and energy per output token, the energy coefficients (static W per GPU, dynamic scale) fitted per GPU type
   on a random half (seed 0) and scored on the other half (target MAPE <= 20% each).
3. MLPerf Inference Offline and Server, published results: Llama-2-70B (H100, H200, B200, GB200, MI300X, MI325X),
   Mixtral 8x7B, Llama 3.1 405B and 8B, DeepSeek-R1; generated tokens per second (Server: at the highest Poisson
   rate within the p99 TTFT and TPOT limits), nothing fitted (perfsim/serving/published.py).
4. TensorRT-LLM 1.0's published maximum-throughput tables (trtllm-bench, 328 results: Llama 3.1 8B / 3.3 70B /
   3.1 405B, Llama 4 Scout and Maverick, Qwen3-30B-A3B and 235B-A22B on H100, H200, B200, GB200 and RTX PRO 6000),
   output tokens/s, nothing fitted (perfsim/serving/trtllm_bench.py).
5. Published closed-loop latency sweeps (NVIDIA NIM: Llama 3.3 70B FP8 on 2 x H100 under TensorRT-LLM, concurrency
   1-250; Vultr: Nemotron 3 Nano FP8 on 2 x B200 under vLLM, concurrency 1-1024): mean TTFT, inter-token latency
   and output tokens/s per concurrency, nothing fitted (perfsim/serving/sweeps.py).
6. SemiAnalysis InferenceX, DeepSeek-R1-0528 on one node (B200, B300, H200, MI300X, MI325X, MI355X; SGLang and
   TensorRT-LLM; FP8 and FP4; with and without MTP; 1k/1k, 1k/8k, 8k/1k at concurrency 4-512): mean and median
   TTFT, mean TPOT and tokens/s per GPU per row, nothing fitted to them (perfsim/serving/inferencex.py; MTP
   drafts accepted at the rate the runs' streamed chunks show).
7. aiconfigurator's silicon sample (NVIDIA's benchmark database, 882 runs of 174 deployments, the 18 behind
   silicon_refs rows set apart): TTFT and TPOT per system, engine and mode on the other deployments; DeepSeek's
   TPOT with and without MTP there (the evidence for simulating the database's rows without it); each engine's
   request latency and the disaggregation handoff fitted on their low-concurrency runs, cross-checked half against
   half (perfsim/serving/aic_sample.py, perfsim/serving/latency.py).
--write-fit stores those coefficients in perfsim/serving/energy_fit.yaml, vLLM's host overhead per step and
sequence in perfsim/serving/host_fit.yaml and the per-request latencies in perfsim/serving/latency_fit.yaml, for
`perfsim serve` to use.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd

from perfsim import measured
from perfsim.serving import aic_sample, inferencex, published, sweeps, trtllm_bench
from perfsim.serving.validation import validate_mlenergy, validate_silicon, write_energy_fit, write_host_fit


def _pct(x) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="auto", help="cost-model profile: auto, prior, none or a YAML path")
    parser.add_argument("--ramp", default="0", help="closed-loop start ramp for silicon rows: seconds or auto")
    parser.add_argument("--max-requests", type=int, default=None,
                        help="requests per silicon row at most (default: 10 per client, uncapped)")
    parser.add_argument("--write-fit", action="store_true",
                        help="write perfsim/serving/energy_fit.yaml, host_fit.yaml, latency_fit.yaml")
    parser.add_argument("--json", help="also write the full report to this JSON file")
    args = parser.parse_args()
    pd.set_option("display.width", 220)
    pd.set_option("display.max_rows", 500)
    pd.set_option("display.max_colwidth", 48)
    start = time.perf_counter()
    ramp = args.ramp if args.ramp == "auto" else float(args.ramp)

    mle, fits = validate_mlenergy(profile=args.profile)
    if args.write_fit and fits:  # before the silicon rows, which use the host-overhead fit
        write_energy_fit(fits)
        write_host_fit(mle.scores["host"])
        print("wrote perfsim/serving/energy_fit.yaml and perfsim/serving/host_fit.yaml\n")
    held = aic_sample.held_out(aic_sample.load(), measured.load("aic-silicon-refs"))
    request, handoff = aic_sample.fit_latencies(held, profile=args.profile)
    print("== per-request latencies, fitted on the benchmark database's runs at <= "
          f"{aic_sample.LOW_CONCURRENCY} clients outside silicon_refs (half-against-half checks) ==")
    for name, fit in (*request.items(), ("disagg handoff", handoff)):
        print(f"  {name:15s} {1e3 * fit['seconds']:5.0f} ms over {fit['rows']} runs: {fit['source'].split('; ', 1)[1]}")
    if args.write_fit:  # before the silicon rows and every engine run below
        aic_sample.write_latency_fit(request, handoff)
        print("wrote perfsim/serving/latency_fit.yaml\n")
    sil = validate_silicon(max_requests=args.max_requests, profile=args.profile, ramp=ramp)
    print("== aiconfigurator silicon_refs: simulated closed loop vs measured ==")
    if len(sil.rows):
        cols = ["model", "system", "backend", "mode", "precision", "isl", "osl", "concurrency", "layout",
                "ttft_measured_s", "ttft_predicted_s", "tpot_measured_s", "tpot_predicted_s"]
        print(sil.rows[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    s = sil.scores
    print(f"\nTTFT MAPE {_pct(s.get('ttft_mape'))} over {s.get('ttft_rows', 0)} rows (median APE "
          f"{_pct(s.get('ttft_median_ape'))}, p90 {_pct(s.get('ttft_p90_ape'))}); "
          f"TPOT MAPE {_pct(s.get('tpot_mape'))} over {s.get('rows', 0)} rows (median APE "
          f"{_pct(s.get('tpot_median_ape'))}, p90 {_pct(s.get('tpot_p90_ape'))}); target <= 20% each")
    for reason, n in sil.skipped.items():
        print(f"  skipped {n}: {reason}")

    print("\n== ML.ENERGY lm-arena-chat: ITL and energy per token ==")
    m = mle.scores
    if len(mle.rows):
        g = mle.rows.groupby(["model", "gpu", "layout", "dtype"])
        summary = g.apply(lambda x: pd.Series({
            "rows": len(x), "itl_mape": (x.itl_predicted_s / x.itl_measured_s - 1).abs().mean(),
            "energy_mape_test": x[x.split == "test"].energy_ape.mean()}), include_groups=False)
        print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
        for gpu, f in fits.items():
            print(f"  fit {gpu}: static {f['static_w']:.1f} W/GPU, dynamic scale {f['dynamic_scale']:.3f} "
                  f"({f['fit_rows']} fit rows) -> energy/token MAPE {_pct(f['energy_mape_test'])} on "
                  f"{f['test_rows']} held-out rows")
        h = m["host"]
        print(f"  fit vLLM host overhead: {1e3 * h['step_s']:.2f} ms per step + {1e6 * h['per_seq_s']:.1f} us per "
              f"sequence ({h['fit_rows']} fit rows, all GPUs); GPU time alone: ITL MAPE "
              f"{_pct(m.get('itl_gpu_only_mape_test'))} on the held-out half")
    print(f"\nITL MAPE {_pct(m.get('itl_mape_test'))} on the held-out half ({_pct(m.get('itl_mape_all'))} on all "
          f"{m.get('rows', 0)} rows); energy per token MAPE {_pct(m.get('energy_per_token_mape_test'))} "
          f"on the held-out half; target <= 20% each")
    for reason, n in mle.skipped.items():
        print(f"  skipped {n}: {reason}")
    for note in sil.notes + mle.notes:
        print(f"  note: {note}")

    print("\n== MLPerf Inference Offline and Server: published vs simulated generated tokens/s ==")
    pub = published.compare(profile=args.profile)
    for r in pub:
        print(f"{r.id:34s} {r.published:10.1f} {r.predicted:10.1f} {100 * r.error:+7.1f}%  (batch limit "
              f"{r.plan['max_num_seqs']}; assumed: {', '.join(r.assumed) or '-'})")
    for (name, metric), rows in published.by_model(pub).items():
        mean = 100 * sum(abs(r.error) for r in rows) / len(rows)
        print(f"{name:15s} {metric.split('_')[0]:8s} mean |error| {mean:5.1f}% over {len(rows)} systems")
    print(f"{'all':24s} mean |error| {100 * sum(abs(r.error) for r in pub) / len(pub):5.1f}% over {len(pub)} "
          f"results")
    print("\n== TensorRT-LLM performance overview (trtllm-bench throughput): published vs simulated output tokens/s ==")
    trt = trtllm_bench.compare(profile=args.profile)
    groups: dict[tuple[str, str], list] = {}
    for r in trt:
        groups.setdefault((r.model, r.id.split("-tp")[0].rsplit("-", 1)[1]), []).append(r)
    for (name, gpu), rows in groups.items():
        mean = 100 * sum(abs(r.error) for r in rows) / len(rows)
        bias = 100 * sum(r.error for r in rows) / len(rows)
        print(f"{name:18s} {gpu:8s} mean |error| {mean:5.1f}%  mean error {bias:+6.1f}%  over {len(rows)} results")
    for label, rows in (("dense", [r for r in trt if not trtllm_bench.is_moe(r)]),
                        ("MoE", [r for r in trt if trtllm_bench.is_moe(r)]), ("all", trt)):
        print(f"{label:27s} mean |error| {100 * sum(abs(r.error) for r in rows) / len(rows):5.1f}% over "
              f"{len(rows)} results")
    print("\n== Published latency sweeps (NVIDIA NIM, Vultr): published vs simulated closed loop ==")
    nim = sweeps.compare(profile=args.profile)
    for r in nim:
        print(f"{r.id:56s} {r.metric:20s} {r.published:10.4g} {r.predicted:10.4g} {100 * r.error:+7.1f}%")
    for metric, value in sweeps.mape_by_metric(nim).items():
        print(f"{metric:20s} mean |error| {100 * value:5.1f}% over {sum(r.metric == metric for r in nim)} points")
    print("\n== SemiAnalysis InferenceX, DeepSeek-R1 on one node: published vs simulated closed loop ==")
    ix, ix_skipped = inferencex.compare(profile=args.profile)
    table = inferencex.summary(ix).pivot(index="group", columns="metric", values=["mape", "median_ratio"])
    print("MAPE and median predicted / measured ratio per GPU-engine-precision-speculation group:")
    print(table.round(3).to_string())
    accepted = inferencex.mtp_acceptance(inferencex.load())
    print("MTP drafts accepted (per draft, from the runs' ITL / TPOT):",
          ", ".join(f"{engine} {k} draft(s) {rate:.2f}" for (engine, k), rate in sorted(accepted.items())
                    if engine in inferencex.ENGINES))
    for reason, n in ix_skipped.items():
        print(f"skipped {n} rows: {reason}")
    print("\n== aiconfigurator silicon sample (benchmark database), deployments outside silicon_refs ==")
    rep = aic_sample.score(held, profile=args.profile)
    print(aic_sample.summary(rep.rows).round(3).to_string())
    r = rep.rows
    print(f"all {len(r)} rows: TTFT MAPE {_pct(r.ttft_ape.mean())} (median APE {_pct(r.ttft_ape.median())}), "
          f"TPOT MAPE {_pct(r.tpot_ape.mean())} (median APE {_pct(r.tpot_ape.median())})")
    for reason, n in rep.skipped.items():
        print(f"  skipped {n}: {reason}")
    for label, v in aic_sample.mtp_comparison(held, profile=args.profile).items():
        print(f"DeepSeek {label.replace('_', ' ')}: TPOT MAPE {_pct(v['tpot_mape'])}, median predicted / measured "
              f"{v['tpot_ratio']:.2f} over {v['rows']} rows")
    print(f"\n({time.perf_counter() - start:.1f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"silicon_refs": sil.to_dict(), "mlenergy": mle.to_dict()}, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
