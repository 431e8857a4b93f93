"""Efficiency parameters of the calibrated cost model. Each has a physical meaning and a range.

Efficiencies are fractions of a datasheet ceiling; overheads are seconds or clock cycles, so that
parameters fitted on one GPU carry over to another through its specs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from perfsim.cost.comm_params import CommParams

Fraction = Field(gt=0, le=1)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GemmParams(_Params):
    """One GEMM kernel family (one dtype): cuBLAS/CUTLASS kernels differ per dtype, so do their parameters."""
    compute_efficiency: float = Field(0.80, gt=0, le=1)     # sustained fraction of dense peak in a full wave
    memory_efficiency: float = Field(0.85, gt=0, le=1)      # sustained fraction of HBM bandwidth
    l2_efficiency: float = Field(0.70, gt=0, le=1)          # sustained fraction of L2 bandwidth
    tile_overhead_cycles: float = Field(1500.0, ge=0)       # per-tile prologue/epilogue/pipeline fill
    k_step_cycles: float = Field(100.0, ge=0)               # latency of one mainloop step (64 of k) of a lone CTA
    split_k_s: float = Field(2e-6, ge=0)                    # split-K's reduction pass over the partial tiles
    bandwidth_saturation: float = Field(0.5, gt=0, le=1)    # fraction of compute units that saturates HBM
    overlap: float = Field(4.0, ge=1, le=64)                # p of the smooth max (c^p + m^p)^(1/p)
    launch_s: float = Field(3e-6, ge=0)                     # kernel launch and dispatch


class AttentionParams(_Params):
    """Prefill (FlashAttention-style) attention kernels."""
    prefill_efficiency: float = Field(0.60, gt=0, le=1)     # FlashAttention matmuls' fraction of matrix peak
    exp_efficiency: float = Field(0.80, gt=0, le=1)         # softmax exponentials' fraction of the SFU rate
    overlap: float = Field(2.0, ge=1, le=64)                # p of the smooth max of matmul and exp time
    iteration_overhead_cycles: float = Field(200.0, ge=0)   # per KV tile: rescale, barriers, pipeline
    block_overhead_cycles: float = Field(3000.0, ge=0)      # per query block: setup, pipeline fill and drain
    row_overhead_cycles: float = Field(20.0, ge=0)          # per valid query row of a block: Q load, O store
    memory_efficiency: float = Field(0.75, gt=0, le=1)      # Q, K, V, O streaming fraction of HBM bandwidth
    launch_s: float = Field(5e-6, ge=0)


class DecodeParams(_Params):
    """Decode-attention kernels of one KV-cache format (bf16 and fp8 caches run different kernels): a
    tensor-core grouped-query kernel (XQA) for 1 < g <= max_group query heads per KV head, and a multi-head
    kernel on the CUDA cores (MMHA) with one CTA per query head for g = 1 and for groups too large for XQA."""
    memory_efficiency: float = Field(0.75, gt=0, le=1)      # KV-cache streaming fraction of the serving level
    tile_cycles: float = Field(200.0, ge=0)                 # per KV tile a CTA walks: load latency, softmax update
    cta_overhead_cycles: float = Field(2000.0, ge=0)        # XQA, per (sequence, KV head, split) CTA: setup, reduce
    cta_dim_cycles: float = Field(5.0, ge=0)                # XQA, per head-dim element of a CTA's K/V tile staging
    cta_row_cycles: float = Field(0.5, ge=0)                # XQA, per query row x head-dim element: Q load, O store
    compute_efficiency: float = Field(0.60, gt=0, le=1)     # XQA score and value matmuls' fraction of matrix peak
    max_group: float = Field(32.0, ge=1)                    # most query heads per KV head XQA takes (TensorRT-LLM)
    mha_cta_overhead_cycles: float = Field(2500.0, ge=0)    # MMHA, per (sequence, query head, split) CTA
    mha_efficiency: float = Field(0.10, gt=0, le=1)         # MMHA's fraction of the vector (CUDA-core) peak
    launch_s: float = Field(5e-6, ge=0)                     # XQA kernel: launch and its first wave's fixed work
    preprocess_s: float = Field(2e-6, ge=0)                 # separate QKV-preprocessing kernel (RoPE, KV append)
    #                                                         before an XQA kernel that does not apply RoPE itself
    mha_launch_s: float = Field(5e-6, ge=0)                 # MMHA kernel (RoPE and KV append inside): launch, fixed


class MoEParams(_Params):
    """One fused-MoE kernel family (one weight format)."""
    compute_efficiency: float = Field(0.60, gt=0, le=1)     # grouped GEMM fraction of dense peak
    memory_efficiency: float = Field(0.75, gt=0, le=1)      # expert-weight streaming fraction of HBM bandwidth
    overlap: float = Field(4.0, ge=1, le=64)                # p of the smooth max of compute and memory time
    route_bytes: float = Field(8.0, ge=0, le=64)            # bytes moved per (token-expert assignment x hidden
    #                                                         element) outside the GEMMs: permute, activation, finalize
    token_bytes: float = Field(2.0, ge=0, le=64)            # bytes per (token x hidden element) of the passes over
    #                                                         every token whatever the expert parallelism: routing,
    #                                                         the finalize writing all T output rows (2 B: bf16 out)
    launch_s: float = Field(30e-6, ge=0)                    # routing, permute, two GEMMs, finalize
    expert_s: float = Field(0.1e-6, ge=0)                   # per local expert, with or without tokens: its
    #                                                         grouped-GEMM problem setup (offsets, descriptors, scales)


class ElementwiseParams(_Params):
    memory_efficiency: float = Field(0.80, gt=0, le=1)      # streaming kernels' fraction of HBM bandwidth
    cache_hit: float = Field(0.5, ge=0, le=1)               # share of LLC-sized activation traffic the LLC serves
    cycles_per_element: float = Field(1.0, ge=0)            # instruction issue per output element per unit
    overlap: float = Field(4.0, ge=1, le=64)                # p of the smooth max of memory and issue time
    launch_s: float = Field(4e-6, ge=0)


# elementwise kind -> the fitted kinds whose kernels are most alike, nearest first
NEAREST_ELEMENTWISE = {"gelu": ("activation",), "layernorm": ("norm",), "softmax": ("norm",)}


class CostParams(_Params):
    gemm: dict[str, GemmParams] = {"default": GemmParams()}   # by GEMM format (bf16, fp8, fp8_block, ...)
    attention: AttentionParams = AttentionParams()
    decode: dict[str, DecodeParams] = {"default": DecodeParams()}  # by KV-cache format (bf16, fp8, ...)
    moe: dict[str, MoEParams] = {"default": MoEParams()}    # by weight format (bf16, fp8, ...)
    comm: CommParams = CommParams()  # collectives, by implementation (nccl, pytorch, trtllm)
    elementwise: dict[str, ElementwiseParams] = {"default": ElementwiseParams()}  # by op kind (norm, add, ...)

    def gemm_for(self, fmt: str) -> GemmParams:
        """Parameters of the GEMM kernels of a format; bf16's (then the default) when not fitted."""
        return _family(self.gemm, (fmt, "bf16"), GemmParams)

    def elementwise_for(self, kind: str) -> ElementwiseParams:
        """Parameters of the kernels of an elementwise op kind; its nearest fitted kind's when not fitted
        (a GELU is an activation; layernorm and softmax are row reductions like a norm), then the default."""
        return _family(self.elementwise, (kind, *NEAREST_ELEMENTWISE.get(kind, ())), ElementwiseParams)

    def decode_for(self, kv_fmt: str) -> DecodeParams:
        """Parameters of the decode kernels of a KV-cache format; bf16's (then the default) when not fitted."""
        return _family(self.decode, (kv_fmt, "bf16"), DecodeParams)

    def moe_for(self, fmt: str) -> MoEParams:
        """Parameters of the fused-MoE kernels of a format; bf16's (then the default) when not fitted."""
        return _family(self.moe, (fmt, "bf16"), MoEParams)


def _family(table: dict, keys: tuple[str, ...], cls):
    """The first of `keys` (then "default") that `table` holds, else the class's priors."""
    for key in (*keys, "default"):
        if key in table:
            return table[key]
    return cls()
