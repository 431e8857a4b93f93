"""Build the operator graph of one forward pass (prefill or a decode step) or one training step.

`build(model, task, batch, seq=..., context=...)` returns a networkx DiGraph whose nodes carry an
`op` (perfsim.ops), the `layer` index (-1 outside the decoder stack) and the `pass` (fwd, bwd, opt).
Edges follow data dependence along the residual stream. Shapes are per device for tensor-parallel
degree `tp` and expert-parallel degree `ep` (Megatron-style column/row splits); the collectives a
split needs appear as Collective nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import networkx as nx

from perfsim.dtypes import UNQUANTIZED_GEMMS, activation_dtype, check
from perfsim.errors import InvalidInputError, check_int
from perfsim.model import MLA, ModelSpec, load_model
from perfsim.ops import (
    Attention,
    Collective,
    Elementwise,
    Embedding,
    GatedDeltaRule,
    Gemm,
    IndexerScores,
    LinearRecurrence,
    MoEExperts,
    Op,
    SSDScan,
    a2a_elem_bytes,
    dispatch_bytes,
    norm,
    softmax,
)

TASKS = ("prefill", "decode", "train")
# Routing of real traffic: each token picks its top-k experts independently and uniformly (a load-balanced
# router), so a small batch reaches only E (1 - (1 - k/E)^T) experts; the calibration tables' round-robin
# "balanced" case reaches min(E, T k) of them (perfsim.cost.moe).
SERVED_ROUTING = "uniform"


@dataclass(frozen=True)
class Workload:
    """What one graph computes: `tokens` new tokens, each attending to up to `kv_len` positions."""
    task: str
    batch: int
    q_len: int      # new tokens per sequence
    kv_len: int     # positions attended per sequence (cached + new)
    dtype: str
    weight_dtype: str | None
    kv_dtype: str | None
    tp: int = 1
    ep: int = 1
    state_dtype: str = "fp32"   # linear-recurrence states
    expert_weight_dtype: str | None = None   # routed experts' weights (ModelSpec.routed_expert_dtype)
    gemm_recipe: str | None = None   # the quantized linears' kernel recipe (ModelSpec.gemm_recipe)

    @property
    def tokens(self) -> int:
        return self.batch * self.q_len


def workload(model: ModelSpec, task: str, batch: int, seq: int | None = None, context: int | None = None,
             dtype: str = "bf16", weight_dtype: str | None = None, kv_dtype: str | None = None,
             tp: int = 1, ep: int = 1, state_dtype: str = "fp32") -> Workload:
    """Validate a request and describe it; one-line errors name the bad argument."""
    if task not in TASKS:
        raise InvalidInputError(f"task: got {task!r}; accepted: {', '.join(TASKS)}")
    check_int("batch", batch)
    if seq is not None:
        check_int("seq", seq)
    if context is not None:
        check_int("context", context, 0)
    check_int("tp", tp)
    check_int("ep", ep)
    check(dtype, "dtype")
    if weight_dtype:
        check(weight_dtype, "weight_dtype")
    if kv_dtype:
        check(kv_dtype, "kv_dtype")
    check_state_dtype(state_dtype)
    if task == "decode":
        if context is None or context < 0:
            raise InvalidInputError("context: decode needs --context >= 0 (tokens already in the KV cache)")
        if context + 1 > model.max_seq_len:
            raise InvalidInputError(f"context: {context} + 1 new token exceeds {model.name}'s maximum "
                                    f"sequence length {model.max_seq_len}")
        q_len, kv_len = 1, context + 1
    else:
        if seq is None or seq < 1:
            raise InvalidInputError(f"seq: {task} needs --seq >= 1 (tokens per sequence)")
        if seq > model.max_seq_len:
            raise InvalidInputError(f"seq: {seq} exceeds {model.name}'s maximum sequence length {model.max_seq_len}")
        q_len, kv_len = seq, seq
    check_split(model, tp, ep)
    # training keeps the experts in the run's precision; inference runs them as the checkpoint ships
    experts = weight_dtype if task == "train" else model.routed_expert_dtype(dtype, weight_dtype)
    recipe = None if task == "train" else model.gemm_recipe(dtype, weight_dtype)
    return Workload(task, batch, q_len, kv_len, dtype, weight_dtype, kv_dtype, tp, ep, state_dtype, experts, recipe)


def mla_attention(mla: MLA, decode: bool, **fields) -> Attention:
    """Multi-head latent attention as its kernels run: a prefill over per-head decompressed keys (nope + rope dims)
    and values; an absorbed decode, every head reading the one cached latent (kv_lora_rank + rope dims) and
    returning latent-space values (DeepSeek-V2 report, section 2.1.2)."""
    if decode:
        return Attention(num_kv_heads=1, head_dim=mla.kv_lora_rank + mla.qk_rope_head_dim,
                         v_head_dim=mla.kv_lora_rank, kv_shared_by_heads=True, **fields)
    return Attention(num_kv_heads=fields["num_heads"], head_dim=mla.qk_nope_head_dim + mla.qk_rope_head_dim,
                     v_head_dim=mla.v_head_dim, **fields)


STATE_DTYPES = ("fp32", "bf16", "fp16")


def check_state_dtype(dtype: str) -> str:
    """Linear-recurrence states are kept in fp32 (SGLang; vLLM for Qwen3.5, Nemotron-H and KDA) or a 16-bit type
    (vLLM's 'auto' for Qwen3-Next)."""
    if dtype not in STATE_DTYPES:
        raise InvalidInputError(f"state_dtype: got {dtype!r}; accepted: {', '.join(STATE_DTYPES)}")
    return dtype


def split_problems(model: ModelSpec, tp: int, ep: int) -> list[str]:
    """Why tensor parallelism `tp` and expert parallelism `ep` cannot split `model` evenly; empty when they can."""
    out = []
    if tp < 1 or model.num_heads % tp:
        out.append(f"tp: {tp} must divide num_heads ({model.num_heads}) of {model.name}")
    else:
        out += [f"tp: {tp} must divide the {what} ({heads}) of {model.name}"
                for heads, what in recurrent_heads(model) if heads % tp]
    if ep < 1:
        out.append(f"ep: must be >= 1, got {ep}")
    elif ep > 1 and not model.moe:
        out.append(f"ep: {ep} needs a Mixture-of-Experts model; {model.name} is dense")
    elif ep > 1 and model.moe.num_experts % ep:
        out.append(f"ep: {ep} must divide the number of experts ({model.moe.num_experts}) of {model.name}")
    return out


def check_split(model: ModelSpec, tp: int, ep: int) -> None:
    """Raise the first of `split_problems`, naming the flag."""
    problems = split_problems(model, tp, ep)
    if problems:
        raise InvalidInputError(problems[0])


def recurrent_heads(model: ModelSpec) -> list[tuple[int, str]]:
    """Head counts of the linear and Mamba-2 mixers that tensor parallelism must split evenly."""
    out = []
    if model.linear_attention is not None:
        out.append((model.linear_attention.num_key_heads, "linear-attention key heads"))
    if model.mamba is not None:
        out.append((model.mamba.n_groups, "Mamba-2 groups"))
    return out


class _Builder:
    def __init__(self, model: ModelSpec, w: Workload):
        self.m, self.w = model, w
        self.g = nx.DiGraph()
        self.last: str | None = None
        self.forward: list[tuple[str, int, Op]] = []

    def add(self, op: Op, layer: int = -1, pass_: str = "fwd") -> None:
        key = f"{pass_}.L{layer}.{op.name}" if layer >= 0 else f"{pass_}.{op.name}"
        while key in self.g:
            key += "'"
        self.g.add_node(key, op=op, layer=layer, **{"pass": pass_})
        if self.last is not None:
            self.g.add_edge(self.last, key)
        self.last = key
        if pass_ == "fwd":
            self.forward.append((key, layer, op))

    # -- pieces ------------------------------------------------------------------------------------
    def gemm(self, name: str, m: int, n: int, k: int, layer: int = -1) -> None:
        w = self.w
        if name in UNQUANTIZED_GEMMS:   # 16-bit weights and math whatever the model's quantization
            self.add(Gemm(m=m, n=n, k=k, dtype=self.act_dtype, name=name), layer)
            return
        self.add(Gemm(m=m, n=n, k=k, dtype=w.dtype, weight_dtype=w.weight_dtype, recipe=w.gemm_recipe, name=name),
                 layer)

    def elementwise(self, name: str, elements: int, layer: int, reads: float = 1, flops: float = 1,
                    kind: str = "elementwise") -> None:
        self.add(Elementwise(elements=elements, reads=reads, flops_per_element=flops,
                             dtype=self.act_dtype, op_kind=kind, name=name), layer)

    @property
    def act_dtype(self) -> str:
        return activation_dtype(self.w.dtype)

    def all_reduce(self, name: str, elements: int, layer: int) -> None:
        """Tensor-parallel all-reduce: inference engines (TensorRT-LLM, vLLM, SGLang) run their own peer-memory
        kernels inside an NVLink domain (cost.comm, 'custom'), training NCCL's."""
        if self.w.tp > 1:
            from perfsim.dtypes import nbytes
            self.add(Collective(collective="all_reduce", size_bytes=elements * nbytes(self.act_dtype),
                                group=self.w.tp, name=name,
                                implementation="nccl" if self.w.task == "train" else "custom"), layer)

    def layer(self, i: int) -> None:
        """Decoder layer i: its token mixer and its MLP, each a pre-norm residual block, where it has them."""
        if self.m.mixer(i) is not None:
            self.attention_block(i)
        if self.m.mlp_kind(i) is not None:
            self.mlp_block(i)

    def attention_block(self, i: int) -> None:
        m, w = self.m, self.w
        T, h, tp = w.tokens, m.hidden_size, w.tp
        heads = m.num_heads // tp
        kv_heads = max(1, m.kv_heads // tp)
        self.add(norm(T, h, self.act_dtype, name="input_norm"), i)
        mixer = m.mixer(i)
        if mixer == "linear":
            self.linear_attention_block(i)
            return
        if mixer == "mamba":
            self.mamba_block(i)
            return
        if m.mla:
            self.mla_projections(i, heads)
            if m.sparse_attention:
                self.lightning_indexer(i)
        else:
            q_width = heads * (2 if m.attention_output_gate else 1)
            self.gemm("qkv_proj", T, (q_width + 2 * kv_heads) * m.dim_head, h, i)
            if m.qk_norm:
                self.add(norm(T, (heads + kv_heads) * m.dim_head, self.act_dtype, name="qk_norm"), i)
        if m.position == "rotary":
            rope_dim = m.mla.qk_rope_head_dim if m.mla else m.dim_head
            rope_heads = heads + (1 if m.mla else kv_heads)
            self.elementwise("rope", T * rope_heads * rope_dim, i, flops=3, kind="rotary")
        window = m.sliding_window if i < m.sliding_layers else None
        if m.sparse_attention:   # each query attends to its index_topk best keys: as many as a window of that size
            window = m.sparse_attention.index_topk
        self.add(self.attention_op(heads, kv_heads, window), i)
        if m.mla and w.task == "decode":
            # absorbed W_UV: latent context -> per-head values
            self.add(Gemm(m=T, n=m.mla.v_head_dim, k=m.mla.kv_lora_rank, batch=heads, dtype=w.dtype,
                          name="mla_v_up"), i)
        if m.attention_output_gate:  # o * sigmoid(gate)
            self.elementwise("attn_output_gate", T * heads * m.v_head_dim, i, reads=2, flops=5, kind="activation")
        self.attention_output(i, heads * m.v_head_dim)

    def attention_output(self, i: int, width: int) -> None:
        T, h = self.w.tokens, self.m.hidden_size
        self.gemm("o_proj", T, h, width, i)
        self.all_reduce("attn_all_reduce", T * h, i)
        self.block_output_norm("post_mixer_norm", i)
        self.elementwise("attn_residual_add", T * h, i, reads=2, kind="add")

    def block_output_norm(self, name: str, i: int) -> None:
        """Sandwich norm (Gemma 2/3): the block's output normalised before it joins the residual stream."""
        if self.m.sandwich_norm:
            self.add(norm(self.w.tokens, self.m.hidden_size, self.act_dtype, name=name), i)

    def linear_attention_block(self, i: int) -> None:
        """Gated DeltaNet (Qwen3-Next): in_proj to q, k, v, z, b, a. KDA (Kimi Linear): q, k, v projections, the
        low-rank per-channel decay (f_a, f_b), b, the low-rank output gate (g_a, g_b). Then depthwise causal conv
        and SiLU over q, k, v; the gated delta rule; RMSNorm times the output gate; out_proj. Heads split over TP."""
        la, w, h = self.m.linear_attention, self.w, self.m.hidden_size
        T, tp = w.tokens, w.tp
        nk, nv = la.num_key_heads // tp, la.num_value_heads // tp
        key, value = nk * la.key_head_dim, nv * la.value_head_dim
        if la.kind == "lightning":
            self.lightning_block(i)
            return
        if la.kind == "kda":
            self.gemm("qkv_proj", T, 2 * key + value, h, i)
            for name, width in (("decay", key), ("gate", value)):   # low rank: hidden -> head_dim -> heads x dim
                self.gemm(f"{name}_down", T, la.key_head_dim, h, i)
                self.gemm(f"{name}_up", T, width, la.key_head_dim, i)
            self.gemm("beta_proj", T, nv, h, i)
        else:
            self.gemm("in_proj", T, 2 * key + 2 * value + 2 * nv, h, i)
        # depthwise causal conv: conv_kernel multiply-adds, then SiLU (~8 FLOPs), per channel
        self.elementwise("short_conv", T * (2 * key + value), i, flops=2 * la.conv_kernel + 8, kind="activation")
        self.add(GatedDeltaRule(tokens=T, batch=w.batch, num_k_heads=nk, num_v_heads=nv, k_dim=la.key_head_dim,
                                v_dim=la.value_head_dim, recurrent=w.task == "decode", dtype=self.act_dtype,
                                state_dtype=w.state_dtype, gates=la.gates, name="gated_delta_rule"), i)
        self.elementwise("gated_norm", T * value, i, reads=2, flops=13, kind="norm")  # RMSNorm(o) * gate
        self.attention_output(i, value)

    def mla_projections(self, i: int, heads: int) -> None:
        m, w = self.m, self.w
        a, T, h = m.mla, w.tokens, m.hidden_size
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        kv_a = a.kv_lora_rank + a.qk_rope_head_dim
        if a.q_lora_rank and w.task != "train":
            # inference engines run both down-projections as one GEMM (TensorRT-LLM's fused_a, SGLang's
            # fused_qkv_a_proj_with_mqa, vLLM's fused_qkv_a_proj); Megatron trains them as two
            self.gemm("qkv_a_proj", T, a.q_lora_rank + kv_a, h, i)
        elif a.q_lora_rank:
            self.gemm("q_down", T, a.q_lora_rank, h, i)
        if a.q_lora_rank:
            self.add(norm(T, a.q_lora_rank, self.act_dtype, name="q_norm"), i)
            self.gemm("q_up", T, heads * qk, a.q_lora_rank, i)
        else:
            self.gemm("q_proj", T, heads * qk, h, i)
        if not (a.q_lora_rank and w.task != "train"):
            self.gemm("kv_down", T, kv_a, h, i)
        self.add(norm(T, a.kv_lora_rank, self.act_dtype, name="kv_norm"), i)
        if w.task == "decode":
            # absorbed W_UK: queries move into the latent space, keys stay compressed in the cache
            self.add(Gemm(m=T, n=a.kv_lora_rank, k=a.qk_nope_head_dim, batch=heads, dtype=w.dtype,
                          name="mla_q_absorb"), i)
        else:
            self.gemm("kv_up", T, heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank, i)

    def lightning_indexer(self, i: int) -> None:
        """DeepSeek Sparse Attention: index queries from the query latent, one index key per token (LayerNorm,
        RoPE), per-head weights, then every visible key scored; its 64 heads run whole on every TP rank."""
        m, w = self.m, self.w
        sa, T, h = m.sparse_attention, w.tokens, m.hidden_size
        self.gemm("index_q", T, sa.index_heads * sa.index_head_dim, m.mla.q_lora_rank, i)
        self.gemm("index_k", T, sa.index_head_dim, h, i)
        self.add(norm(T, sa.index_head_dim, self.act_dtype, name="index_k_norm"), i)
        self.gemm("index_weights", T, sa.index_heads, h, i)
        self.add(IndexerScores(batch=w.batch, q_len=w.q_len, kv_len=w.kv_len, num_heads=sa.index_heads,
                               num_kv_heads=1, head_dim=sa.index_head_dim, v_head_dim=1, kv_shared_by_heads=True,
                               dtype="fp8", kv_dtype="fp8", name="index_scores"), i)

    def attention_op(self, heads: int, kv_heads: int, window: int | None) -> Attention:
        m, w = self.m, self.w
        # KV cached in the activation dtype unless told otherwise (the engines' 'auto'). FP8 math only in a prefill
        # over an FP8 cache (TensorRT-LLM's FP8 context FMHA); decode kernels read an FP8 cache into BF16 math (the
        # measured TensorRT-LLM attention tables hold no other pairs), and FP8 training keeps attention in BF16
        # (DeepSeek-V3 report 3.3.1)
        kv = w.kv_dtype or self.act_dtype
        math = "fp8" if kv == "fp8" and w.task == "prefill" else self.act_dtype
        common = dict(batch=w.batch, q_len=w.q_len, kv_len=w.kv_len, causal=True, window=window,
                      dtype=math, kv_dtype=kv, name="attention")
        if m.mla:
            return mla_attention(m.mla, w.task == "decode", num_heads=heads, **common)
        return Attention(num_heads=heads, num_kv_heads=kv_heads, head_dim=m.dim_head, **common)

    def lightning_block(self, i: int) -> None:
        """Lightning attention (MiniMax-M1): qkv_proj and SiLU, the output-gate projection, the decayed linear
        attention (the scalar-decay scan, chunks of 256), RMSNorm over all heads times sigmoid(gate), out_proj."""
        la, w, h = self.m.linear_attention, self.w, self.m.hidden_size
        T, heads = w.tokens, la.num_value_heads // w.tp
        width = heads * la.value_head_dim
        self.gemm("qkv_proj", T, 3 * width, h, i)
        self.elementwise("qkv_act", T * 3 * width, i, flops=8, kind="activation")
        self.gemm("output_gate", T, width, h, i)
        self.add(SSDScan(tokens=T, batch=w.batch, num_k_heads=heads, num_v_heads=heads, k_dim=la.key_head_dim,
                         v_dim=la.value_head_dim, recurrent=w.task == "decode", chunk=256, dtype=self.act_dtype,
                         state_dtype=w.state_dtype, gates=0, name="lightning_scan"), i)
        self.elementwise("gated_norm", T * width, i, reads=2, flops=13, kind="norm")  # RMSNorm(o) * sigmoid(g)
        self.attention_output(i, width)

    def mamba_block(self, i: int) -> None:
        """Mamba-2 (Nemotron-H): in_proj to z, x, B, C and dt; depthwise causal conv and SiLU over x, B, C; the
        SSD scan; grouped RMSNorm gated by SiLU(z); out_proj. Heads and groups split over TP ranks."""
        mb, w = self.m.mamba, self.w
        T, tp = w.tokens, w.tp
        heads, groups = mb.num_heads // tp, mb.n_groups // tp
        inner, bc = heads * mb.head_dim, 2 * groups * mb.state_size
        self.gemm("in_proj", T, 2 * inner + bc + heads, self.m.hidden_size, i)
        self.elementwise("short_conv", T * (inner + bc), i, flops=2 * mb.conv_kernel + 8, kind="activation")
        self.add(SSDScan(tokens=T, batch=w.batch, num_k_heads=groups, num_v_heads=heads, k_dim=mb.state_size,
                         v_dim=mb.head_dim, recurrent=w.task == "decode", chunk=mb.chunk_size, dtype=self.act_dtype,
                         state_dtype=w.state_dtype, gates=1, name="ssd_scan"), i)
        self.elementwise("gated_norm", T * inner, i, reads=2, flops=13, kind="norm")  # RMSNorm(y) * SiLU(z)
        self.attention_output(i, inner)

    def mlp_block(self, i: int) -> None:
        m, w = self.m, self.w
        T, h = w.tokens, m.hidden_size
        self.add(norm(T, h, self.act_dtype, name="post_attn_norm"), i)
        if m.is_moe_layer(i):
            self.moe_block(i)
        else:
            self.dense_mlp("mlp", m.intermediate_size // w.tp, i)
            self.all_reduce("mlp_all_reduce", T * h, i)
        self.block_output_norm("post_mlp_norm", i)
        self.elementwise("mlp_residual_add", T * h, i, reads=2, kind="add")

    def dense_mlp(self, prefix: str, width: int, i: int) -> None:
        m, T, h = self.m, self.w.tokens, self.m.hidden_size
        gated = m.mlp == "gated"
        self.gemm(f"{prefix}_up", T, width * (2 if gated else 1), h, i)
        # gated: act(gate) * up reads two inputs; GELU/SiLU ~ 8 vector FLOPs per element
        self.elementwise(f"{prefix}_act", T * width, i, reads=2 if gated else 1, flops=8, kind="activation")
        self.gemm(f"{prefix}_down", T, h, width, i)

    def moe_block(self, i: int) -> None:
        m, w = self.m, self.w
        moe, T, h = m.moe, w.tokens, m.hidden_size
        self.gemm("router", T, moe.num_experts, h, i)
        self.add(softmax(T, moe.num_experts, self.act_dtype, name="router_topk"), i)
        to_experts, from_experts = (dispatch_bytes(T, moe.top_k, moe.num_experts, h, w.ep, w.task, b)
                                    for b in a2a_elem_bytes(w.dtype, w.task))
        if w.ep > 1:
            self.add(Collective(collective="all_to_all", size_bytes=to_experts, group=w.ep, name="moe_dispatch"), i)
        self.add(MoEExperts(tokens=T, hidden=h, inter=moe.expert_intermediate_size // w.tp, top_k=moe.top_k,
                            num_experts=moe.num_experts // w.ep, total_experts=moe.num_experts,
                            gated=m.mlp == "gated", dtype=w.dtype, weight_dtype=w.expert_weight_dtype,
                            distribution=SERVED_ROUTING, name="moe_experts"), i)
        if w.ep > 1:
            self.add(Collective(collective="all_to_all", size_bytes=from_experts, group=w.ep, name="moe_combine"), i)
        if moe.num_shared_experts:
            self.dense_mlp("shared_expert", moe.num_shared_experts * moe.shared_size // w.tp, i)
            if moe.shared_expert_gate:   # sigmoid(x . w) times the shared output
                self.gemm("shared_expert_gate", T, 1, h, i)
                self.elementwise("shared_expert_scale", T * h, i, reads=2, flops=5, kind="activation")
        self.all_reduce("moe_all_reduce", T * h, i)

    def head(self) -> None:
        m, w = self.m, self.w
        rows = w.tokens if w.task == "train" else w.batch  # inference needs logits of the last token only
        self.add(norm(rows, m.hidden_size, self.act_dtype, name="final_norm"))
        self.gemm("lm_head", rows, m.vocab_size // w.tp, m.hidden_size)
        if w.task == "train":
            self.add(softmax(rows, m.vocab_size // w.tp, "fp32", name="cross_entropy"))

    def mtp_module(self) -> None:
        """A multi-token-prediction module (DeepSeek-V3 report, 2.2): the hidden state and the next token's
        embedding, each RMS-normed, concatenated and projected 2h -> h, then a decoder layer like the last one
        (its ops counted with that layer) and the shared LM head with its loss."""
        m, w = self.m, self.w
        T, h, last = w.tokens, m.hidden_size, m.num_layers - 1
        for name in ("mtp_hidden_norm", "mtp_embedding_norm"):
            self.add(norm(T, h, self.act_dtype, name=name), last)
        self.gemm("mtp_proj", T, h, 2 * h, last)
        self.layer(last)
        self.head()

    # -- training passes ---------------------------------------------------------------------------
    def backward(self, recompute: str) -> None:
        for _, layer, op in reversed(list(self.forward)):
            if recompute == "full" and layer >= 0 or recompute == "selective" and isinstance(op, Attention):
                self.add(replace(op, name=f"{op.name}_recompute"), layer, "bwd")
            for grad in _gradient_ops(op):
                self.add(grad, layer, "bwd")

    def optimizer(self) -> None:
        params = self.m.params_total / self.w.tp
        # Adam with fp32 master weights: read w, m, v, grad; write w, m, v and the bf16 copy (~12 FLOP each)
        self.add(Elementwise(elements=int(params), reads=4, writes=3.5, flops_per_element=12, dtype="fp32",
                             op_kind="optimizer", name="adam_step"), -1, "opt")


def _gradient_ops(op: Op) -> list[Op]:
    """Backward ops of a forward op: dX and dW GEMMs, FlashAttention backward, elementwise grads."""
    if isinstance(op, Gemm):
        dgrad = Gemm(m=op.m, n=op.k, k=op.n, dtype=op.dtype, batch=op.batch, name=f"{op.name}_dgrad")
        wgrad = Gemm(m=op.k, n=op.n, k=op.m, dtype=op.dtype, batch=op.batch, name=f"{op.name}_wgrad")
        return [dgrad, wgrad]
    if isinstance(op, Attention):
        # FlashAttention-2 backward: 5 matmuls (recompute S, dV, dP, dQ, dK) vs 2 forward -> 2.5x FLOPs;
        # modelled as two forward-shaped passes plus a half pass.
        return [replace(op, name="attention_bwd"), replace(op, name="attention_bwd'"),
                replace(op, batch=max(1, op.batch // 2), name="attention_bwd''")]
    if isinstance(op, LinearRecurrence):
        # chunked delta-rule backward: dq, dk, dv, the gates' and the states' gradients, ~2x the forward
        return [replace(op, name=f"{op.name}_bwd"), replace(op, name=f"{op.name}_bwd'")]
    if isinstance(op, MoEExperts):
        return [replace(op, name=f"{op.name}_dgrad"), replace(op, name=f"{op.name}_wgrad")]
    if isinstance(op, Elementwise):
        return [replace(op, reads=op.reads + 1, name=f"{op.name}_bwd")]
    if isinstance(op, Collective):
        return [replace(op, name=f"{op.name}_bwd")]
    if isinstance(op, Embedding):
        return [replace(op, name="embedding_bwd")]
    return []


def build(model: ModelSpec | str, task: str, batch: int, seq: int | None = None, context: int | None = None,
          dtype: str = "bf16", weight_dtype: str | None = None, kv_dtype: str | None = None,
          tp: int = 1, ep: int = 1, recompute: str = "none", state_dtype: str = "fp32") -> nx.DiGraph:
    """The operator graph for `task` (prefill | decode | train) on one device of a tp x ep split."""
    model = load_model(model)
    w = workload(model, task, batch, seq, context, dtype, weight_dtype, kv_dtype, tp, ep, state_dtype)
    if recompute not in ("none", "selective", "full"):
        raise InvalidInputError(f"recompute: got {recompute!r}; accepted: none, selective, full")
    b = _Builder(model, w)
    b.add(Embedding(tokens=w.tokens, hidden=model.hidden_size, dtype=b.act_dtype, name="embedding"))
    for i in range(model.num_layers):
        b.layer(i)
    b.head()
    if task == "train":
        for _ in range(model.mtp_modules):
            b.mtp_module()
        b.backward(recompute)
        b.optimizer()
    b.g.graph.update(model=model.name, workload=w)
    return b.g


def ops_of(graph: nx.DiGraph) -> list[Op]:
    return [data["op"] for _, data in graph.nodes(data=True)]
