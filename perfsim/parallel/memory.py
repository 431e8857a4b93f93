"""Memory per GPU of a parallel plan: weights, gradients, optimizer states, activations, KV cache, workspace.

All functions take plan degrees as ints or numpy arrays (one entry per plan), so that the plan search
evaluates thousands of plans at once; scalars in, scalars out.

Training (mixed precision, Rajbhandari et al. 2020, "ZeRO"): bf16 weights (2 B/param, +1 B fp8 copy for FP8
training), bf16 gradients (2 B/param), Adam states (fp32 master, momentum, variance: 12 B/param; 8 B/param
with bf16 moments). ZeRO-1 shards the optimizer states over the data-parallel group (dp x cp), ZeRO-2 also
the gradients, ZeRO-3 also the weights (plus a buffer for the two layers being gathered). Expert weights are
split over ep x tp and their states sharded over the expert-data-parallel group (dp x cp / ep).

Activations per layer per micro-batch (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", Sec. 4), written out per stored tensor so that it holds for GQA, gated MLPs and MoE and
reduces exactly to the paper's s*b*h*(34 + 5*a*s/h) / t (sequence parallel) and s*b*h*(10 + 24/t + 5*a*s/(h*t))
(tensor parallel only) for a GPT layer (see perfsim.cost.memory.training_activation_bytes):
  norms           2 inputs x 2sbh / r                          (r = t with sequence parallelism, else 1)
  attention       QKV input 2sbh/r; Q, K 2sb(a_t + k_t)d; V 2sb k_t d; out-proj input 2sb a_t d; dropout mask sbh/r
                  unfused attention (not FlashAttention) also: softmax output, dropout mask and output 5 a_t s^2 b
  MLP             input 2sbh/r; up-projection output 2sb w_up/t; activation output 2sb w/t; dropout mask sbh/r
  MoE MLP         input 2sbh/r; routed copies 2sbkh/r; per routed copy the MLP terms of the expert width; shared experts
Selective recomputation drops the quadratic attention term; full recomputation keeps the layer input 2sbh/r
and rebuilds one layer at a time in the backward pass (one layer of activations as workspace).
Pipeline schedules keep several micro-batches in flight on the first stage: min(m, p) for 1F1B, and
2(p-1) + (v-1)p + 1 model chunks of L/(p v) layers for the interleaved schedule (Narayanan et al. 2021;
= L (1 + (p-1)/(p v)) layers, Korthikanti et al. Sec. 4.2.3).
"""

from __future__ import annotations

import numpy as np

from perfsim.cost import memory as cmem
from perfsim.dtypes import activation_dtype, nbytes
from perfsim.model import ModelSpec

RECOMPUTE_CODE = {"none": 0, "selective": 1, "full": 2}
WEIGHT_BYTES = 2.0          # bf16 weights
GRAD_BYTES = 2.0            # bf16 gradients
ADAM_BYTES = {"fp32": 12.0, "bf16": 8.0}   # fp32 master + momentum + variance; bf16 moments keep an fp32 master
LOGIT_BYTES = 6.0           # bf16 logits plus the fp32 copy the vocab-parallel cross-entropy keeps


def _a(x):
    return np.asarray(x, dtype=float)


def stage_layers(num_layers: int, pp, interleave=1):
    """Layers of the heaviest pipeline rank: L / pp, or interleave x ceil(L / (pp x interleave)) when the
    (virtual) stages are uneven (Megatron's --decoder-first/last-pipeline-num-layers; DeepSeek-V3's 61 layers
    on 16 stages, Llama 3 405B's 126)."""
    v = _a(interleave)
    return v * np.ceil(num_layers / (_a(pp) * v))


def mtp_layers(model: ModelSpec) -> tuple[int, int]:
    """(layers, MoE layers) the multi-token-prediction modules add in training: one decoder layer each, of the
    last layer's kind."""
    mtp = model.mtp_modules
    return mtp, mtp if model.is_moe_layer(model.num_layers - 1) else 0


