"""The named measured datasets, and `load` for a name or a file path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from perfsim.errors import DataError, InvalidInputError, UnknownNameError, one_line
from perfsim.measured import aiconfigurator as aic
from perfsim.measured import llmcompass, mlenergy, vidur
from perfsim.measured._common import data_root, fail

# Op families: every frame of a family has the same columns.
FAMILIES = {
    "layer_ops": "vidur per-operator times of one decoder layer (GEMMs with m,n,k; others with elements)",
    "gemm": "dense GEMM: m, n, k, dtype",
    "elementwise": "softmax / layernorm / gelu over m x n elements",
    "context_attention": "prefill attention: batch, isl, heads, head_dim, window, dtype, kv_dtype",
    "context_mla": "prefill multi-head latent attention kernel: batch, isl, heads per GPU, MLA dims, dtype, kv_dtype",
    "generation_mla": "absorbed decode MLA kernel: batch, kv_len, heads per GPU, MLA dims, dtype, kv_dtype",
    "generation_attention": "decode attention: batch, kv_len, heads, head_dim, window, dtype, kv_dtype",
    "moe": "fused MoE expert compute on one GPU: num_tokens, hidden, inter, topk, num_experts, tp, ep",
    "collective": "collective communication: op, num_gpus, size_bytes, dtype, topology, implementation",
    "serving_energy": "end-to-end serving configurations with ITL, throughput, power, energy per token",
    "serving": "end-to-end serving measurements: TTFT and TPOT per configuration",
}


@dataclass(frozen=True)
class Dataset:
    """A named measured dataset: `loader(root)` returns its tidy frame."""
    name: str
    description: str
    family: str
    hardware: tuple[str, ...]
    source: str
    files: tuple[str, ...]
    loader: Callable[[Path], pd.DataFrame] = field(repr=False, compare=False)
    root: Path | None = None  # where `files` live when they ship with perfsim; else the shared data root

    def paths(self, root: Path | None = None) -> list[Path]:
        """The files read (`files` are paths or glob patterns relative to the data root)."""
        root = self.root or (data_root() if root is None else root)
        return [p for f in self.files for p in (sorted(root.glob(f)) if "*" in f else [root / f])]


def _vidur_compute(name: str, gpu: str) -> Dataset:
    hw = vidur.GPU_HARDWARE[gpu]
    folder = f"vidur/compute/{gpu}"

    def load(root: Path) -> pd.DataFrame:
        files = sorted((root / folder).glob("*/*/mlp.csv"))
        if not files:
            raise DataError(f"{root / folder}: no <org>/<model>/mlp.csv files found")
        return pd.concat([vidur.compute(f, name, hw, model=f"{f.parent.parent.name}/{f.parent.name}")
                          for f in files], ignore_index=True)

    return Dataset(name, f"vidur per-op times of one decoder layer, all models profiled on {gpu.upper()}",
                   "layer_ops", (hw,), vidur.SOURCE, (f"{folder}/*/*/mlp.csv",), load)


def _one(name, description, family, hardware, source, rel, reader, **kwargs) -> Dataset:
    def load(root: Path) -> pd.DataFrame:
        return reader(root / rel, name, **kwargs)
    return Dataset(name, description, family, tuple(hardware), source, (rel,), load)


SHIPPED = Path(__file__).resolve().parent / "shipped"
H200_RUN = "h200-2026-11-29"
H200_SOURCE = (f"perfsim calibrate --device cuda on one NVIDIA H200 SXM, 2026-11-29 (driver 580.159.04, torch "
               f"2.11.0+cu130, CUDA 13.0); raw files and provenance in perfsim/measured/shipped/{H200_RUN}")


def _h200(family: str, description: str) -> Dataset:
    """A table of perfsim's own H200 calibration run, scored against the shipped h200-sxm spec."""
    rel = f"{H200_RUN}/cuda_{family}.csv"

    def load(root: Path) -> pd.DataFrame:
        frame = _tidy(root / rel, name)
        frame[["dataset", "hardware", "source"]] = [name, "h200-sxm", H200_SOURCE]
        return frame
    name = f"perfsim-h200-{family.replace('_', '-')}"
    return Dataset(name, description, family, ("h200-sxm",), H200_SOURCE, (rel,), load, root=SHIPPED)


def _aic_nccl(root: Path) -> pd.DataFrame:
    files = ("a100_sxm_nccl_2.27.3.parquet", "h100_sxm_nccl_2.29.2.parquet", "b200_sxm_nccl_2.29.2.parquet")
    return pd.concat([aic.nccl(root / "aiconfigurator/nccl" / f, "aic-nccl") for f in files], ignore_index=True)


