"""Numeric formats perfsim knows and their storage size."""

from __future__ import annotations

from perfsim.errors import UnknownNameError

# Bytes per element, block scales included. fp4 is NVFP4: 4-bit E2M1 values with one FP8 E4M3 scale per
# 16 values, 4.5 bits (NVIDIA, "Introducing NVFP4 for Efficient and Accurate Low-Precision Inference", 2025).
BYTES: dict[str, float] = {
    "fp64": 8.0, "fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0,
    "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 4.5 / 8,
    # MXFP4 (OCP Microscaling Formats v1.0): 4-bit E2M1 values with one E8M0 scale per 32 values, 4.25 bits
    "mxfp4": 4.25 / 8,
    # INT4 with one BF16 scale per group of 32 weights (compressed-tensors pack-quantized, group_size 32), 4.5 bits
    "int4_g32": 4.5 / 8,
}
# Formats whose GEMM outputs and activations are kept in bf16.
LOW_PRECISION = ("fp8", "int8", "int4", "int4_g32", "fp4", "mxfp4")
SIXTEEN_BIT = ("bf16", "fp16")
# GEMMs a quantized model keeps in 16 bits: the LM head and the MoE routers and gates (NVIDIA ModelOpt's
# default quantizer exclusions: *lm_head*, *router*, *mlp.gate.*, *mlp.shared_expert_gate.*; DeepSeek-V3
# report 3.3.1 keeps the output head and MoE gating in BF16 in FP8 training). The token embedding, a lookup,
# stays 16-bit too (see ModelSpec.unquantized_params).
UNQUANTIZED_GEMMS = frozenset({"lm_head", "router", "shared_expert_gate"})
DTYPES = tuple(BYTES)

# When a device has no native peak for a dtype, compute runs at the first format it does support.
PROMOTION: dict[str, tuple[str, ...]] = {
    "fp4": ("fp4", "fp8", "fp16", "bf16", "fp32"),
    "mxfp4": ("fp4", "fp8", "fp16", "bf16", "fp32"),
    "int4": ("int4", "int8", "fp16", "bf16", "fp32"),
    "int4_g32": ("int4", "int8", "fp16", "bf16", "fp32"),
    "fp8": ("fp8", "fp16", "bf16", "fp32"),   # no native fp8: weights are upcast, math runs at 16-bit rate
    "int8": ("int8", "fp16", "bf16", "fp32"),
    "bf16": ("bf16", "fp16", "fp32"),
    "fp16": ("fp16", "bf16", "fp32"),
    "tf32": ("tf32", "fp32"),
    "fp32": ("fp32",),
    "fp64": ("fp64", "fp32"),
}


# Quantization recipes as measured kernel tables name them (ai-dynamo/aiconfigurator GEMMQuantMode and
# MoEQuantMode): recipe -> (activation dtype the math runs in, weight storage dtype). A kernel parameter set is
# fitted per recipe; a plain dtype is its own recipe.
RECIPES: dict[str, tuple[str, str]] = {
    "fp8_block": ("fp8", "fp8"), "fp8_static": ("fp8", "fp8"), "fp8_ootb": ("fp8", "fp8"),
    "int8_wo": ("bf16", "int8"), "int4_wo": ("bf16", "int4"), "sq": ("int8", "int8"), "w8a8_dynamic": ("int8", "int8"),
    "nvfp4": ("fp4", "fp4"), "nvfp4_wo": ("bf16", "fp4"), "w4a16_nvfp4": ("bf16", "fp4"),
    "w4a16_mxfp4": ("bf16", "mxfp4"), "w4a16_mxfp4_cutlass": ("bf16", "mxfp4"),
    "w4a8_mxfp4_mxfp8": ("fp8", "mxfp4"), "w4a8_mxfp4_mxfp8_trtllm": ("fp8", "mxfp4"),
    "w4afp8": ("fp8", "int4"),
}
# recipes whose activations and weights are both FP8: the linear quantizes its 16-bit input first
FP8_RECIPES = ("fp8", *(name for name, pair in RECIPES.items() if pair == ("fp8", "fp8")))


def recipe_dtypes(recipe: str) -> tuple[str, str]:
    """(activation dtype, weight dtype) of a recipe or plain dtype."""
    return RECIPES.get(recipe, (recipe, recipe))


def moe_recipe(dtype: str, weight_dtype: str | None) -> str:
    """The fused-MoE kernel recipe of activations in `dtype` and weights in `weight_dtype` (none: `dtype`): the
    first weight-only or mixed recipe of that pair, else the weight format itself."""
    act = "bf16" if dtype in SIXTEEN_BIT else dtype
    mixed = (name for name, pair in RECIPES.items() if pair == (act, weight_dtype) and act != weight_dtype)
    return next(mixed, weight_dtype or dtype)


def check(dtype: str, field: str = "dtype") -> str:
    """Return `dtype` if known, else raise a one-line error listing the accepted ones."""
    if dtype not in BYTES:
        raise UnknownNameError(f"{field}: unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    return dtype


def nbytes(dtype: str) -> float:
    return BYTES[check(dtype)]


def activation_dtype(dtype: str) -> str:
    """The dtype activations and GEMM outputs are kept in: bf16 for the low-precision formats."""
    return "bf16" if dtype in LOW_PRECISION else dtype
