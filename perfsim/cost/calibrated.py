"""Calibrated operator cost: the efficiency model of each op family with a profile's parameters."""

from __future__ import annotations

from perfsim.cost.attention import (
    decode_fixed_s,
    decode_time,
    linear_attention_time,
    prefill_time,
    uses_xqa,
    xqa_fuses_rope,
)
from perfsim.cost.elementwise import elementwise_time
from perfsim.cost.energy import dynamic_energy
from perfsim.cost.gemm import DeviceRoofs, gemm_time
from perfsim.cost.moe import moe_time
from perfsim.cost.opcost import OpCost
from perfsim.cost.params import CostParams
from perfsim.cost.roofline import compute_time, memory_time, serving_level
from perfsim.dtypes import activation_dtype, moe_recipe, nbytes
from perfsim.hardware import Device
from perfsim.ops import Attention, Elementwise, Embedding, Gemm, IndexerScores, LinearRecurrence, MoEExperts, Op


def _activation_bytes(dtype: str) -> float:
    return nbytes(activation_dtype(dtype))


def achievable_ratio(device: Device, reference: Device, dtype: str) -> float:
    """How much of its peak `device`'s matmuls reach relative to `reference`'s: (MAMF / peak) over the reference's.
    The device's share in the dtype's format (else bf16's) against the reference's in the same format, or in bf16
    where the reference has none (a format the reference lacks runs on its bf16-fitted kernel parameters); 1 when
    either lacks a measurement."""
    for fmt in (device.compute_dtype(dtype), "bf16"):
        mine = device.compute.mamf.get(fmt)
        ref = fmt if fmt in reference.compute.mamf else "bf16"
        theirs = reference.compute.mamf.get(ref)
        if mine and theirs and ref in reference.compute.peak:
            return (mine / device.peak_flops(fmt)) / (theirs / reference.peak_flops(ref))
    return 1.0


def transferred_device(device: Device, reference: Device) -> Device:
    """`device` as a profile fitted on `reference` sees it: each tensor-core peak scaled by achievable_ratio
    (fp32 and fp64, which run elsewhere on some devices, as they are)."""
    if device.name == reference.name or not device.compute.mamf:
        return device
    peak = {d: v * (1.0 if d in ("fp32", "fp64") else achievable_ratio(device, reference, d))
            for d, v in device.compute.peak.items()}
    return device.model_copy(update={"compute": device.compute.model_copy(update={"peak": peak})})