def _build() -> dict[str, Dataset]:
    sets = [
        _vidur_compute("vidur-h100", "h100"),
        _vidur_compute("vidur-a100", "a100"),
        _vidur_compute("vidur-a40", "a40"),
    ]
    lc = "llmcompass/a100/"
    lc_hw = (llmcompass.HARDWARE,)
    sets += [
        _one("llmcompass-a100-matmul", "fp16 torch.matmul on A100 80GB (LLMCompass Fig. 5)", "gemm", lc_hw,
             llmcompass.SOURCE, lc + "matmul.csv", llmcompass.matmul),
        _one("llmcompass-a100-softmax", "fp16 softmax over M x N on A100 80GB (LLMCompass Fig. 5)", "elementwise",
             lc_hw, llmcompass.SOURCE, lc + "softmax.csv", llmcompass.rowwise, op="softmax"),
        _one("llmcompass-a100-layernorm", "fp16 layernorm over M x N on A100 80GB (LLMCompass Fig. 5)",
             "elementwise", lc_hw, llmcompass.SOURCE, lc + "layernorm.csv", llmcompass.rowwise, op="layernorm"),
        _one("llmcompass-a100-gelu", "fp16 GELU over M elements on A100 80GB (LLMCompass Fig. 5)", "elementwise",
             lc_hw, llmcompass.SOURCE, lc + "gelu.csv", llmcompass.gelu),
        _one("llmcompass-a100-allreduce", "fp16 all-reduce on 4x A100 NVLink, 8 B..16 GiB (LLMCompass Fig. 5h)",
             "collective", lc_hw, llmcompass.SOURCE, lc + "allreduce_4gpu.csv", llmcompass.allreduce),
    ]
    h = "aiconfigurator/h100_sxm/"
    sets += [
        _one("aic-h100-gemm", "TensorRT-LLM GEMM on H100 SXM: bf16, fp8, fp8_block", "gemm", ("h100-sxm",),
             aic.SOURCE, h + "gemm_perf.parquet", aic.gemm),
        _one("aic-h100-context-attention", "TensorRT-LLM prefill attention on H100 SXM", "context_attention",
             ("h100-sxm",), aic.SOURCE, h + "context_attention_perf.parquet", aic.context_attention),
        _one("aic-h100-generation-attention", "TensorRT-LLM decode attention on H100 SXM", "generation_attention",
             ("h100-sxm",), aic.SOURCE, h + "generation_attention_perf.parquet", aic.generation_attention),
        _one("aic-h100-moe", "TensorRT-LLM fused MoE (one GPU's TP/EP shard) on H100 SXM", "moe", ("h100-sxm",),
             aic.SOURCE, h + "moe_perf.parquet", aic.moe),
        _one("aic-h100-custom-allreduce", "TensorRT-LLM custom all-reduce, bf16, 2/4/8 GPUs of a DGX H100",
             "collective", ("h100-sxm",), aic.SOURCE, h + "custom_allreduce_perf.parquet", aic.custom_allreduce),
        Dataset("aic-nccl", "nccl-tests all_reduce/all_gather/reduce_scatter/all_to_all, 2/4/8 GPUs of one node, "
                "A100 SXM, H100 SXM, B200", "collective", ("a100-sxm-80gb", "h100-sxm", "b200"), aic.NCCL_SOURCE,
                ("aiconfigurator/nccl/*_nccl_*.parquet",), _aic_nccl),
    ]
    for setup, coll in vidur.NETWORK_FILES:
        hw, _, what = vidur.SETUPS[setup]
        sets.append(_one(f"vidur-net-{setup}-{coll}", f"torch.distributed {coll} (fp16), {what}", "collective",
                         (hw,), vidur.SOURCE, f"vidur/network/{setup}/{coll}.csv", vidur.network))
    sets += [
        _one("mlenergy-lm-arena-chat", "vLLM chat serving on H100/B200: ITL, throughput, power, energy per token",
             "serving_energy", ("h100-sxm", "b200"), mlenergy.SOURCE, "ml-energy/lm-arena-chat.json",
             mlenergy.lm_arena_chat),
        _one("aic-silicon-refs", "35 end-to-end serving runs (TRT-LLM/SGLang/vLLM; H100..GB300): TTFT, TPOT",
             "serving", ("h100-sxm", "h200-sxm", "b200", "b300", "gb200", "gb300"), aic.SILICON_SOURCE,
             "aiconfigurator/silicon_refs.csv", aic.silicon_refs),
    ]
    sets += [
        _h200("gemm", "torch.mm bf16/fp16/fp32 and torch._scaled_mm fp8 on one H200 SXM (perfsim calibrate)"),
        _h200("context_attention", "torch SDPA causal prefill (fused kernels), bf16/fp16, on one H200 SXM"),
        _h200("generation_attention", "torch SDPA decode (fused kernels), bf16/fp16, on one H200 SXM"),
        _h200("elementwise", "bf16 add, tanh-GELU, softmax, layernorm on one H200 SXM (perfsim calibrate)"),
    ]
    return {d.name: d for d in sets}


