"""TensorRT-LLM's published throughput tables (`trtllm-bench throughput`) as rows for perfsim.serving.published.

tests/data/trtllm_perf_overview.yaml holds the tables as the page prints them; `load_runs` turns every filled cell
into one offline row: identical requests of the cell's ISL/OSL, all queued at t = 0, scored as output tokens over
the whole run, with the batch limit and token budget trtllm-bench would have chosen (`bench_limits`). Nothing is
fitted.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from perfsim.errors import DataError
from perfsim.hardware import load_device
from perfsim.model import load_model
from perfsim.published_runs import DATA_DIR

DEFAULT_PATH = DATA_DIR / "trtllm_perf_overview.yaml"
ENGINE_VERSION = "1.0"
# trtllm-bench's bytes per element of a checkpoint's weights and KV cache (tensorrt_llm/bench/build/tuning.py)
BENCH_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5}
NVFP4_BLOCK = 16   # NVFP4 keeps one FP8 scale per 16 weights (a safetensors element of its own)
# finetune_setting's rounding: (below this value, round up to a multiple of this step)
BATCH_STEPS = ((256, 32), (1024, 128), (math.inf, 256))
TOKEN_STEPS = ((4096, 256), (8192, 512), (math.inf, 1024))


def checkpoint_elements(model, dtype: str) -> int:
    """Elements in the checkpoint's safetensors, which trtllm-bench counts as its parameters: an NVFP4 checkpoint
    packs two weights per uint8 element and adds one FP8 scale per block, beside its unquantized tensors."""
    if dtype != "fp4":
        return model.params_total
    quantized = model.params_total - model.unquantized_params()
    return quantized // 2 + quantized // NVFP4_BLOCK + model.unquantized_params()


def _round_up(x: float, steps, floor: int) -> int:
    """x rounded up to the step of the first band it falls below, at least `floor`."""
    step = next(step for limit, step in steps if x < limit)
    return max(floor, step * math.ceil(x / step))


def bench_limits(model, device, tp: int, pp: int, isl: int, osl: int, dtype: str, kv_dtype: str,
                 kv_fraction: float = 0.95) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) trtllm-bench picks when neither is given: TensorRT-LLM's tuning heuristic
    (tensorrt_llm/bench/build/tuning.py, calc_engine_setting and finetune_setting) from the requests the KV cache
    holds at the dataset's ISL + OSL, then raised to fit the longest prompt plus a full batch, as chunked prefill is
    off by default (bench/benchmark/utils/general.py, get_settings)."""
    model, device = load_model(model), load_device(device)
    gib = 2 ** 30
    kv_heads = max(tp, model.kv_heads)   # each tensor-parallel rank holds >= 1 KV head
    kv_token = 2 * model.num_attention_layers * kv_heads * model.dim_head * BENCH_BYTES[kv_dtype] / gib
    weights = checkpoint_elements(model, dtype) * BENCH_BYTES[dtype] / gib
    free = device.memory_bytes / gib * tp * pp - weights
    if free <= 0:
        raise DataError(f"trtllm-bench: {model.name} in {dtype} does not fit {tp * pp} x {device.name}")
    requests = free * kv_fraction / (kv_token * (isl + osl))
    raw_bs = min(requests, 4096) / pp
    raw_tokens = min(raw_bs * (1 + isl / osl), 32768)
    max_bs = _round_up(raw_bs, BATCH_STEPS, 64)
    max_tokens = _round_up(raw_tokens, TOKEN_STEPS, 2048)
    return max_bs, max(max_tokens, isl + max_bs)


def load_runs(path: str | Path | None = None) -> list[dict]:
    """One published-run row (perfsim.serving.published) per filled cell of the tables."""
    path = Path(path or DEFAULT_PATH)
    if not path.is_file():
        raise DataError(f"{path}: TensorRT-LLM throughput tables not found (the file ships with the tests)")
    data = yaml.safe_load(path.read_text())
    runs = []
    for table in data["tables"]:
        model = load_model(table["model"])
        moe = model.moe is not None
        for j, col in enumerate(table["columns"]):
            hardware = data["systems"][col["gpu"]]
            tp, pp = col["tp"], col.get("pp", 1)
            for lengths, values in table["rows"].items():
                if values[j] is None:
                    continue
                isl, osl = (int(x) for x in lengths.split("/"))
                seqs, tokens = bench_limits(model, hardware, tp, pp, isl, osl, col["dtype"],
                                            data["kv_dtype"], data["kv_free_fraction"])
                runs.append({
                    "id": f"trtllm-{table['model']}-{col['gpu'].lower()}-tp{tp}pp{pp}-{isl}-{osl}",
                    "model": table["model"], "hardware": hardware, "num_gpus": tp * pp, "tp": tp, "pp": pp,
                    **({"ep": tp} if moe else {}), "dtype": col["dtype"], "kv_dtype": data["kv_dtype"],
                    "kv_free_fraction": data["kv_free_fraction"], "engine": "trtllm", "engine_version": ENGINE_VERSION,
                    "isl": isl, "osl": osl,
                    "length_spread": 0.0, "num_samples": data["num_requests"][lengths],
                    "max_num_seqs": seqs, "max_num_batched_tokens": tokens,
                    "metric": "offline_tokens_per_s", "value": float(values[j]), "source": data["source"],
                    "assumed": ["kv_dtype", "kv_free_fraction"] + (["ep"] if moe else []),
                })
    return runs


def compare(path: str | Path | None = None, profile="auto") -> list:
    """Published against simulated output tokens/s for every row (perfsim.published_runs.Comparison)."""
    from perfsim.serving.published import predict_row
    return [predict_row(r, profile) for r in load_runs(path)]


def is_moe(comparison) -> bool:
    return load_model(comparison.model).moe is not None