class ModelMemory:
    """Per-device parameter counts and activation sizes of one model under a plan's degrees; in `training`, with
    the multi-token-prediction modules as extra layers (on the last stages) and their projections."""

    def __init__(self, model: ModelSpec, training: bool = False):
        self.m = model
        m = model
        extra, extra_moe = mtp_layers(m) if training else (0, 0)
        self.mtp = extra
        self.L = m.num_layers + extra
        self.n_moe = m.num_moe_layers + extra_moe
        self.n_dense = m.num_dense_layers
        self.h = m.hidden_size
        self.V = m.vocab_size

    # ---- parameters --------------------------------------------------------------------------------
    def attention_params(self, tp):
        """Token-mixer weights of a mean layer on one tp rank: attention, whose KV projections are replicated when
        tp exceeds the KV heads, averaged with the linear and Mamba-2 layers (heads split over tp) and the
        MLP-only layers of a layer pattern."""
        m, tp = self.m, _a(tp)
        if m.mla:
            params = m.attention_params() / tp
        else:
            h, d, a, kv = m.hidden_size, m.dim_head, m.num_heads, m.kv_heads
            kv_rank = np.maximum(1.0, kv / tp)
            q = a / tp * (2 if m.attention_output_gate else 1)
            params = h * (q + 2 * kv_rank) * d + (a / tp) * d * h
            if m.qkv_bias:
                params = params + (a / tp + 2 * kv_rank) * d
            # the per-head q/k norms, the sinks and the output bias, as ModelSpec.attention_params counts them
            qk_norm = (a / tp + kv_rank) * d if m.qk_norm_per_channel else 2 * d
            params = params + (qk_norm if m.qk_norm else 0) + (a / tp if m.attention_sinks else 0) \
                + (h if m.out_bias else 0)
        if m.num_attention_layers == self.L:
            return params
        recurrent = m.num_linear_layers * (m.linear_attention_params() if m.linear_attention else 0) \
            + m.num_mamba_layers * (m.mamba_params() if m.mamba else 0)
        return (params * m.num_attention_layers + recurrent / tp) / self.L

    def layer_params(self, tp, ep, moe: bool):
        """(replicated-over-dp params, expert params) of one layer on one rank: the mean mixer and norms, and a
        non-MoE layer's share of the dense MLPs (all of one, unless a layer pattern has mixer-only layers)."""
        m, tp, ep = self.m, _a(tp), _a(ep)
        norms = sum(m.blocks(i) for i in range(self.L)) / self.L * m.norm_params() * m.norms_per_block
        base = self.attention_params(tp) + norms
        if not moe:
            share = self.n_dense / max(1, self.L - self.n_moe)
            return base + share * m.mlp_params(m.intermediate_size) / tp, np.zeros_like(tp)
        mo = m.moe
        router = mo.router_params(m.hidden_size)
        shared = mo.num_shared_experts * m.mlp_params(mo.shared_size, False) / tp
        experts = mo.num_experts / ep * m.mlp_params(mo.expert_intermediate_size, mo.expert_bias) / tp
        return base + router + shared, experts

    def stage_params(self, tp, pp, ep):
        """(dense, expert) parameters on one rank of the heaviest pipeline stage.

        The stage holds L/pp layers (as many MoE layers as it can: the heaviest mix) plus the larger of the
        embedding (first stage) and the LM head (last stage; with tied embeddings a copy when pp > 1).
        """
        tp, pp = _a(tp), _a(pp)
        lps = stage_layers(self.L, pp)
        n_moe = np.minimum(lps, self.n_moe)
        n_dense = lps - n_moe
        d_dense, _ = self.layer_params(tp, ep, False)
        if self.n_moe:
            d_moe, e_moe = self.layer_params(tp, ep, True)
        else:
            d_moe = e_moe = np.zeros_like(tp)
        ends = self._ends(tp, pp)
        return n_dense * d_dense + n_moe * d_moe + ends, n_moe * e_moe

    def _ends(self, tp, pp):
        """The embedding (first stage) or LM head (last stage) on one rank, whichever is larger when pp > 1."""
        m = self.m
        emb = self.V * self.h / tp + (m.embedding_params() - self.V * self.h)   # position table replicated
        head = np.where(pp > 1, self.V * self.h / tp, 0.0) if m.tie_embeddings else self.V * self.h / tp
        head = head + m.norm_params() + self.mtp * 2 * self.h * self.h / tp   # MTP: the 2h -> h projections
        return np.where(pp > 1, np.maximum(emb, head), emb + head)

    def stage_unquantized_params(self, tp, pp):
        """Of stage_params' dense share, what a quantized model keeps in 16 bits (ModelSpec.unquantized_params):
        the stage's embedding or LM head and its MoE layers' routers."""
        tp, pp = _a(tp), _a(pp)
        n_moe = np.minimum(stage_layers(self.L, pp), self.n_moe)
        router = self.m.moe.router_params(self.h) if self.m.moe else 0
        return self._ends(tp, pp) + n_moe * router

    def layer_gather_params(self, tp, ep):
        """Full (unsharded over dp) parameters of the largest layer: the ZeRO-3 gather buffer unit."""
        d, e = self.layer_params(tp, ep, bool(self.n_moe))
        return d + e

    # ---- activations ---------------------------------------------------------------------------------
    def layer_activation_bytes(self, micro_batch, seq, tp, sp, recompute, unfused: bool, moe: bool):
        """Stored activation bytes of one layer for one micro-batch on one rank (seq: tokens on this rank).

        recompute: 0 none, 1 selective, 2 full (arrays of codes allowed).
        """
        m = self.m
        b, s, t, rc = _a(micro_batch), _a(seq), _a(tp), _a(recompute)
        r = np.where(np.asarray(sp, bool), t, 1.0)
        sb, h = s * b, self.h
        a_t = m.num_heads / t
        if m.mla:
            k_t = a_t
            dqk, dv = m.qk_head_dim, m.v_head_dim
        else:
            k_t = np.maximum(1.0, m.kv_heads / t)
            dqk = dv = m.dim_head
        norms = 4 * sb * h / r
        attn = 2 * sb * h / r + 2 * sb * (a_t + k_t) * dqk + 2 * sb * k_t * dv + 2 * sb * a_t * dv + sb * h / r
        quad = 5 * a_t * s * sb if unfused else 0.0
        gated = m.mlp == "gated"

        def mlp(width, copies=1.0):
            return copies * 2 * sb * (width * (2 if gated else 1) + width) / t

        if moe:
            mo = m.moe
            mlp_part = 2 * sb * h / r + 2 * sb * mo.top_k * h / r + mlp(mo.expert_intermediate_size, mo.top_k) \
                + mlp(mo.num_shared_experts * mo.shared_size) + sb * h / r
        else:
            mlp_part = 2 * sb * h / r + mlp(m.intermediate_size) + sb * h / r
        full_layer = norms + attn + quad + mlp_part
        stored = np.where(rc == 0, full_layer, np.where(rc == 1, full_layer - quad, 2 * sb * h / r))
        return stored

    def in_flight_layers(self, pp, interleave, micro_batches, stage: str = "first"):
        """Layer-activations (in units of one layer for one micro-batch) a stage keeps during 1F1B."""
        p, v, mb = _a(pp), _a(interleave), _a(micro_batches)
        lps = stage_layers(self.L, p, v)
        if stage == "first":
            chunks = np.where(v > 1, 2 * (p - 1) + (v - 1) * p + 1, p)
        else:  # last stage
            chunks = np.where(v > 1, (v - 1) * p + 1, 1.0)
        chunks = np.minimum(chunks, mb * v)
        return chunks * lps / v


