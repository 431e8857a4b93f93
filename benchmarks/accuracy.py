"""Accuracy of perfsim's operator costs on measured GPU kernels (run: python benchmarks/accuracy.py).

Prints `perfsim validate` over every measured data set with an operator model: MAPE and p90 absolute
percentage error on held-out rows, uncalibrated (prior parameters), calibrated (fitted on the other half
of the same data set) and transfer (fitted on H100 data only, applied to A100/A40 through their specs),
then the issue's targets with the figure each one reached. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time

from perfsim.validate import validate

TARGETS = [  # (label, data set, group, column, target MAPE)
    ("GEMM H100 bf16", "aic-h100-gemm", "bf16", "mape_calibrated", 0.10),
    ("GEMM H100 fp8", "aic-h100-gemm", "fp8", "mape_calibrated", 0.10),
    ("vidur per-op H100", "vidur-h100", "all", "mape_calibrated", 0.12),
    ("vidur per-op A100", "vidur-a100", "all", "mape_calibrated", 0.12),
    ("vidur per-op A40", "vidur-a40", "all", "mape_calibrated", 0.12),
    ("attention prefill H100", "aic-h100-context-attention", "all", "mape_calibrated", 0.15),
    ("attention decode H100", "aic-h100-generation-attention", "all", "mape_calibrated", 0.15),
    ("MoE H100", "aic-h100-moe", "all", "mape_calibrated", 0.15),
    ("transfer H100 -> A100 (vidur)", "vidur-a100", "all", "mape_transfer", 0.15),
    ("transfer H100 -> A40 (vidur)", "vidur-a40", "all", "mape_transfer", 0.15),
    *[(f"collectives {name}", name, "all", "mape_calibrated", 0.15) for name in (
        "llmcompass-a100-allreduce", "aic-nccl[a100-sxm-80gb]", "aic-nccl[h100-sxm]", "aic-nccl[b200]",
        "aic-h100-custom-allreduce",
        "vidur-net-a100_dgx-all_reduce", "vidur-net-a100_dgx-send_recv", "vidur-net-h100_dgx-all_reduce",
        "vidur-net-h100_dgx-send_recv", "vidur-net-a100_pairwise_nvlink-all_reduce",
        "vidur-net-a100_pairwise_nvlink-send_recv", "vidur-net-h100_pairwise_nvlink-all_reduce",
        "vidur-net-a40_pairwise_nvlink-send_recv")],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fit on fewer rows, score a sample of the rest")
    parser.add_argument("--json", help="also write the full report to this JSON file")
    args = parser.parse_args()
    start = time.perf_counter()
    kwargs = dict(max_rows=1500, max_test_rows=4000) if args.quick else {}
    report = validate(progress=lambda s: print(f"  .. {s}", flush=True), **kwargs)
    frame = report.to_frame()
    cols = ["dataset", "group", "hardware", "n_test", "mape_uncalibrated", "p90_uncalibrated", "mape_calibrated",
            "p90_calibrated", "mape_transfer", "p90_transfer"]
    print(frame[cols].to_string(index=False, float_format=lambda v: f"{100 * v:.1f}%"))
    print(f"\nsplit: {report.split}\n")
    print(f"{'target':54s} {'reached':>8s} {'target':>8s}")
    for label, ds, group, col, target in TARGETS:
        row = frame[(frame.dataset == ds) & (frame.group == group)]
        value = float(row[col].iloc[0]) if len(row) and row[col].notna().all() else float("nan")
        mark = "ok" if value <= target else "MISSED"
        print(f"{label:54s} {100 * value:7.1f}% {100 * target:7.0f}%  {mark}")
    print(f"\n{time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report.to_dict(), fh, indent=1)


if __name__ == "__main__":
    main()
