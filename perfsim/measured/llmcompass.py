"""PrincetonUniversity/LLMCompass validation points (ISCA'24 Figure 5): A100 80GB, PyTorch 2.0, fp16.

matmul/softmax/layernorm/gelu CSVs have NO header row. softmax, layernorm and gelu give throughput in
G elements/s; the latency is elements / (throughput * 1e9). allreduce_4gpu.csv (derived, with header)
is size_bytes, latency_us, algbw_GBps on 4x A100 NVLink.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from perfsim.measured._common import fail, finish, numeric, read_csv

SOURCE = "PrincetonUniversity/LLMCompass@b95c6c9 (ISCA'24 Fig. 5)"
HARDWARE = "a100-sxm-80gb"
DTYPE = "fp16"

MATMUL_FIELDS = ("M", "N", "K", "latency (e.g. 0.1900ms)", "throughput (e.g. 101.7Tflops)")
ROWWISE_FIELDS = ("M", "N", "throughput_gelem_s")
GELU_FIELDS = ("M", "throughput_gelem_s")
ALLREDUCE_COLUMNS = ("size_bytes", "latency_us", "algbw_GBps")

GEMM_COLUMNS = ["op", "m", "n", "k", "dtype", "kernel_source"]
ELEMENTWISE_COLUMNS = ["op", "m", "n", "elements", "dtype", "throughput_gelem_s"]
COLLECTIVE_COLUMNS = [
    "op", "num_gpus", "size_bytes", "message_elements", "dtype", "devices_per_node", "max_devices_per_node",
    "num_nodes", "crosses_nodes", "system", "implementation",
]

_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*([A-Za-z/]+)?\s*$")


def is_headerless(first_line: str) -> bool:
    """True if every field of the first line is a number, possibly with a unit suffix ('0.19ms')."""
    fields = first_line.strip().split(",")
    return bool(fields) and all(_NUMBER.match(f) for f in fields)


def _read(path: Path, fields: tuple[str, ...]) -> pd.DataFrame:
    raw = read_csv(path, (), header=None, skipinitialspace=True)
    if raw.shape[1] != len(fields):
        raise fail(path, f"{raw.shape[1]} fields per row, expected {len(fields)} (no header)", fields)
    raw.columns = [f"c{i}" for i in range(len(fields))]
    return raw


def _strip_unit(raw: pd.DataFrame, col: str, unit: str, path: Path, fields) -> None:
    text = raw[col].astype(str).str.strip()
    if not text.str.endswith(unit).all():
        raise fail(path, f"field {fields[int(col[1:])]} lacks the unit {unit!r}", fields)
    raw[col] = text.str.slice(0, -len(unit))


def matmul(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    path = Path(path)
    raw = _read(path, MATMUL_FIELDS)
    _strip_unit(raw, "c3", "ms", path, MATMUL_FIELDS)
    _strip_unit(raw, "c4", "Tflops", path, MATMUL_FIELDS)
    numeric(raw, path, ["c0", "c1", "c2", "c3"], MATMUL_FIELDS)
    out = pd.DataFrame({
        "op": "gemm",
        "m": raw["c0"].astype("int64"), "n": raw["c1"].astype("int64"), "k": raw["c2"].astype("int64"),
        "dtype": DTYPE, "kernel_source": "torch.matmul", "measured_s": raw["c3"] * 1e-3,
    })
    return finish(out, path, dataset, hardware or HARDWARE, SOURCE, GEMM_COLUMNS)


def rowwise(path: Path, dataset: str, op: str, hardware: str | None = None) -> pd.DataFrame:
    """softmax / layernorm over an M x N fp16 tensor."""
    path = Path(path)
    raw = _read(path, ROWWISE_FIELDS)
    numeric(raw, path, ["c0", "c1", "c2"], ROWWISE_FIELDS)
    out = pd.DataFrame({"op": op, "m": raw["c0"].astype("int64"), "n": raw["c1"].astype("int64"),
                        "throughput_gelem_s": raw["c2"]})
    return _elementwise(out, path, dataset, hardware)


def gelu(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """GELU over a 1-D fp16 tensor of M elements (m = elements, n = 1)."""
    path = Path(path)
    raw = _read(path, GELU_FIELDS)
    numeric(raw, path, ["c0", "c1"], GELU_FIELDS)
    out = pd.DataFrame({"op": "gelu", "m": raw["c0"].astype("int64"), "n": 1, "throughput_gelem_s": raw["c1"]})
    return _elementwise(out, path, dataset, hardware)


def _elementwise(out: pd.DataFrame, path: Path, dataset: str, hardware: str | None) -> pd.DataFrame:
    out["elements"] = out["m"] * out["n"]
    out["dtype"] = DTYPE
    out["measured_s"] = out["elements"] / (out["throughput_gelem_s"] * 1e9)  # zero throughput fails in finish
    return finish(out, path, dataset, hardware or HARDWARE, SOURCE, ELEMENTWISE_COLUMNS)


def allreduce(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """4x A100 NVLink all-reduce, fp16; the figures look like nccl-tests output (time in us, algbw)."""
    path = Path(path)
    raw = read_csv(path, ALLREDUCE_COLUMNS)
    numeric(raw, path, ALLREDUCE_COLUMNS, ALLREDUCE_COLUMNS)
    out = pd.DataFrame({
        "op": "all_reduce", "num_gpus": 4, "size_bytes": raw["size_bytes"].astype("int64"),
        "dtype": DTYPE, "devices_per_node": 4, "max_devices_per_node": 4, "num_nodes": 1,
        "crosses_nodes": False, "system": "llmcompass_a100x4_nvlink", "implementation": "nccl",
        "measured_s": raw["latency_us"] * 1e-6,
    })
    out["message_elements"] = out["size_bytes"] // 2
    return finish(out, path, dataset, hardware or HARDWARE, SOURCE, COLLECTIVE_COLUMNS)