def kernel_time(op: Op, device: Device, params: CostParams, roofs: DeviceRoofs | None = None) -> tuple[float, float]:
    """(time, launch overhead) of one op under the efficiency model of its family."""
    roofs = roofs or DeviceRoofs.of(device)
    peak_of = device.peak_flops

    if isinstance(op, Gemm):
        p = params.gemm_for(op.recipe or device.compute_dtype(op.dtype))
        t = gemm_time(op.m, op.n, op.k, op.batch, nbytes(op.dtype), nbytes(op.weight_dtype or op.dtype),
                      nbytes(op.out_dtype or activation_dtype(op.dtype)),
                      peak_of(op.dtype), roofs, p)[0]
        return float(t), p.launch_s
    if isinstance(op, IndexerScores):
        # one GEMM per sequence, (queries x heads) x visible keys x head_dim in FP8, the sum over heads kept in
        # registers (4 / heads bytes per product element out), then the top-k pass reads the fp32 scores back
        p = params.gemm_for(device.compute_dtype(op.dtype))
        keys = op.attended_pairs / op.q_len
        t = gemm_time(op.q_len * op.num_heads, keys, op.head_dim, op.batch, nbytes(op.dtype),
                      nbytes(op.kv_dtype or op.dtype), 4.0 / op.num_heads, peak_of(op.dtype), roofs, p)[0]
        stream = params.elementwise_for("softmax").memory_efficiency
        top_k = 4.0 * op.batch * op.attended_pairs / (roofs.main_bw * stream)
        return float(t + top_k), 2 * p.launch_s
    if isinstance(op, Attention):
        peak = peak_of(op.dtype)
        if op.phase == "prefill":
            p = params.attention
            t = prefill_time(op.batch, op.q_len, op.kv_len, op.num_heads, op.head_dim, op.dv, op.bytes,
                             op.window or 0, peak, device.compute.transcendental, roofs, p, causal=op.causal)[0]
        else:
            kv_fmt = op.kv_dtype or op.dtype
            p = params.decode_for(kv_fmt)
            group = op.num_heads / op.num_kv_heads
            if op.kv_shared_by_heads:  # MLA: every head reads one latent, in tensor-core tiles of g_max heads
                group = min(group, p.max_group)
            tensor_core = op.kv_shared_by_heads or None
            # MLA decode applies its RoPE outside the attention kernel
            fused = not op.kv_shared_by_heads and xqa_fuses_rope(device.compute.architecture, kv_fmt, op.head_dim,
                                                                 op.rotary_dim or op.head_dim)
            t = decode_time(op.batch, op.kv_tokens_read, op.num_kv_heads, group, op.head_dim, op.flops,
                            op.cold_bytes, op.bytes - op.cold_bytes, peak, device.vector_flops("fp32"), roofs, p,
                            tensor_core=tensor_core, fused_rope=fused)[0]
            return float(t), float(decode_fixed_s(p, uses_xqa(group, p, tensor_core), fused))
        return float(t), p.launch_s
    if isinstance(op, LinearRecurrence):
        pa, pd = params.attention, params.decode_for(op.state_dtype)
        t = linear_attention_time(op.flops, op.bytes, op.recurrent, op.chunk_kernels, peak_of(op.dtype),
                                  device.vector_flops("fp32"), roofs, pa, pd)
        launch = pd.launch_s if op.recurrent else op.chunk_kernels * pa.launch_s
        return float(t), float(launch)
    if isinstance(op, MoEExperts):
        fmt = op.weight_dtype or op.dtype
        p = params.moe_for(moe_recipe(op.dtype, op.weight_dtype))
        tile_s = params.gemm_for(device.compute_dtype(op.dtype)).tile_overhead_cycles / roofs.clock_hz
        t = moe_time(op.tokens, op.hidden, op.inter, op.top_k, op.experts_total, op.num_experts, float(op.gated),
                     nbytes(fmt), _activation_bytes(op.dtype), peak_of(op.dtype), roofs, p,
                     op.distribution, tile_s, op.scanned_tokens)[0]
        return float(t), p.launch_s
    if isinstance(op, (Elementwise, Embedding)):
        p = params.elementwise_for(op.kind)
        elements = op.elements if isinstance(op, Elementwise) else op.tokens * op.hidden
        t = elementwise_time(op.bytes, op.flops, device.vector_flops(op.dtype), roofs, p, op.cold_bytes,
                             elements)[0]
        return float(t), p.launch_s
    return max(compute_time(op, device), memory_time(op, device)), 0.0


def calibrated(op: Op, device: Device, params: CostParams, roofs: DeviceRoofs | None = None,
               kernel_device: Device | None = None) -> OpCost:
    """The op's cost on `device`, its kernels timed on `kernel_device` (a transferred_device) when given."""
    t, launch = kernel_time(op, kernel_device or device, params, roofs)
    compute_s, memory_s = compute_time(op, device), memory_time(op, device)
    t = max(t, compute_s, memory_s)   # a transferred share above the reference's never beats the roofline
    # name the bound by which ceiling the op is closest to, and overhead when launch dominates
    bound = "overhead" if launch >= max(compute_s, memory_s) else ("compute" if compute_s >= memory_s else "memory")
    return OpCost(op=op, time_s=t, compute_s=compute_s, memory_s=memory_s, overhead_s=launch, comm_s=0.0,
                  bound=bound, level=serving_level(op, device), energy_j=dynamic_energy(op, device))
