"""microsoft/vidur profiles: per-operator times of one decoder layer, and torch.distributed collectives.

Times in the files are milliseconds; the MEDIAN stat is used. The profiler casts the layer to
torch.float16 (vidur/profiling/mlp/mlp_wrapper.py: `self.model.to(dtype=torch.float16)`), so the
dtype is fp16. Collective `size` is bytes of an fp16 tensor (collectives_wrapper.py: `size * 2  # bytes`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from perfsim.measured._common import as_int, dedupe, fail, finish, hardware_from_path, numeric, read_csv

SOURCE = "microsoft/vidur@7d47513 (MIT)"
DTYPE = "fp16"

OPS = (
    "emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
    "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add",
)
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
SHAPE_COLUMNS = (
    "n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "use_gated_mlp",
    "num_tokens", "num_tensor_parallel_workers",
)
# Models without a post-attention norm (phi-2: parallel attention + MLP) lack that op.
OPTIONAL_OPS = ("post_attention_layernorm",)
COMPUTE_COLUMNS = (*SHAPE_COLUMNS, *(f"time_stats.{op}.median" for op in OPS if op not in OPTIONAL_OPS))

# vidur compute folder -> perfsim hardware. `a100` is A100 80GB (profiled on the DGX A100 nodes).
GPU_HARDWARE = {"h100": "h100-sxm", "a100": "a100-sxm-80gb", "a40": "a40"}

LAYER_OPS_COLUMNS = [
    "model", "op", "op_kind", "num_tokens", "tp", "n_head", "n_kv_head", "head_dim", "n_embd",
    "n_expanded_embd", "vocab_size", "use_gated_mlp", "m", "n", "k", "elements", "dtype", "std_s",
]


def model_from_path(path: Path) -> str:
    """'<org>/<model>' from .../compute/<gpu>/<org>/<model>/mlp.csv (the two folders above the file)."""
    parts = path.resolve().parts
    return "/".join(parts[-3:-1]) if len(parts) >= 3 else path.stem


def compute(path: Path, dataset: str, hardware: str | None = None, model: str | None = None) -> pd.DataFrame:
    """Tidy per-op rows: one per (model, num_tokens, tp, op)."""
    path = Path(path)
    raw = read_csv(path, COMPUTE_COLUMNS)
    optional = [f"time_stats.{op}.median" for op in OPTIONAL_OPS if f"time_stats.{op}.median" in raw]
    numeric(raw, path, [c for c in COMPUTE_COLUMNS if c != "use_gated_mlp"] + optional, COMPUTE_COLUMNS)
    as_int(raw, [c for c in SHAPE_COLUMNS if c != "use_gated_mlp"])
    gated = raw["use_gated_mlp"].astype(str).str.lower().map({"true": True, "false": False, "1": True, "0": False})
    if gated.isna().any():
        raise fail(path, "column use_gated_mlp is not boolean", COMPUTE_COLUMNS)
    raw["use_gated_mlp"] = gated.astype(bool)
    raw = raw.rename(columns={"num_tensor_parallel_workers": "tp"})
    # A few (num_tokens, tp) points appear twice (e.g. num_tokens 4096 and 2048 per TP); keep the first.
    raw = dedupe(raw, ["num_tokens", "tp"])

    frames = []
    keep = ["n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "use_gated_mlp", "num_tokens", "tp"]
    for op in OPS:
        if f"time_stats.{op}.median" not in raw:
            continue  # an optional op this model does not have
        part = raw[keep].copy()
        part["op"] = op
        part["measured_s"] = raw[f"time_stats.{op}.median"].to_numpy() * 1e-3
        std_col = f"time_stats.{op}.std"
        part["std_s"] = raw[std_col].to_numpy(dtype=float) * 1e-3 if std_col in raw else np.nan
        frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    _add_shapes(out, path)
    out["model"] = model or model_from_path(path)
    out["dtype"] = DTYPE
    hw = hardware or hardware_from_path(path, GPU_HARDWARE)
    out = finish(out, path, dataset, hw, SOURCE, LAYER_OPS_COLUMNS)
    return out.sort_values(["model", "tp", "num_tokens", "op"], kind="stable", ignore_index=True)


def _add_shapes(out: pd.DataFrame, path: Path) -> None:
    """GEMM shapes (M, N, K of the TP shard) and element counts of the other ops.

    Per vidur/profiling/mlp/mlp_impl.py: QKV is ColumnParallel (n_embd -> (n_head+2 n_kv) head_dim),
    O is RowParallel (n_head head_dim -> n_embd), up is ColumnParallel to 2 n_expanded (gated) or
    n_expanded, down is RowParallel n_expanded -> n_embd. RoPE rotates q and k.
    """
    tp = out["tp"].to_numpy()
    tokens = out["num_tokens"].to_numpy()
    n_head, n_kv = out["n_head"].to_numpy(), out["n_kv_head"].to_numpy()
    embd, expanded = out["n_embd"].to_numpy(), out["n_expanded_embd"].to_numpy()
    gated = out["use_gated_mlp"].to_numpy(dtype=bool)
    if (embd % n_head).any() or (n_head % tp).any() or (n_kv % tp).any() or (expanded % tp).any():
        raise fail(path, "head counts or widths are not divisible by the TP degree")
    head_dim = embd // n_head
    out["head_dim"] = head_dim

    op = out["op"].to_numpy()
    m = np.where(np.isin(op, GEMM_OPS), tokens, 0)
    n = np.select(
        [op == "attn_pre_proj", op == "attn_post_proj", op == "mlp_up_proj", op == "mlp_down_proj"],
        [(n_head + 2 * n_kv) * head_dim // tp, embd, np.where(gated, 2, 1) * expanded // tp, embd], 0)
    k = np.select(
        [op == "attn_pre_proj", op == "attn_post_proj", op == "mlp_up_proj", op == "mlp_down_proj"],
        [embd, n_head * head_dim // tp, embd, expanded // tp], 0)
    # mlp_act counts OUTPUT elements; with a gated MLP (SiluAndMul) it reads twice as many.
    elements = np.select(
        [op == "attn_rope", op == "mlp_act"],
        [tokens * (n_head + n_kv) * head_dim // tp, tokens * expanded // tp],
        tokens * embd)
    is_gemm = np.isin(op, GEMM_OPS)
    out["op_kind"] = np.where(is_gemm, "gemm", "elementwise")
    out["m"] = pd.array(np.where(is_gemm, m, 0), dtype="Int64")
    out["n"] = pd.array(np.where(is_gemm, n, 0), dtype="Int64")
    out["k"] = pd.array(np.where(is_gemm, k, 0), dtype="Int64")
    out.loc[~is_gemm, ["m", "n", "k"]] = pd.NA
    out["elements"] = pd.array(elements, dtype="Int64")
    out.loc[is_gemm, "elements"] = pd.NA


# ---------------------------------------------------------------------------------------------
# network/<setup>/{all_reduce,send_recv}.csv

NETWORK_COLUMNS = ("num_workers", "size", "collective", "devices_per_node", "max_devices_per_node")

# setup -> (perfsim hardware, system name, description). Pairwise-NVLink setups have no perfsim
# system: the setup name is used. a100_pairwise_nvlink is 4x A100 PCIe 80GB; h100_pairwise_nvlink
# is 4x H100 NVL (hardware names 'a100-pcie-80gb' and 'h100-nvl' are guesses at perfsim names).
SETUPS = {
    "a100_dgx": ("a100-sxm-80gb", "dgx-a100-80gb", "DGX A100 8x80GB, NVSwitch; 2 nodes over InfiniBand"),
    "h100_dgx": ("h100-sxm", "dgx-h100", "DGX H100 8 GPUs, NVSwitch"),
    "a100_pairwise_nvlink": ("a100-pcie-80gb", "a100_pairwise_nvlink", "4x A100 PCIe with pairwise NVLink"),
    "h100_pairwise_nvlink": ("h100-nvl", "h100_pairwise_nvlink", "4x H100 NVL with pairwise NVLink"),
    "a40_pairwise_nvlink": ("a40", "a40_pairwise_nvlink", "A40 with pairwise NVLink"),
}
NETWORK_FILES = (
    ("a100_dgx", "all_reduce"), ("a100_dgx", "send_recv"),
    ("h100_dgx", "all_reduce"), ("h100_dgx", "send_recv"),
    ("a100_pairwise_nvlink", "all_reduce"), ("a100_pairwise_nvlink", "send_recv"),
    ("h100_pairwise_nvlink", "all_reduce"),
    ("a40_pairwise_nvlink", "send_recv"),
)

COLLECTIVE_COLUMNS = [
    "op", "num_gpus", "size_bytes", "message_elements", "dtype", "devices_per_node", "max_devices_per_node",
    "num_nodes", "crosses_nodes", "system", "implementation",
]


def network(path: Path, dataset: str, hardware: str | None = None, system: str | None = None) -> pd.DataFrame:
    """Tidy collective rows from a vidur network CSV (torch.distributed over NCCL)."""
    path = Path(path)
    raw = read_csv(path, NETWORK_COLUMNS)
    medians = [c for c in raw.columns if c.startswith("time_stats.") and c.endswith(".median")]
    if len(medians) != 1:
        wanted = "time_stats.<collective>.median"
        raise fail(path, f"missing column {wanted}", [*NETWORK_COLUMNS, wanted])
    numeric(raw, path, ["num_workers", "size", "devices_per_node", "max_devices_per_node", medians[0]])
    as_int(raw, ["num_workers", "size", "devices_per_node", "max_devices_per_node"])
    raw = dedupe(raw, ["collective", "num_workers", "devices_per_node", "size"])
    out = pd.DataFrame({
        "op": raw["collective"].astype(str).to_numpy(),
        "num_gpus": raw["num_workers"].to_numpy(),
        "size_bytes": raw["size"].to_numpy(),
        "dtype": DTYPE,
        "devices_per_node": raw["devices_per_node"].to_numpy(),
        "max_devices_per_node": raw["max_devices_per_node"].to_numpy(),
        "measured_s": raw[medians[0]].to_numpy() * 1e-3,
    })
    out["message_elements"] = out["size_bytes"] // 2
    out["num_nodes"] = -(-out["num_gpus"] // out["devices_per_node"])
    out["crosses_nodes"] = out["devices_per_node"] < out["num_gpus"]
    setup = path.resolve().parent.name
    default_hw, default_system, _ = SETUPS.get(setup, ("unknown", setup, ""))
    out["system"] = system or default_system
    out["implementation"] = "pytorch"  # torch.distributed collectives (NCCL backend), CUDA-timed
    return finish(out, path, dataset, hardware or default_hw, SOURCE, COLLECTIVE_COLUMNS)
