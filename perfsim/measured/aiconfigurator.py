"""ai-dynamo/aiconfigurator tables (NVIDIA, TensorRT-LLM 1.3.0rc20 on H100 SXM; nccl-tests on 3 GPUs).

`latency` is milliseconds per kernel call. NCCL and custom all-reduce `message_size` is in ELEMENTS.
The parquet tables are read by default; the derived bf16 CSVs beside them load by path.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from perfsim.measured._common import (
    DEVICE_HARDWARE,
    DTYPE_BYTES,
    SYSTEM_HARDWARE,
    SYSTEM_NAMES,
    as_int,
    dtype_name,
    fail,
    finish,
    hardware_from_path,
    numeric,
    read_csv,
    read_parquet,
    require,
)

SOURCE = "ai-dynamo/aiconfigurator@095f58a (TensorRT-LLM 1.3.0rc20)"
NCCL_SOURCE = "ai-dynamo/aiconfigurator@095f58a (nccl-tests)"
SILICON_SOURCE = "ai-dynamo/aiconfigurator@095f58a (silicon_refs.csv)"

_META = ("framework", "version", "device", "op_name", "kernel_source")


def _hardware(raw: pd.DataFrame, path: Path) -> str | pd.Series:
    """The GPU of each row from its `device` string, else from the table's system folder (h100_sxm/, ...)."""
    folder = hardware_from_path(path, SYSTEM_HARDWARE, default="")
    if "device" in raw:
        mapped = raw["device"].map(lambda d: DEVICE_HARDWARE.get(str(d)) or folder or None)
        if mapped.isna().any():
            unknown = sorted({str(d) for d in raw["device"][mapped.isna()]})
            raise fail(path, f"unknown device {', '.join(unknown)}; known: {', '.join(DEVICE_HARDWARE)} "
                             "(or pass --hardware)")
        return mapped.astype(str).to_numpy()
    return folder or "unknown"