def training_memory(model: ModelSpec, tp, pp, dp, ep, cp, micro_batch, recompute, zero, interleave,
                    global_batch: int, seq: int, sp=True, unfused: bool = False, dtype: str = "bf16",
                    optimizer_dtype: str = "fp32", mm: ModelMemory | None = None) -> dict[str, np.ndarray]:
    """Bytes per GPU (the most loaded of the first and last pipeline stages), by component.

    recompute: code 0/1/2 or name; arrays broadcast. Returns weights, gradients, optimizer_states,
    activations and workspace (ZeRO-3 gather buffers, full-recompute layer rebuild, pipeline buffers).
    """
    mm = mm or ModelMemory(model, training=True)
    if isinstance(recompute, str):
        recompute = RECOMPUTE_CODE[recompute]
    tp, pp, dp, ep, cp = (_a(x) for x in (tp, pp, dp, ep, cp))
    b, rc, zero, v = _a(micro_batch), _a(recompute), _a(zero), _a(interleave)
    dense, expert = mm.stage_params(tp, pp, ep)
    shard = dp * cp                      # ZeRO shards over the gradient-reduction group
    eshard = np.maximum(1.0, shard / ep)
    w_bytes = WEIGHT_BYTES + (1.0 if dtype == "fp8" else 0.0)
    params_sharded = dense / shard + expert / eshard
    params_full = dense + expert
    weights = np.where(zero >= 3, params_sharded, params_full) * w_bytes
    grads = np.where(zero >= 2, params_sharded, params_full) * GRAD_BYTES
    opt = np.where(zero >= 1, params_sharded, params_full) * ADAM_BYTES[optimizer_dtype]

    s_loc = seq / cp
    m = global_batch / (dp * b)
    moe_layer = bool(mm.n_moe)
    per_layer = mm.layer_activation_bytes(b, s_loc, tp, sp, rc, unfused, moe_layer)
    first = mm.in_flight_layers(pp, v, m, "first") * per_layer
    last = mm.in_flight_layers(pp, v, m, "last") * per_layer + LOGIT_BYTES * s_loc * b * mm.V / tp
    acts = np.where(pp > 1, np.maximum(first, last), first + LOGIT_BYTES * s_loc * b * mm.V / tp)

    rebuild = np.where(rc == 2, mm.layer_activation_bytes(b, s_loc, tp, sp, 0, unfused, moe_layer), 0.0)
    gather = np.where(zero >= 3, 2 * mm.layer_gather_params(tp, ep) * WEIGHT_BYTES, 0.0)
    r = np.where(np.asarray(sp, bool) & (tp > 1), tp, 1.0)
    p2p = np.where(pp > 1, 2 * 2 * s_loc * b * mm.h * 2 / r, 0.0)   # send and receive buffers, fwd and bwd
    return {"weights": weights, "gradients": grads, "optimizer_states": opt, "activations": acts,
            "workspace": rebuild + gather + p2p}


