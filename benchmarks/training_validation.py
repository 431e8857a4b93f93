"""Training-step validation: predicted vs published iteration times and throughputs, per row.

Korthikanti et al. 2022 (Table 4: 22B, 175B, 530B, 1T; full recomputation vs sequence parallel + selective
recomputation) and Narayanan et al. 2021 (Table 1: GPT 1.7B..1T, per-GPU throughput) on DGX A100 80GB;
Llama 3 405B on 8192 and 16384 H100s (Llama Team 2024, Table 4); DeepSeek-V3's pre-training throughput on 2048
H800s (DeepSeek-AI 2024). Rows and sources:
tests/data/published_training_runs.yaml. Nothing is fitted to these rows.

    python benchmarks/training_validation.py [--profile auto|none|PATH]
"""

from __future__ import annotations

import argparse
import time

from perfsim.hardware import load_hardware
from perfsim.parallel.validation import compare, default_profile, mean_abs_error


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="auto",
                    help="auto (shipped profile, else the model's priors), none (roofline), or a path")
    args = ap.parse_args()
    profile = None if args.profile == "none" else args.profile
    prof = default_profile(load_hardware("dgx-a100-80gb").gpu.name, profile)
    fitted = ", ".join(prof.fitted_on) if prof is not None and prof.fitted_on else "nothing: the priors"
    what = "roofline" if prof is None else f"profile of {prof.device} (fitted on: {fitted})"
    t0 = time.perf_counter()
    rows = compare(profile=profile)
    print(f"cost model: {what}")
    print(f"{'run':32s} {'metric':20s} {'published':>10s} {'perfsim':>10s} {'error':>8s}  plan")
    for r in rows:
        plan = ", ".join(f"{k}={v}" for k, v in r.plan.items() if k not in ("ep", "cp", "zero") or v not in (0, 1))
        flag = f"  (assumed: {', '.join(r.assumed)})" if r.assumed else ""
        print(f"{r.id:32s} {r.metric:20s} {r.published:10.2f} {r.predicted:10.2f} {100 * r.error:+7.1f}%  {plan}{flag}")
    for name, prefix in (("Korthikanti et al. 2022, Table 4 (iteration time)", "korthikanti"),
                         ("Narayanan et al. 2021, Table 1 (TFLOP/s per GPU)", "narayanan"),
                         ("Llama 3 Herd of Models, Table 4 (PaLM TFLOP/s per H100)", "llama3"),
                         ("DeepSeek-V3 technical report (tokens/s per H800)", "deepseek")):
        sub = [r for r in rows if r.id.startswith(prefix)]
        worst = max(sub, key=lambda r: abs(r.error))
        print(f"{name}: mean |error| {100 * mean_abs_error(sub):.2f}% over {len(sub)} rows, "
              f"worst {worst.id} {100 * worst.error:+.1f}%")
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
