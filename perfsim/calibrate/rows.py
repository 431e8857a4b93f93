"""Predict every row of a tidy measured frame (perfsim.measured) with the calibrated cost model.

One function per op family, vectorised over rows; `predict_rows` dispatches on the frame's family.
The same code serves fitting (calibrate) and scoring (validate), so both see identical physics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perfsim.calibrate.comm_rows import collective_rows_for
from perfsim.cost.attention import decode_time, prefill_time, xqa_fuses_rope
from perfsim.cost.elementwise import elementwise_time
from perfsim.cost.gemm import DeviceRoofs, gemm_time
from perfsim.cost.moe import moe_time
from perfsim.cost.params import CostParams
from perfsim.dtypes import BYTES, FP8_RECIPES, activation_dtype, recipe_dtypes
from perfsim.errors import InvalidInputError
from perfsim.hardware import Device

# bytes moved per output element, in units of the element size, for each layer op (read + write)
ELEMENTWISE_TRAFFIC = {"emb": 2.0, "input_layernorm": 2.0, "post_attention_layernorm": 2.0, "attn_rope": 2.0,
                       "add": 3.0, "softmax": 2.0, "layernorm": 2.0, "gelu": 2.0}
ELEMENTWISE_FLOPS = {"emb": 0.0, "input_layernorm": 5.0, "post_attention_layernorm": 5.0, "attn_rope": 3.0,
                     "add": 1.0, "softmax": 5.0, "layernorm": 7.0, "gelu": 8.0, "mlp_act": 8.0}
# measured op name -> perfsim elementwise kind (the kernel family whose parameters apply)
# (LLMCompass's LayerNorm and GELU are other kernels than vidur's unfused RMSNorm and SiLU-and-mul)
ELEMENTWISE_KIND = {"emb": "embedding", "input_layernorm": "norm", "post_attention_layernorm": "norm",
                    "layernorm": "layernorm", "attn_rope": "rotary", "mlp_act": "activation", "gelu": "gelu",
                    "add": "add", "softmax": "softmax"}


def _bytes(dtype: str) -> float:
    return BYTES.get(dtype, 2.0)


def gemm_rows(df: pd.DataFrame, device: Device, params: CostParams) -> np.ndarray:
    roofs = DeviceRoofs.of(device)
    out = np.empty(len(df))
    for dtype, idx in df.groupby("dtype").indices.items():
        rows = df.iloc[idx]
        act, weights = recipe_dtypes(dtype)
        t = gemm_time(rows.m.to_numpy(float), rows.n.to_numpy(float), rows.k.to_numpy(float), 1.0, _bytes(act),
                      _bytes(weights), _bytes(activation_dtype(act)), device.peak_flops(act), roofs,
                      params.gemm_for(dtype))
        if dtype in FP8_RECIPES:  # the fp8 linear quantizes its bf16 input first: read 2 B, write 1 B per element
            act = rows.m.to_numpy(float) * rows.k.to_numpy(float)
            t = t + elementwise_time(3.0 * act, act, device.vector_flops("fp32"), roofs,
                                     params.elementwise_for("quantize"), 0.0, act)
        out[idx] = t
    return out


def elementwise_rows(df: pd.DataFrame, device: Device, params: CostParams) -> np.ndarray:
    roofs = DeviceRoofs.of(device)
    elems = df.elements.to_numpy(float)
    elem_bytes = df.dtype.map(lambda d: BYTES.get(d, 2.0)).to_numpy(float)
    traffic = df.op.map(ELEMENTWISE_TRAFFIC).to_numpy(float)
    if "use_gated_mlp" in df:
        gated = df.use_gated_mlp.fillna(False).astype(bool).to_numpy()
        traffic = np.where(df.op.to_numpy() == "mlp_act", np.where(gated, 3.0, 2.0), traffic)
    flops = df.op.map(ELEMENTWISE_FLOPS).fillna(1.0).to_numpy(float) * elems
    nbytes = traffic * elems * elem_bytes
    cold = np.where(df.op.to_numpy() == "emb", nbytes / 2.0, 0.0)
    out = np.empty(len(df))
    kinds = df.op.map(ELEMENTWISE_KIND).fillna("default")
    for kind, idx in kinds.groupby(kinds).indices.items():
        out[idx] = elementwise_time(nbytes[idx], flops[idx], device.vector_flops(df.dtype.iloc[0]), roofs,
                                    params.elementwise_for(kind), cold[idx], elems[idx])
    return out


def layer_op_rows(df: pd.DataFrame, device: Device, params: CostParams) -> np.ndarray:
    out = np.empty(len(df))
    is_gemm = (df.op_kind == "gemm").to_numpy()
    if is_gemm.any():
        out[is_gemm] = gemm_rows(df[is_gemm], device, params)
    if (~is_gemm).any():
        out[~is_gemm] = elementwise_rows(df[~is_gemm], device, params)
    return out


def context_attention_rows(df: pd.DataFrame, device: Device, params: CostParams) -> np.ndarray:
    roofs = DeviceRoofs.of(device)
    b, s = df.batch.to_numpy(float), df.isl.to_numpy(float)
    nh, nkv, d = (df[c].to_numpy(float) for c in ("num_heads", "num_kv_heads", "head_dim"))
    elem = df.dtype.map(lambda x: BYTES.get(x, 2.0)).to_numpy(float)
    io = b * s * (2 * nh + 2 * nkv) * d * elem
    peak = df.dtype.map(lambda x: device.peak_flops(x if x in BYTES else "bf16")).to_numpy(float)
    return prefill_time(b, s, s, nh, d, d, io, df.window.fillna(0).to_numpy(float), peak,
                        device.compute.transcendental, roofs, params.attention)


def generation_attention_rows(df: pd.DataFrame, device: Device, params: CostParams) -> np.ndarray:
    roofs = DeviceRoofs.of(device)
    b = df.batch.to_numpy(float)
    kv = df.kv_len.to_numpy(float) + 1.0  # `step` cached tokens plus the new one
    w = df.window.fillna(0).to_numpy(float)
    kv_read = np.where(w > 0, np.minimum(kv, w), kv)
    nh, nkv, d = (df[c].to_numpy(float) for c in ("num_heads", "num_kv_heads", "head_dim"))
    kv_elem = df.kv_dtype.fillna("bf16").map(lambda x: BYTES.get(x, 2.0)).to_numpy(float)
    kv_bytes = b * kv_read * nkv * 2 * d * kv_elem
    other = b * nh * d * 2 * 2.0
    flops = 2.0 * b * nh * kv_read * 2 * d
    rotary = df.rotary_dim.fillna(0).to_numpy(float) if "rotary_dim" in df else d   # none given: the whole head
    out = np.empty(len(df))
    for fmt, idx in df.kv_dtype.fillna("bf16").groupby(df.kv_dtype.fillna("bf16").to_numpy()).indices.items():
        fused = xqa_fuses_rope(device.compute.architecture, fmt, d[idx], rotary[idx])
        out[idx] = decode_time(b[idx], kv_read[idx], nkv[idx], nh[idx] / nkv[idx], d[idx], flops[idx],
                               kv_bytes[idx], other[idx], device.peak_flops("bf16"), device.vector_flops("fp32"),
                               roofs, params.decode_for(fmt), fused_rope=fused)
    return out


def moe_rows(df: pd.DataFrame, device: Device, params: CostParams) -> np.ndarray:
    roofs = DeviceRoofs.of(device)
    out = np.empty(len(df))
    gated = ~df.kernel_source.fillna("").str.contains("nongated") if "kernel_source" in df else True
    gated = np.broadcast_to(np.asarray(gated, float), len(df))
    tokens, hidden = df.num_tokens.to_numpy(float), df.hidden.to_numpy(float)
    inter = (df.inter / df.tp).to_numpy(float)
    keys = ["dtype", "topk", "num_experts", "ep", "distribution"]
    for (dtype, topk, experts, ep, dist), idx in df.groupby(keys).indices.items():
        compute, weights = recipe_dtypes(dtype)
        w_bytes = _bytes(weights)
        p = params.moe_for(dtype)
        tile_s = params.gemm_for(compute).tile_overhead_cycles / roofs.clock_hz
        out[idx] = moe_time(tokens[idx], hidden[idx], inter[idx], topk, experts, experts // ep, gated[idx], w_bytes,
                            2.0, device.peak_flops(compute), roofs, p, dist, tile_s)
    return out


def _mla_ops(df: pd.DataFrame, decode: bool) -> list:
    """One MLA attention op per row, as the model graphs build it (perfsim.graph.mla_attention)."""
    from perfsim.graph import mla_attention
    from perfsim.model import MLA
    dims = ["kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"]
    kv = df.kv_len if decode else df.isl
    return [mla_attention(MLA(**dict(zip(dims, map(int, d), strict=True))), decode, batch=int(b),
                          q_len=1 if decode else int(n), kv_len=int(n), num_heads=int(h), causal=True,
                          dtype=activation_dtype(dt) if decode or kvd != "fp8" else "fp8", kv_dtype=kvd)
            for b, n, h, dt, kvd, *d in zip(df.batch, kv, df.num_heads, df.dtype, df.kv_dtype,
                                            *(df[c] for c in dims), strict=True)]


def _fields(ops: list, *names: str) -> list[np.ndarray]:
    return [np.array([float(getattr(op, name)) for op in ops]) for name in names]


def context_mla_rows(df: pd.DataFrame, device: Device, params: CostParams) -> np.ndarray:
    ops = _mla_ops(df, decode=False)
    peak = np.array([device.peak_flops(op.dtype) for op in ops])
    return prefill_time(*_fields(ops, "batch", "q_len", "kv_len", "num_heads", "head_dim", "dv", "bytes"), 0.0,
                        peak, device.compute.transcendental, DeviceRoofs.of(device), params.attention)


def generation_mla_rows(df: pd.DataFrame, device: Device, params: CostParams) -> np.ndarray:
    roofs, out = DeviceRoofs.of(device), np.empty(len(df))
    for fmt, idx in df.groupby(df.kv_dtype.to_numpy()).indices.items():
        ops = _mla_ops(df.iloc[idx], decode=True)
        batch, kv, heads, dim, flops, cold, total = _fields(ops, "batch", "kv_tokens_read", "num_heads", "head_dim",
                                                            "flops", "cold_bytes", "bytes")
        p = params.decode_for(fmt)
        peak = np.array([device.peak_flops(op.dtype) for op in ops])
        # every head reads the one latent, in tensor-core tiles of g_max heads (as perfsim.cost.calibrated does)
        out[idx] = decode_time(batch, kv, 1.0, np.minimum(heads, p.max_group), dim, flops, cold, total - cold,
                               peak, device.vector_flops("fp32"), roofs, p, tensor_core=True)
    return out


PREDICTORS = {"gemm": gemm_rows, "elementwise": elementwise_rows, "layer_ops": layer_op_rows,
              "context_attention": context_attention_rows, "generation_attention": generation_attention_rows,
              "context_mla": context_mla_rows, "generation_mla": generation_mla_rows,
              "moe": moe_rows, "collective": collective_rows_for}


def predict_rows(df: pd.DataFrame, family: str, device: Device, params: CostParams) -> np.ndarray:
    if family not in PREDICTORS:
        raise InvalidInputError(f"family: {family!r} has no operator model; accepted: {', '.join(PREDICTORS)}")
    return PREDICTORS[family](df, device, params)