def inference_memory(model: ModelSpec, tp: int, pp: int, ep: int, batch: int, kv_tokens: int, new_tokens: int,
                     dtype: str = "bf16", kv_dtype: str | None = None, weight_dtype: str | None = None,
                     mm: ModelMemory | None = None) -> dict[str, float]:
    """Bytes per GPU of a prefill or decode step: weights and KV cache of one stage, peak live activations.

    batch: sequences on this replica; kv_tokens: positions cached per sequence after the step;
    new_tokens: tokens computed per sequence in the step (prefill: seq, decode: 1).
    """
    mm = mm or ModelMemory(model)
    act_dtype = activation_dtype(dtype)
    dense, expert = mm.stage_params(tp, pp, ep)
    kept = mm.stage_unquantized_params(tp, pp)
    experts = model.routed_expert_dtype(dtype, weight_dtype) or weight_dtype or dtype
    weights = float(cmem.stored_weight_bytes(dense, kept, weight_dtype or dtype) + expert * nbytes(experts))
    kv = cmem.kv_cache_bytes(model, batch, kv_tokens, kv_dtype or act_dtype, tp) / pp
    acts = cmem.inference_activation_bytes(model, batch * new_tokens, act_dtype, tp)
    out = {"weights": weights, "kv_cache": float(kv), "activations": float(acts)}
    if any(model.recurrent_state_elems()):
        out["recurrent_state"] = cmem.recurrent_state_bytes(model, batch, tp=tp) / pp
    return out
