"""Whole-model prefill and decode steps measured on an H200 against `perfsim predict` (python
benchmarks/model_steps_validation.py).

The steps were measured by benchmarks/gpu_model_steps.py, with CUDA graphs and random bf16 weights
(perfsim/measured/shipped/h200-2026-11-29/steps_*.csv). perfsim fits nothing on them: its H200 predictions
use the H100 profile through the h200-sxm spec. Prints each row's predicted/measured ratio with the profile and
with the pure roofline, and of its board power and energy per step (measured with NVML), then MAPE by task.
"""

from __future__ import annotations

from perfsim.validate import model_steps


def main() -> None:
    fitted, roofline = model_steps("auto"), model_steps("none")
    fitted["ratio"] = fitted.predicted_s / fitted.measured_s
    fitted["roofline_ratio"] = roofline.predicted_s / roofline.measured_s
    fitted["power_ratio"] = fitted.predicted_power_w / fitted.power_w
    fitted["energy_ratio"] = fitted.predicted_energy_j / fitted.energy_j
    cols = ["model", "task", "batch", "tokens", "measured_s", "ratio", "roofline_ratio", "power_w", "power_ratio",
            "energy_j", "energy_ratio"]
    print(fitted[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for task, part in fitted.groupby("task"):
        m = {col: 100 * (part[col] - 1).abs().mean() for col in ("ratio", "roofline_ratio", "power_ratio",
                                                                  "energy_ratio")}
        print(f"{task:8s} rows {len(part):2d}  time MAPE {m['ratio']:5.1f}% (roofline {m['roofline_ratio']:5.1f}%)  "
              f"power {m['power_ratio']:5.1f}%  energy/step {m['energy_ratio']:5.1f}%")


if __name__ == "__main__":
    main()