DATASETS: Mapping[str, Dataset] = _build()


def names(family: str | None = None) -> list[str]:
    return [n for n, d in DATASETS.items() if family is None or d.family == family]


@cache
def _load_named(name: str, root: str) -> pd.DataFrame:
    return DATASETS[name].loader(Path(root))


# ----------------------------------------------------------------------------------- by file path

def _csv_format(path: Path) -> tuple[Callable, dict]:
    """Pick the reader of a CSV from its header (or its lack of one)."""
    try:
        with path.open("r", encoding="utf-8") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(path, f"not a readable CSV file ({type(exc).__name__})") from None
    if not first.strip():
        raise fail(path, "empty file")
    if llmcompass.is_headerless(first):
        nfields = len(first.split(","))
        stem = path.stem.lower()
        if nfields == 5:
            return llmcompass.matmul, {}
        if nfields == 2:
            return llmcompass.gelu, {}
        if nfields == 3:
            for op in ("softmax", "layernorm"):
                if op in stem.replace("_", ""):
                    return llmcompass.rowwise, {"op": op}
            raise fail(path, "headerless M,N,throughput file: cannot tell softmax from layernorm; "
                             "put 'softmax' or 'layernorm' in the file name")
        raise fail(path, f"headerless file with {nfields} fields; expected 5 (matmul), 3 (softmax/layernorm) "
                         "or 2 (gelu)")
    columns = {c.strip().strip('"') for c in first.strip().split(",")}
    if "measured_s" in columns:  # already in perfsim's tidy schema (e.g. written by `perfsim calibrate --device`)
        return _tidy, {}
    if {"op_name", "latency"} <= columns:   # aiconfigurator's collector output (systems/data/*/*_perf.txt)
        return _native_format(path, columns, lambda: pd.read_csv(path, usecols=["op_name"])["op_name"])
    if any(c.startswith("time_stats.") for c in columns):
        if "num_tensor_parallel_workers" in columns or "n_embd" in columns:
            return vidur.compute, {}
        return vidur.network, {}
    candidates = [
        (aic.silicon_refs, {}, aic.SILICON_CSV),
        (llmcompass.allreduce, {}, llmcompass.ALLREDUCE_COLUMNS),
        (aic.nccl, {}, aic.NCCL_CSV),
        (aic.custom_allreduce, {}, aic.CUSTOM_AR_CSV),
        (aic.moe, {}, aic.MOE_CSV),
        (aic.generation_attention, {}, aic.GENERATION_CSV),
        (aic.context_attention, {}, aic.CONTEXT_CSV),
        (aic.gemm, {}, aic.GEMM_CSV),
    ]
    return _best(path, columns, candidates)


def _tidy(path: Path, dataset: str) -> pd.DataFrame:
    """A CSV in perfsim's tidy schema: times in seconds in `measured_s`, shape columns by family."""
    try:
        frame = pd.read_csv(path)
    except Exception as exc:
        raise fail(path, f"not a readable CSV file ({type(exc).__name__})") from None
    times = pd.to_numeric(frame["measured_s"], errors="coerce")
    if not (times.notna().all() and (times > 0).all() and np.isfinite(times).all()):
        raise fail(path, "column measured_s must hold finite times > 0 in seconds")
    for col, value in (("dataset", dataset), ("hardware", ""), ("source", f"file {path.name}")):
        if col not in frame:
            frame.insert(0, col, value)
    return frame


def _parquet_format(path: Path) -> tuple[Callable, dict]:
    import pyarrow.parquet as pq
    try:
        columns = set(pq.read_schema(path).names)
    except Exception as exc:
        raise fail(path, f"not a readable parquet file ({type(exc).__name__})") from None
    return _native_format(path, columns, lambda: pd.read_parquet(path, columns=["op_name"])["op_name"])


