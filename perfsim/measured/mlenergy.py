"""ml-energy/leaderboard: The ML.ENERGY Benchmark v3, LLM chat (LM Arena prompts), vLLM on H100 and B200.

One row per configuration. measured_s is the median inter-token latency (metric='median_itl');
energy per token (J) and average GPU power (W, NVML through Zeus) sit beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from perfsim.measured._common import dtype_name, fail, finish, numeric, require

SOURCE = "ml-energy/leaderboard@0cd52da (ML.ENERGY Benchmark v3, mlenergy-neuripsdb25)"
GPU_HARDWARE = {"H100": "h100-sxm", "B200": "b200", "A100": "a100-sxm-80gb", "H200": "h200-sxm"}

RAW_COLUMNS = (
    "model_id", "gpu_model", "num_gpus", "tensor_parallel", "expert_parallel", "data_parallel", "max_num_seqs",
    "avg_batch_size", "avg_output_len", "median_itl_ms", "p90_itl_ms", "output_throughput_tokens_per_sec",
    "avg_power_watts", "energy_per_token_joules", "weight_precision",
)
_RENAME = {
    "gpu_model": "gpu_model_raw", "tensor_parallel": "tp", "expert_parallel": "ep", "data_parallel": "dp",
    "output_throughput_tokens_per_sec": "output_throughput_tokens_per_s", "avg_power_watts": "avg_power_w",
    "energy_per_token_joules": "energy_per_token_j", "energy_per_request_joules": "energy_per_request_j",
    "total_params_billions": "total_params_b", "activated_params_billions": "active_params_b",
}
COLUMNS = [
    "config_index", "model_id", "nickname", "architecture", "gpu", "num_gpus", "tp", "ep", "dp", "max_num_seqs",
    "avg_batch_size", "avg_output_len", "median_itl_s", "p90_itl_s", "p95_itl_s", "p99_itl_s",
    "energy_per_token_j", "energy_per_request_j", "avg_power_w", "output_throughput_tokens_per_s",
    "weight_precision", "total_params_b", "active_params_b", "metric",
]


def lm_arena_chat(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise fail(path, "file not found", RAW_COLUMNS)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        configs = doc["configurations"]
        raw = pd.DataFrame(configs)
    except Exception as exc:
        what = "no 'configurations' list" if isinstance(exc, (KeyError, TypeError, ValueError)) and not isinstance(
            exc, json.JSONDecodeError) else "not a readable JSON file"
        raise fail(path, f"{what} ({type(exc).__name__})", RAW_COLUMNS) from None
    require(raw, path, RAW_COLUMNS)
    numbers = [c for c in RAW_COLUMNS if c not in ("model_id", "gpu_model", "weight_precision")]
    numeric(raw, path, numbers, RAW_COLUMNS, positive=True)   # counts, lengths, times, power, energy
    for col in ("num_gpus", "tensor_parallel", "expert_parallel", "data_parallel", "max_num_seqs"):
        raw[col] = raw[col].astype("int64")
    raw["config_index"] = range(len(raw))  # two configurations repeat with different results; keep both
    raw = raw.rename(columns=_RENAME)
    for ms in ("median_itl", "p90_itl", "p95_itl", "p99_itl"):
        raw[f"{ms}_s"] = pd.to_numeric(raw[f"{ms}_ms"], errors="coerce") * 1e-3 if f"{ms}_ms" in raw else float("nan")
    for col in ("energy_per_request_j", "total_params_b", "active_params_b"):
        if col not in raw:
            raw[col] = float("nan")
    for col in ("nickname", "architecture"):
        if col not in raw:
            raw[col] = ""
    gpu = raw["gpu_model_raw"].map(lambda g: GPU_HARDWARE.get(str(g)))
    if gpu.isna().any():
        unknown = raw["gpu_model_raw"][gpu.isna()].iloc[0]
        raise fail(path, f"unknown gpu_model {unknown}; known: {', '.join(GPU_HARDWARE)}")
    raw["gpu"] = gpu.astype(str)
    raw["weight_precision"] = dtype_name(raw["weight_precision"], path)
    raw["measured_s"] = raw["median_itl_s"]
    raw["metric"] = "median_itl"
    return finish(raw, path, dataset, hardware or raw["gpu"].to_numpy(), SOURCE, COLUMNS)