def _read(path: Path, native: tuple[str, ...], derived: tuple[str, ...]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """(table, its schema): a parquet, or a CSV / .txt in the collector's native columns (`native`: a `latency`
    in ms, as aiconfigurator's systems/data/*/*_perf.txt files hold them) or the derived CSVs' (`derived`)."""
    if path.suffix == ".parquet":
        return read_parquet(path, native), native
    raw = read_csv(path, ())
    expected = native if "latency" in raw.columns else derived
    require(raw, path, expected)
    return raw, expected


def _latency(raw: pd.DataFrame, path: Path, expected) -> pd.Series:
    col = "latency" if "latency" in raw else "latency_ms"
    numeric(raw, path, [col], expected)
    return raw[col] * 1e-3


# ------------------------------------------------------------------------------------------ GEMM
GEMM_PARQUET = ("gemm_dtype", "m", "n", "k", "latency")
GEMM_CSV = ("m", "n", "k", "latency_ms")
GEMM_COLUMNS = ["op", "m", "n", "k", "dtype", "kernel_source"]


def gemm(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    path = Path(path)
    raw, expected = _read(path, GEMM_PARQUET, GEMM_CSV)
    numeric(raw, path, ["m", "n", "k"], expected)
    as_int(raw, ["m", "n", "k"])
    raw["measured_s"] = _latency(raw, path, expected)
    raw["op"] = "gemm"
    # The derived CSV holds only the bf16 rows (file name gemm_bf16_...).
    raw["dtype"] = dtype_name(raw["gemm_dtype"], path) if "gemm_dtype" in raw else "bf16"
    if "kernel_source" not in raw:
        raw["kernel_source"] = "torch_flow"
    return finish(raw, path, dataset, hardware or _hardware(raw, path), SOURCE, GEMM_COLUMNS)


# ------------------------------------------------------------------------------------- attention
_ATTN_COMMON = ("batch_size", "num_heads", "num_key_value_heads", "head_dim", "window_size")
CONTEXT_PARQUET = (*_ATTN_COMMON[:1], "isl", *_ATTN_COMMON[1:], "attn_dtype", "kv_cache_dtype", "latency")
CONTEXT_CSV = (*_ATTN_COMMON[:1], "isl", *_ATTN_COMMON[1:], "latency_ms")
GENERATION_PARQUET = (*_ATTN_COMMON, "step", "attn_dtype", "kv_cache_dtype", "latency")
GENERATION_CSV = (*_ATTN_COMMON, "kv_len_step", "latency_ms")
CONTEXT_COLUMNS = ["batch", "isl", "num_heads", "num_kv_heads", "head_dim", "window", "dtype", "kv_dtype"]
GENERATION_COLUMNS = ["batch", "kv_len", "num_heads", "num_kv_heads", "head_dim", "window", "dtype", "kv_dtype",
                      "rotary_dim"]
# aiconfigurator's collector (collector/trtllm/collect_attn.py) builds every attention layer with GPT-NeoX RoPE
# over 128 dimensions, whatever the head size
COLLECTOR_ROTARY_DIM = 128
_ATTN_RENAME = {"batch_size": "batch", "num_key_value_heads": "num_kv_heads", "window_size": "window",
                "step": "kv_len", "kv_len_step": "kv_len"}


def _attention(path: Path, dataset: str, hardware: str | None, generation: bool) -> pd.DataFrame:
    path = Path(path)
    raw, expected = _read(path, *((GENERATION_PARQUET, GENERATION_CSV) if generation
                                  else (CONTEXT_PARQUET, CONTEXT_CSV)))
    if "op_name" in raw:
        want = "generation_attention" if generation else "context_attention"
        raw = raw[raw["op_name"] == want]
        if raw.empty:
            raise fail(path, f"no rows with op_name {want}", expected)
    ints = [c for c in expected if c not in ("attn_dtype", "kv_cache_dtype", "latency", "latency_ms")]
    numeric(raw, path, ints, expected)
    as_int(raw, ints)
    raw = raw.rename(columns=_ATTN_RENAME)
    raw["measured_s"] = _latency(raw, path, expected)
    # The derived CSVs hold only the bf16/bf16 rows.
    raw["dtype"] = dtype_name(raw["attn_dtype"], path) if "attn_dtype" in raw else "bf16"
    raw["kv_dtype"] = dtype_name(raw["kv_cache_dtype"], path) if "kv_cache_dtype" in raw else "bf16"
    raw["rotary_dim"] = COLLECTOR_ROTARY_DIM
    columns = GENERATION_COLUMNS if generation else CONTEXT_COLUMNS
    return finish(raw, path, dataset, hardware or _hardware(raw, path), SOURCE, columns)


def context_attention(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """Prefill FMHA: `isl` tokens per sequence, per-GPU head counts."""
    return _attention(path, dataset, hardware, generation=False)


def generation_attention(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """Decode attention: kv_len (aiconfigurator `step`) cached tokens per sequence, one new token each."""
    return _attention(path, dataset, hardware, generation=True)


# ------------------------------------------------------------------------------------------- MLA
# Multi-head latent attention kernels alone (collector/trtllm/collect_mla.py): the context kernel over per-head
# decompressed q, k, v of `isl` tokens; the generation kernel absorbed, over `step` cached latents plus the new
# token. `num_heads` is per GPU (older tables give tp_size instead: 128 / tp_size heads). The collector builds
# DeepSeek-V3's dimensions.
MLA_NATIVE = ("mla_dtype", "kv_cache_dtype", "batch_size", "isl", "step", "latency")
MLA_DIMS = {"kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128}
DEEPSEEK_HEADS = 128
CONTEXT_MLA_COLUMNS = ["batch", "isl", "num_heads", "dtype", "kv_dtype", *MLA_DIMS]
GENERATION_MLA_COLUMNS = ["batch", "kv_len", "num_heads", "dtype", "kv_dtype", *MLA_DIMS]


def _mla(path: Path, dataset: str, hardware: str | None, generation: bool) -> pd.DataFrame:
    path = Path(path)
    raw, expected = _read(path, MLA_NATIVE, MLA_NATIVE)
    if "op_name" in raw:
        raw = raw[raw["op_name"].astype(str).str.contains("generation" if generation else "context")]
        if raw.empty:
            raise fail(path, f"no rows with an op_name of mla_{'generation' if generation else 'context'}", expected)
    if "num_heads" not in raw:
        if "tp_size" not in raw:
            raise fail(path, "missing column num_heads (or tp_size)", (*expected, "num_heads"))
        numeric(raw, path, ["tp_size"], expected)
        raw["num_heads"] = DEEPSEEK_HEADS // raw["tp_size"].astype(int)
    ints = ["batch_size", "isl", "step", "num_heads"]
    numeric(raw, path, ints, expected)
    as_int(raw, ints)
    raw = raw.rename(columns={"batch_size": "batch"})
    if generation:
        raw["kv_len"] = raw["isl"] + raw["step"]   # `step` cached latents, then the new token's
    raw["measured_s"] = _latency(raw, path, expected)
    raw["dtype"] = dtype_name(raw["mla_dtype"], path)
    raw["kv_dtype"] = dtype_name(raw["kv_cache_dtype"], path)
    for dim, value in MLA_DIMS.items():
        raw[dim] = value
    columns = GENERATION_MLA_COLUMNS if generation else CONTEXT_MLA_COLUMNS
    return finish(raw, path, dataset, hardware or _hardware(raw, path), SOURCE, columns)


def context_mla(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """Prefill MLA kernel: `isl` tokens per sequence, per-GPU heads."""
    return _mla(path, dataset, hardware, generation=False)


def generation_mla(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """Absorbed decode MLA kernel: kv_len = step + 1 latents per sequence."""
    return _mla(path, dataset, hardware, generation=True)


# ------------------------------------------------------------------------------------------- MoE
_MOE_COMMON = ("kernel_source", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts",
               "moe_tp_size", "moe_ep_size", "distribution")
MOE_PARQUET = (*_MOE_COMMON, "moe_dtype", "latency")
MOE_CSV = (*_MOE_COMMON, "latency_ms")
MOE_COLUMNS = ["num_tokens", "hidden", "inter", "topk", "num_experts", "tp", "ep", "distribution", "dtype",
               "kernel_source"]


def moe(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """Fused MoE expert compute on ONE GPU for its TP/EP shard (no all-to-all)."""
    path = Path(path)
    raw, expected = _read(path, MOE_PARQUET, MOE_CSV)
    ints = ["num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size"]
    numeric(raw, path, ints, expected)
    as_int(raw, ints)
    raw["measured_s"] = _latency(raw, path, expected)
    raw = raw.rename(columns={"hidden_size": "hidden", "inter_size": "inter", "moe_tp_size": "tp", "moe_ep_size": "ep"})
    raw["dtype"] = dtype_name(raw["moe_dtype"], path) if "moe_dtype" in raw else "bf16"
    raw["kernel_source"] = raw["kernel_source"].astype(str)
    raw["distribution"] = raw["distribution"].astype(str)
    return finish(raw, path, dataset, hardware or _hardware(raw, path), SOURCE, MOE_COLUMNS)


# ----------------------------------------------------------------------------------- collectives
CUSTOM_AR_PARQUET = ("allreduce_dtype", "num_gpus", "message_size", "latency")
CUSTOM_AR_CSV = ("allreduce_dtype", "num_gpus", "message_size_elements", "latency_ms")
NCCL_PARQUET = ("op_name", "nccl_dtype", "num_gpus", "message_size", "latency")
NCCL_CSV = ("system", "op_name", "nccl_dtype", "num_gpus", "message_size_elements", "latency_ms")
COLLECTIVE_COLUMNS = [
    "op", "num_gpus", "size_bytes", "message_elements", "dtype", "devices_per_node", "max_devices_per_node",
    "num_nodes", "crosses_nodes", "system", "implementation", "version",
]
_OP_NAMES = {"all_reduce": "all_reduce", "all_gather": "all_gather", "reduce_scatter": "reduce_scatter",
             "alltoall": "all_to_all", "all_to_all": "all_to_all"}
_DGX = {SYSTEM_HARDWARE[s]: name for s, name in SYSTEM_NAMES.items()}  # perfsim hardware -> DGX system


def _collective(raw: pd.DataFrame, path: Path, expected, dtype_col: str, op: pd.Series | str,
                system: pd.Series | str, implementation: str) -> pd.DataFrame:
    size_col = "message_size" if "message_size" in raw else "message_size_elements"
    numeric(raw, path, ["num_gpus", size_col], expected)
    as_int(raw, ["num_gpus", size_col])
    raw["measured_s"] = _latency(raw, path, expected)
    raw["dtype"] = dtype_name(raw[dtype_col], path)
    sizes = raw["dtype"].map(DTYPE_BYTES)
    if sizes.isna().any():
        raise fail(path, f"no element size for dtype {raw['dtype'][sizes.isna()].iloc[0]}")
    raw["message_elements"] = raw[size_col]
    raw["size_bytes"] = raw[size_col] * sizes.astype("int64")  # message_size counts ELEMENTS
    raw["op"] = op
    if raw["op"].isna().any():
        raise fail(path, f"unknown op_name; known: {', '.join(_OP_NAMES)}")
    # One node, all GPUs on it (collected on whole 8-GPU nodes).
    raw["devices_per_node"] = raw["num_gpus"]
    raw["max_devices_per_node"] = 8
    raw["num_nodes"] = 1
    raw["crosses_nodes"] = False
    raw["system"] = system
    raw["implementation"] = implementation
    if "version" not in raw:
        raw["version"] = raw["nccl_version"].astype(str) if "nccl_version" in raw else ""
    raw["version"] = raw["version"].astype(str)
    return raw


def custom_allreduce(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """TensorRT-LLM custom all-reduce, bf16, 2/4/8 GPUs of one DGX H100."""
    path = Path(path)
    raw, expected = _read(path, CUSTOM_AR_PARQUET, CUSTOM_AR_CSV)
    hw = hardware or _hardware(raw, path)
    system = pd.Series(hw, index=raw.index).map(lambda h: _DGX.get(h, "unknown")).to_numpy()
    raw = _collective(raw, path, expected, "allreduce_dtype", "all_reduce", system, "trtllm")
    return finish(raw, path, dataset, hw, SOURCE, COLLECTIVE_COLUMNS)


def nccl(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """nccl-tests on one node (2/4/8 GPUs) of one system per parquet, or all three in the CSV."""
    path = Path(path)
    raw, expected = _read(path, NCCL_PARQUET, NCCL_CSV)
    if "system" in raw:
        systems = raw["system"].astype(str)
    else:  # file name like h100_sxm_nccl_2.29.2.parquet, else a system folder (b200_sxm/nccl/2.27.3/nccl_perf.txt)
        prefix = path.name.split("_nccl")[0]
        folder = next((part for part in reversed(path.resolve().parts[:-1]) if part in SYSTEM_HARDWARE), prefix)
        systems = pd.Series(prefix if prefix in SYSTEM_HARDWARE else folder, index=raw.index)
    if hardware is None:
        by_system = systems.map(SYSTEM_HARDWARE).fillna("unknown").to_numpy()
        hardware = _hardware(raw, path) if "device" in raw else by_system
    op = raw["op_name"].map(lambda o: _OP_NAMES.get(str(o)))
    system = systems.map(lambda s: SYSTEM_NAMES.get(s, s)).to_numpy()
    raw = _collective(raw, path, expected, "nccl_dtype", op, system, "nccl")
    return finish(raw, path, dataset, hardware, NCCL_SOURCE, COLLECTIVE_COLUMNS)


# ---------------------------------------------------------------------------------- silicon refs
SILICON_CSV = ("id", "backend", "model_path", "system", "precision", "mode", "isl", "osl", "batch_size",
               "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size",
               "silicon_ttft_ms", "silicon_tpot_ms")
_PARALLEL = ("batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size")
_DISAGG = tuple(f"{phase}_{p}" for phase in ("prefill", "decode")
                for p in ("batch_size", "num_workers", "tp_size", "pp_size", "attention_dp_size",
                          "moe_tp_size", "moe_ep_size"))
SILICON_COLUMNS = [
    "id", "model", "system", "backend", "backend_version", "precision", "gemm_quant_mode", "moe_quant_mode",
    "mode", "isl", "osl", "concurrency", *_PARALLEL, *_DISAGG, "ttft_s", "tpot_s", "metric", "wip",
    "measured_at", "image", "origin",
]


def _source_fields(text: str) -> dict[str, str]:
    """'k=v; k=v; ...' provenance text; an unkeyed 'registry/image:tag' item is taken as the image."""
    fields = {}
    for item in str(text).split(";"):
        key, sep, value = item.strip().partition("=")
        if sep:
            fields[key.strip()] = value.strip()
        elif "/" in key and ":" in key:
            fields.setdefault("image", key.strip())
    return fields


def silicon_refs(path: Path, dataset: str, hardware: str | None = None) -> pd.DataFrame:
    """End-to-end serving measurements. measured_s is the TPOT (metric='tpot'); ttft_s is beside it."""
    path = Path(path)
    return silicon_frame(read_csv(path, SILICON_CSV), path, dataset, hardware)


def silicon_frame(raw: pd.DataFrame, path: Path, dataset: str, hardware: str | None = None,
                  source: str = SILICON_SOURCE) -> pd.DataFrame:
    """The measured frame of silicon-schema rows (silicon_refs.csv's columns) read from `path`."""
    numeric(raw, path, ["isl", "osl", "silicon_ttft_ms", "silicon_tpot_ms"], SILICON_CSV, positive=True)
    as_int(raw, ["isl", "osl"])
    for col in (*_PARALLEL, *_DISAGG):
        values = pd.to_numeric(raw[col], errors="coerce") if col in raw else pd.Series(pd.NA, index=raw.index)
        raw[col] = values.round().astype("Int64")
    for col in ("backend_version", "gemm_quant_mode", "moe_quant_mode", "silicon_data_source"):
        if col not in raw:
            raw[col] = ""
    fields = raw["silicon_data_source"].map(_source_fields)
    raw["wip"] = fields.map(lambda f: f.get("wip", "").lower() == "true")
    raw["measured_at"] = fields.map(lambda f: f.get("measured", ""))
    raw["image"] = fields.map(lambda f: f.get("image", ""))
    # where the row comes from: the provenance text's first item ('db-dump/2026-04-27', 'source_file=...')
    raw["origin"] = raw["silicon_data_source"].map(lambda t: str(t).split(";")[0].strip())
    # batch_size is the client concurrency (agg rows); disagg rows give it only in the provenance text.
    given = pd.to_numeric(fields.map(lambda f: f.get("silicon_concurrency")), errors="coerce").round().astype("Int64")
    raw["concurrency"] = given.fillna(raw["batch_size"])
    raw["model"] = raw["model_path"].astype(str)
    raw["ttft_s"] = raw["silicon_ttft_ms"] * 1e-3
    raw["tpot_s"] = raw["silicon_tpot_ms"] * 1e-3
    raw["measured_s"] = raw["tpot_s"]
    raw["metric"] = "tpot"
    raw["system"] = raw["system"].astype(str)
    hw = hardware or raw["system"].map(lambda s: SYSTEM_HARDWARE.get(s, s)).to_numpy()
    return finish(raw, path, dataset, hw, source, SILICON_COLUMNS)