def _native_format(path: Path, columns: set[str], op_names: Callable[[], pd.Series]) -> tuple[Callable, dict]:
    """The reader of an aiconfigurator table in the collector's own columns (parquet or .txt)."""
    if "nccl_dtype" in columns:
        return aic.nccl, {}
    if "allreduce_dtype" in columns:
        return aic.custom_allreduce, {}
    if "mla_dtype" in columns:
        try:
            ops = set(op_names().astype(str).unique()) if "op_name" in columns else set()
        except Exception as exc:
            raise fail(path, f"not a readable table ({type(exc).__name__})") from None
        return (aic.generation_mla if any("generation" in o for o in ops) else aic.context_mla), {}
    if "step" in columns and "op_name" in columns:
        try:
            ops = set(op_names().astype(str).unique())
        except Exception as exc:
            raise fail(path, f"not a readable table ({type(exc).__name__})") from None
        return (aic.generation_attention if "generation_attention" in ops else aic.context_attention), {}
    candidates = [
        (aic.moe, {}, aic.MOE_PARQUET),
        (aic.generation_attention, {}, aic.GENERATION_PARQUET),
        (aic.context_attention, {}, aic.CONTEXT_PARQUET),
        (aic.gemm, {}, aic.GEMM_PARQUET),
    ]
    return _best(path, columns, candidates)


def _best(path: Path, columns: set[str], candidates) -> tuple[Callable, dict]:
    """The format whose required columns the file has most of (at least half); its reader names any missing."""
    scored = [(len(columns & set(req)) / len(req), i) for i, (_, _, req) in enumerate(candidates)]
    score, i = max(scored, key=lambda t: (t[0], -t[1]))
    if score < 0.5:
        shown = ", ".join(sorted(columns)[:12]) + (" ..." if len(columns) > 12 else "")
        raise fail(path, f"unrecognised columns ({shown}); not a known measured-data format")
    reader, kwargs, _ = candidates[i]
    return reader, kwargs


def load_path(path: str | Path) -> pd.DataFrame:
    """Read one measured-data file of any known format; the format is detected from its columns."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise fail(path, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        reader, kwargs = _parquet_format(path)
    elif suffix == ".json":
        reader, kwargs = mlenergy.lm_arena_chat, {}
    elif suffix in (".csv", ".txt"):
        reader, kwargs = _csv_format(path)
    else:
        raise fail(path, f"unknown file type {suffix!r}; expected .csv, .parquet or .json")
    return reader(path, f"file:{path.name}", **kwargs)


@lru_cache(maxsize=64)
def _load_path_cached(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return load_path(path)


# ------------------------------------------------------------------------------------------ load

def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.lower().endswith((".csv", ".parquet", ".json", ".txt"))


def load(name_or_path: str | Path, **filters) -> pd.DataFrame:
    """A tidy DataFrame of a named dataset (see DATASETS) or of a file path, with optional filters.

    Each filter is column=value (equality), column=[v1, v2, ...] (any of), or column=callable
    (a function of the column returning a boolean mask). Frames are cached; the caller gets its own copy.
    """
    key = str(name_or_path)
    if isinstance(name_or_path, Path) or (key not in DATASETS and _looks_like_path(key)):
        path = Path(key).expanduser().resolve()
        if not path.is_file():
            raise fail(path, "file not found")
        stat = path.stat()
        frame = _load_path_cached(str(path), stat.st_mtime_ns, stat.st_size)
    elif key in DATASETS:
        frame = _load_named(key, str((DATASETS[key].root or data_root()).resolve()))
    else:
        raise UnknownNameError(one_line(f"unknown measured dataset {key!r}; known: {', '.join(DATASETS)}"))
    # A deep copy: callers may edit their frame in place without touching the cached one.
    return _filter(frame, filters) if filters else frame.copy()


def _filter(frame: pd.DataFrame, filters: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for col, want in filters.items():
        if col not in frame.columns:
            raise InvalidInputError(one_line(f"filter {col}: no such column; columns: {', '.join(frame.columns)}"))
        values = frame[col]
        if callable(want):
            mask &= pd.Series(want(values), index=frame.index).astype(bool)
        elif isinstance(want, (list, tuple, set, frozenset)):
            mask &= values.isin(list(want))
        else:
            mask &= values == want
    return frame[mask].reset_index(drop=True)


def clear_cache() -> None:
    _load_named.cache_clear()
    _load_path_cached.cache_clear()


def describe() -> str:
    """One line per dataset: name, family, hardware, description (for a CLI listing)."""
    width = max(map(len, DATASETS))
    return "\n".join(f"{d.name:<{width}}  {d.family:<20}  {','.join(d.hardware):<24}  {d.description}"
                     for d in DATASETS.values())


__all__ = ["DATASETS", "FAMILIES", "Dataset", "clear_cache", "describe", "load", "load_path", "names"]
