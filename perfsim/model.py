"""ModelSpec: the architecture of a dense or Mixture-of-Experts decoder-only transformer.

Covers MHA/GQA/MQA and MLA attention, sliding-window layers, Gated DeltaNet linear-attention layers between
full-attention ones (Qwen3-Next, Qwen3.5), Mamba-2 hybrids of one-block layers (Nemotron-H), gated (SwiGLU) or
plain (GELU, squared ReLU) MLPs, routed plus shared experts, first-k dense layers, tied embeddings, learned or
rotary positions.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from perfsim.dtypes import SIXTEEN_BIT
from perfsim.errors import SpecError, UnknownNameError
from perfsim.specfiles import find_spec, read_mapping, shipped_names, validation_message

# layer_pattern characters: the one block each layer holds
LAYER_BLOCKS = {"M": "Mamba-2", "*": "attention", "-": "dense MLP", "E": "MoE"}


def _require_multiple(name: str, value: int | None, of_name: str, of: int | None) -> None:
    """A validator's check that one head count is a whole multiple of another (skipped when either is unset)."""
    if value is not None and of is not None and value % of:
        raise ValueError(f"{name} ({value}) must be a multiple of {of_name} ({of})")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MLA(_Spec):
    """Multi-head latent attention (DeepSeek-V2/V3): low-rank compressed KV shared by all heads."""
    q_lora_rank: int | None = Field(default=None, gt=0)
    kv_lora_rank: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)


class SparseAttention(_Spec):
    """DeepSeek Sparse Attention (DeepSeek-V3.2): a lightning indexer (index_heads query heads of index_head_dim from
    the MLA query latent, one key per token, FP8, ReLU-weighted sum over heads) scores every earlier token, and each
    query attends to its index_topk best. Index keys are cached in FP8 with an fp32 scale per 128 elements."""
    index_heads: int = Field(gt=0)
    index_head_dim: int = Field(gt=0)
    index_topk: int = Field(gt=0)

    @property
    def key_bytes(self) -> int:
        """Index-key cache bytes per token and layer: FP8 elements plus an fp32 scale per 128."""
        return self.index_head_dim + 4 * -(-self.index_head_dim // 128)


class LinearAttention(_Spec):
    """Delta-rule linear-attention layers: each head keeps a key_head_dim x value_head_dim state per sequence
    instead of a KV cache; query and key heads (num_key_heads) are shared by groups of value heads; a depthwise
    causal conv of conv_kernel taps runs over q, k and v first.

    kind gated_deltanet (Yang, Kautz & Hatamizadeh 2025; Qwen3-Next, Qwen3.5): one decay and one beta per head,
      an output gate z from the fused in_proj.
    kind kda (Kimi Delta Attention, Kimi Linear 2025): a decay per channel from a low-rank f_a/f_b projection, beta
      per head, a low-rank g_a/g_b output gate; q, k and v heads equal.
    kind lightning (Lightning Attention, MiniMax-01 / MiniMax-M1): plain linear attention, S <- exp(-s_h) S + k v^T
      with a fixed decay per head (no delta rule, no input-dependent gate), SiLU on q, k and v, an RMSNorm over all
      heads times a sigmoid output gate projected from the layer input; no short conv (conv_kernel 0).
    Layer i is a full (softmax) attention layer when (i + 1) % full_attention_interval == 0, or, given explicitly,
    when i is in full_attention_layers (from 0); a linear one otherwise."""
    kind: Literal["gated_deltanet", "kda", "lightning"] = "gated_deltanet"
    num_key_heads: int = Field(gt=0)
    num_value_heads: int = Field(gt=0)
    key_head_dim: int = Field(gt=0)
    value_head_dim: int = Field(gt=0)
    conv_kernel: int = Field(default=4, ge=0)
    full_attention_interval: int | None = Field(default=None, gt=1)
    full_attention_layers: list[int] | None = None

    @field_validator("full_attention_layers")
    @classmethod
    def _placement(cls, layers: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if (layers is None) == (info.data.get("full_attention_interval") is None):
            raise ValueError("give exactly one of full_attention_interval and full_attention_layers")
        if layers is not None and (min(layers, default=0) < 0 or len(set(layers)) != len(layers)):
            raise ValueError(f"must be distinct layer indices from 0, got {layers}")
        return layers

    def is_full(self, index: int) -> bool:
        if self.full_attention_layers is not None:
            return index in self.full_attention_layers
        return (index + 1) % self.full_attention_interval == 0

    @field_validator("num_value_heads")
    @classmethod
    def _grouped(cls, nv: int, info: ValidationInfo) -> int:
        _require_multiple("num_value_heads", nv, "num_key_heads", info.data.get("num_key_heads"))
        return nv

    @property
    def key_dim(self) -> int:
        return self.num_key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        return self.num_value_heads * self.value_head_dim

    @property
    def conv_channels(self) -> int:
        """Channels of the depthwise conv: q, k and v."""
        return 2 * self.key_dim + self.value_dim

    @property
    def gates(self) -> int:
        """Per-token gate values of each value head: decay and beta (GDN); a decay per channel and beta (KDA);
        none (lightning: the decay is a constant of the head)."""
        return {"gated_deltanet": 2, "kda": self.key_head_dim + 1, "lightning": 0}[self.kind]

    @property
    def conv_state(self) -> int:
        """Elements of one sequence's conv state: the last conv_kernel - 1 inputs of each channel."""
        return self.conv_channels * max(0, self.conv_kernel - 1)


class Mamba2(_Spec):
    """Mamba-2 mixer layers (Dao & Gu 2024; Nemotron-H): num_heads heads of head_dim channels, each channel with
    a state_size state; B and C are shared by the heads of each of n_groups groups; a depthwise causal conv of
    conv_kernel taps over x, B and C first."""
    num_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    state_size: int = Field(gt=0)
    n_groups: int = Field(default=1, gt=0)
    conv_kernel: int = Field(default=4, gt=0)
    conv_bias: bool = True
    chunk_size: int = Field(default=256, gt=0)

    @field_validator("n_groups")
    @classmethod
    def _groups(cls, groups: int, info: ValidationInfo) -> int:
        _require_multiple("num_heads", info.data.get("num_heads"), "n_groups", groups)
        return groups

    @property
    def inner(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def conv_channels(self) -> int:
        """Channels of the depthwise conv: x, B and C."""
        return self.inner + 2 * self.n_groups * self.state_size


class MoE(_Spec):
    num_experts: int = Field(gt=0)
    top_k: int = Field(gt=0)
    expert_intermediate_size: int = Field(gt=0)
    num_shared_experts: int = Field(default=0, ge=0)
    shared_intermediate_size: int | None = Field(default=None, gt=0)  # per shared expert; default: expert size
    first_k_dense: int = Field(default=0, ge=0)   # leading layers with a dense MLP of `intermediate_size`
    layer_step: int = Field(default=1, ge=1)      # then every layer_step-th layer is MoE, the rest dense (Llama 4)
    router_bias: bool = False
    expert_bias: bool = False
    shared_expert_gate: bool = False  # sigmoid(x . w) scales the shared experts' output (Qwen2-MoE)
    # group-limited routing (DeepSeek-V2/V3 n_group, topk_group): experts in route_groups equal groups, a token's
    # experts drawn from at most route_group_limit of them
    route_groups: int = Field(default=1, ge=1)
    route_group_limit: int | None = Field(default=None, ge=1)
    # the routed experts' weight format in the released checkpoint when it is not the model's 16-bit one
    # (gpt-oss ships its experts in MXFP4, Kimi K2.5 in INT4); inference at the 16-bit default runs them as shipped
    weight_dtype: Literal["fp8", "int4", "int4_g32", "fp4", "mxfp4"] | None = None

    @field_validator("top_k")
    @classmethod
    def _topk(cls, top_k: int, info: ValidationInfo) -> int:
        experts = info.data.get("num_experts")
        if experts is not None and top_k > experts:
            raise ValueError(f"top_k ({top_k}) must not exceed num_experts ({experts})")
        return top_k

    @field_validator("route_groups")
    @classmethod
    def _groups(cls, groups: int, info: ValidationInfo) -> int:
        experts = info.data.get("num_experts")
        if experts is not None and experts % groups:
            raise ValueError(f"route_groups ({groups}) must divide num_experts ({experts})")
        return groups

    @field_validator("route_group_limit")
    @classmethod
    def _group_limit(cls, limit: int | None, info: ValidationInfo) -> int | None:
        groups = info.data.get("route_groups")
        if limit is not None and groups is not None and limit > groups:
            raise ValueError(f"route_group_limit ({limit}) must not exceed route_groups ({groups})")
        return limit

    @property
    def shared_size(self) -> int:
        return self.shared_intermediate_size or self.expert_intermediate_size

    def router_params(self, hidden: int) -> int:
        """The gate (hidden x experts), its per-expert bias, and the shared experts' gate vector."""
        return hidden * self.num_experts + (self.num_experts if self.router_bias else 0) \
            + (hidden if self.shared_expert_gate else 0)


class ModelSpec(_Spec):
    name: str
    family: str = ""
    source: str = Field(min_length=3)
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int | None = Field(default=None, gt=0)  # default: num_heads (MHA)
    head_dim: int | None = Field(default=None, gt=0, validate_default=True)  # default: hidden_size / num_heads
    intermediate_size: int = Field(gt=0)                  # dense MLP width
    vocab_size: int = Field(gt=0)
    max_seq_len: int = Field(gt=0)
    mlp: Literal["gated", "plain"] = "gated"
    activation: Literal["silu", "gelu", "relu", "relu2", "swiglu_clamped"] = "silu"
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    position: Literal["rotary", "learned", "alibi", "none"] = "rotary"
    tie_embeddings: bool = False
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False          # per-head RMSNorm on q and k (Qwen3)
    qk_norm_per_channel: bool = False  # the q/k RMSNorm spans the whole projection, a weight per channel (OLMo 2)
    sandwich_norm: bool = False    # an RMSNorm on each block's output before the residual add as well (Gemma 2/3)
    attention_sinks: bool = False  # one learned logit per head (gpt-oss)
    attention_output_gate: bool = False  # sigmoid gate on the attention output from a second q_proj half (Qwen3-Next)
    sliding_window: int | None = Field(default=None, gt=0)
    num_sliding_layers: int | None = Field(default=None, ge=0)  # default: all layers when a window is set
    mla: MLA | None = None
    sparse_attention: SparseAttention | None = None
    linear_attention: LinearAttention | None = None
    mamba: Mamba2 | None = None
    moe: MoE | None = None
    # Nemotron-H's hybrid_override_pattern: one block per layer, M Mamba-2, * attention, - dense MLP, E MoE
    layer_pattern: str | None = None
    # Multi-token-prediction modules trained with the model (DeepSeek-V3 report, 2.2; HF num_nextn_predict_layers):
    # each a decoder layer like the last one plus a 2h -> h projection, sharing the embedding and the LM head.
    # Training runs them; serving uses them only as speculative drafts (perfsim.serving.speculative).
    mtp_modules: int = Field(default=0, ge=0)
    # The format of the released checkpoint's GEMM weights (DeepSeek-V3 and MiniMax-M2 ship block-scaled FP8):
    # inference runs in it unless a --dtype is given (inference_dtype); training defaults to BF16.
    checkpoint_dtype: Literal["bf16", "fp8"] = "bf16"
    # An FP8 checkpoint whose weights carry one scale per 128 x 128 block (quantization_config weight_block_size:
    # DeepSeek, Qwen3 and MiniMax releases), not per tensor or per channel (ModelOpt, fbgemm, compressed-tensors)
    checkpoint_block_scaled: bool = False
    # Hugging Face repositories this spec reproduces (fine-tunes of the same architecture included), each with its
    # checkpoint's format (fp8_block: block-scaled FP8): `load_model` accepts their ids (metadata, left out of
    # model_dump)
    hf_repos: dict[str, Literal["bf16", "fp8", "fp8_block"]] = Field(default_factory=dict, exclude=True)

    # Cross-field checks are field validators so that an error names the offending field
    # ("field num_kv_heads: ..."); info.data holds the fields declared (and validated) before it.
    @field_validator("checkpoint_block_scaled")
    @classmethod
    def _block_scaled_fp8(cls, block: bool, info: ValidationInfo) -> bool:
        if block and info.data.get("checkpoint_dtype") != "fp8":
            raise ValueError("block scaling needs checkpoint_dtype fp8")
        return block

    @field_validator("num_kv_heads")
    @classmethod
    def _kv_divides(cls, kv: int | None, info: ValidationInfo) -> int | None:
        _require_multiple("num_heads", info.data.get("num_heads"), "num_kv_heads", kv)
        return kv

    @field_validator("head_dim")
    @classmethod
    def _head_dim(cls, head_dim: int | None, info: ValidationInfo) -> int | None:
        hidden, heads = info.data.get("hidden_size"), info.data.get("num_heads")
        if head_dim is None and hidden is not None and heads is not None and hidden % heads:
            raise ValueError(f"hidden_size ({hidden}) is not divisible by num_heads ({heads}); give head_dim")
        return head_dim

    @field_validator("num_sliding_layers")
    @classmethod
    def _sliding(cls, n: int | None, info: ValidationInfo) -> int | None:
        layers = info.data.get("num_layers")
        if n is not None and layers is not None and n > layers:
            raise ValueError(f"num_sliding_layers ({n}) must not exceed num_layers ({layers})")
        if n and info.data.get("sliding_window") is None:
            raise ValueError("num_sliding_layers needs sliding_window to be set")
        return n

    @field_validator("sparse_attention")
    @classmethod
    def _sparse_needs_mla(cls, sparse: SparseAttention | None, info: ValidationInfo) -> SparseAttention | None:
        mla = info.data.get("mla")
        if sparse is not None and (mla is None or not mla.q_lora_rank):
            raise ValueError("the lightning indexer reads the MLA query latent: needs mla with a q_lora_rank")
        return sparse

    @field_validator("linear_attention")
    @classmethod
    def _interval(cls, la: LinearAttention | None, info: ValidationInfo) -> LinearAttention | None:
        layers = info.data.get("num_layers")
        if la is not None and layers is not None and (la.full_attention_interval or 0) > layers:
            raise ValueError(f"full_attention_interval ({la.full_attention_interval}) must not exceed num_layers "
                             f"({layers})")
        if la is not None and layers is not None and max(la.full_attention_layers or [0]) >= layers:
            raise ValueError(f"full_attention_layers must be below num_layers ({layers})")
        return la

    @field_validator("moe")
    @classmethod
    def _first_k(cls, moe: MoE | None, info: ValidationInfo) -> MoE | None:
        layers = info.data.get("num_layers")
        if moe is not None and layers is not None and moe.first_k_dense > layers:
            raise ValueError(f"first_k_dense ({moe.first_k_dense}) must not exceed num_layers ({layers})")
        return moe

    @field_validator("layer_pattern")
    @classmethod
    def _pattern(cls, pattern: str | None, info: ValidationInfo) -> str | None:
        if pattern is None:
            return pattern
        layers = info.data.get("num_layers")
        if layers is not None and len(pattern) != layers:
            raise ValueError(f"has {len(pattern)} layers, num_layers is {layers}")
        if set(pattern) - set(LAYER_BLOCKS):
            accepted = ", ".join(f"{char} ({block})" for char, block in LAYER_BLOCKS.items())
            raise ValueError(f"got {pattern!r}; accepted characters: {accepted}")
        for char, field in (("M", "mamba"), ("E", "moe")):
            if char in pattern and info.data.get(field) is None:
                raise ValueError(f"{char} layers need `{field}` to be set")
        if info.data.get("linear_attention") is not None:
            raise ValueError("a layer pattern does not combine with linear_attention")
        return pattern

    # ---- derived shape facts -------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def attention_kind(self) -> str:
        if self.mla:
            return "mla"
        if self.kv_heads == self.num_heads:
            return "mha"
        return "mqa" if self.kv_heads == 1 else "gqa"

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    def is_moe_layer(self, index: int) -> bool:
        """Layer `index` (from 0) has routed experts: after the first_k_dense dense layers, every layer_step-th
        (Hugging Face Llama 4: (i + 1) % interleave_moe_layer_step == 0); an E layer of a layer pattern."""
        if self.layer_pattern is not None:
            return self.layer_pattern[index] == "E"
        m = self.moe
        return m is not None and index >= m.first_k_dense and (index - m.first_k_dense + 1) % m.layer_step == 0

    def mixer(self, index: int) -> str | None:
        """The token mixer of layer `index`: attention, linear (Gated DeltaNet), mamba, or None (an MLP-only layer)."""
        if self.layer_pattern is not None:
            return {"M": "mamba", "*": "attention"}.get(self.layer_pattern[index])
        return "linear" if self.is_linear_layer(index) else "attention"

    def mlp_kind(self, index: int) -> str | None:
        """The channel mixer of layer `index`: dense, moe, or None (a mixer-only layer of a layer pattern)."""
        if self.layer_pattern is not None:
            return {"-": "dense", "E": "moe"}.get(self.layer_pattern[index])
        return "moe" if self.is_moe_layer(index) else "dense"

    def blocks(self, index: int) -> int:
        """Pre-norm residual blocks in layer `index` (mixer and MLP: 2; one-block layers of a pattern: 1)."""
        return (self.mixer(index) is not None) + (self.mlp_kind(index) is not None)

    def is_linear_layer(self, index: int) -> bool:
        """Layer `index` (from 0) is a linear-attention (Gated DeltaNet) layer."""
        la = self.linear_attention
        return la is not None and not la.is_full(index)

    def _count_mixers(self, kind: str) -> int:
        return sum(self.mixer(i) == kind for i in range(self.num_layers))

    @property
    def num_linear_layers(self) -> int:
        return self._count_mixers("linear")

    @property
    def num_mamba_layers(self) -> int:
        return self._count_mixers("mamba")

    @property
    def num_attention_layers(self) -> int:
        """Layers with softmax attention over a KV cache."""
        return self._count_mixers("attention")

    @property
    def num_moe_layers(self) -> int:
        return sum(self.is_moe_layer(i) for i in range(self.num_layers))

    @property
    def num_dense_layers(self) -> int:
        """Layers with a dense MLP."""
        return sum(self.mlp_kind(i) == "dense" for i in range(self.num_layers))

    @property
    def sliding_layers(self) -> int:
        if self.sliding_window is None:
            return 0
        return self.num_layers if self.num_sliding_layers is None else self.num_sliding_layers

    @property
    def qk_head_dim(self) -> int:
        """Width of one head's query/key dot product."""
        return self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim if self.mla else self.dim_head

    @property
    def v_head_dim(self) -> int:
        return self.mla.v_head_dim if self.mla else self.dim_head

    def kv_cache_elems_per_token_layer(self) -> int:
        """KV-cache elements stored per token per layer: 2*kv_heads*head_dim, or the MLA latent."""
        if self.mla:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.kv_heads * self.dim_head

    # ---- parameter counts ----------------------------------------------------------------------
    def indexer_params(self) -> int:
        """The lightning indexer of one layer: wq_b from the query latent, the key projection and its LayerNorm,
        the per-head weights."""
        sa, h = self.sparse_attention, self.hidden_size
        if sa is None:
            return 0
        return (self.mla.q_lora_rank * sa.index_heads * sa.index_head_dim + h * sa.index_head_dim
                + 2 * sa.index_head_dim + h * sa.index_heads)

    def attention_params(self) -> int:
        h, nh, nkv, d = self.hidden_size, self.num_heads, self.kv_heads, self.dim_head
        if self.mla:
            m = self.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank:
                q = h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * nh * qk  # down, norm, up
            else:
                q = h * nh * qk
            kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank \
                + m.kv_lora_rank * nh * (m.qk_nope_head_dim + m.v_head_dim)
            return q + kv + nh * m.v_head_dim * h + self.indexer_params()
        params = h * (nh * (2 if self.attention_output_gate else 1) + 2 * nkv) * d + nh * d * h
        if self.qkv_bias:
            params += (nh + 2 * nkv) * d
        if self.out_bias:
            params += h
        if self.qk_norm:
            params += (nh + nkv) * d if self.qk_norm_per_channel else 2 * d
        if self.attention_sinks:
            params += nh
        return params

    def linear_attention_params(self) -> int:
        """One linear-attention layer. Gated DeltaNet: in_proj to q, k, v, the output gate z and the per-head b and
        a; the conv taps; A_log and dt_bias per value head; the gated RMSNorm over a head; out_proj. KDA: q, k, v
        projections and convs; the low-rank decay (f_a, f_b) with dt_bias per channel and A_log per head; b per
        head; the low-rank output gate (g_a, g_b); the gated RMSNorm; o_proj."""
        la, h = self.linear_attention, self.hidden_size
        convs = la.conv_channels * la.conv_kernel
        out = la.value_head_dim + la.value_dim * h
        if la.kind == "lightning":   # qkv_proj, output_gate, one RMSNorm over all heads, out_proj
            return h * la.conv_channels + h * la.value_dim + la.value_dim + la.value_dim * h
        if la.kind == "kda":
            low_rank = 2 * (h * la.key_head_dim + la.key_head_dim * la.value_dim)   # f_a, f_b, g_a, g_b
            return (h * la.conv_channels + convs + low_rank + la.key_dim + la.num_value_heads
                    + h * la.num_value_heads + out)
        in_proj = h * (2 * la.key_dim + 2 * la.value_dim + 2 * la.num_value_heads)
        return in_proj + convs + 2 * la.num_value_heads + out

    def mamba_params(self) -> int:
        """One Mamba-2 layer: in_proj to z, x, B, C and dt; the conv taps (and bias); A_log, D and dt_bias per
        head; the grouped gated RMSNorm; out_proj."""
        mb, h = self.mamba, self.hidden_size
        in_proj = h * (2 * mb.inner + 2 * mb.n_groups * mb.state_size + mb.num_heads)
        conv = mb.conv_channels * (mb.conv_kernel + (1 if mb.conv_bias else 0))
        return in_proj + conv + 3 * mb.num_heads + mb.inner + mb.inner * h

    def recurrent_state_elems(self) -> tuple[int, int]:
        """Recurrent state per sequence over the linear and Mamba-2 layers: (state elements of every head, conv
        state elements: the last conv_kernel - 1 inputs of each channel)."""
        state = conv = 0
        la, mb = self.linear_attention, self.mamba
        if la is not None:
            n = self.num_linear_layers
            state += n * la.num_value_heads * la.key_head_dim * la.value_head_dim
            conv += n * la.conv_state
        if mb is not None:
            n = self.num_mamba_layers
            state += n * mb.inner * mb.state_size
            conv += n * mb.conv_channels * (mb.conv_kernel - 1)
        return state, conv

    def mlp_params(self, width: int, bias: bool | None = None) -> int:
        h = self.hidden_size
        bias = self.mlp_bias if bias is None else bias
        if self.mlp == "gated":
            return 3 * h * width + ((2 * width + h) if bias else 0)
        return 2 * h * width + ((width + h) if bias else 0)

    def norm_params(self) -> int:
        return self.hidden_size * (2 if self.norm == "layernorm" else 1)

    @property
    def norms_per_block(self) -> int:
        """Hidden-wide norms per residual block: the input norm, and with sandwich_norm the output norm."""
        return 2 if self.sandwich_norm else 1

    def _moe_layer_params(self, active: bool) -> int:
        m = self.moe
        experts = m.top_k if active else m.num_experts
        return (experts * self.mlp_params(m.expert_intermediate_size, m.expert_bias)
                + m.num_shared_experts * self.mlp_params(m.shared_size, False) + m.router_params(self.hidden_size))

    def embedding_params(self) -> int:
        params = self.vocab_size * self.hidden_size
        if self.position == "learned":
            params += self.max_seq_len * self.hidden_size
        return params

    def lm_head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab_size * self.hidden_size

    def run_dtype(self, task: str, dtype: str | None = None) -> str:
        """A run's compute dtype: the one asked for, else BF16 for training and the checkpoint's for inference."""
        return dtype or ("bf16" if task == "train" else self.checkpoint_dtype)

    def routed_expert_dtype(self, dtype: str, weight_dtype: str | None = None) -> str | None:
        """Weight format of the routed experts at inference in `dtype` (weights `weight_dtype`): the checkpoint's
        own (MoE.weight_dtype) when the run keeps the released 16-bit precision, else the run's weight format."""
        native = self.moe.weight_dtype if self.moe else None
        if native and weight_dtype is None and dtype in SIXTEEN_BIT:
            return native
        return weight_dtype

    def gemm_recipe(self, dtype: str, weight_dtype: str | None = None) -> str | None:
        """The kernel recipe of the GEMMs of an inference in `dtype` when not the plain dtype's: fp8_block on a
        block-scaled FP8 checkpoint (128 x 128 weight blocks and 1 x 128 activation groups, DeepSeek-V3 report
        3.3.2), whose linears run block-scaled kernels; None otherwise (per-tensor or per-channel FP8, as ModelOpt
        exports it or an engine quantizes a 16-bit checkpoint)."""
        block = dtype == "fp8" and weight_dtype in (None, "fp8") and self.checkpoint_block_scaled
        return "fp8_block" if block else None

    def unquantized_params(self) -> int:
        """Parameters a quantized checkpoint keeps in 16 bits: embeddings, LM head and MoE routers
        (perfsim.dtypes.UNQUANTIZED_GEMMS)."""
        routers = self.num_moe_layers * self.moe.router_params(self.hidden_size) if self.moe else 0
        return self.embedding_params() + self.lm_head_params() + routers

    def _params(self, active: bool) -> int:
        mixers = self.num_attention_layers * self.attention_params()
        if self.num_linear_layers:
            mixers += self.num_linear_layers * self.linear_attention_params()
        if self.num_mamba_layers:
            mixers += self.num_mamba_layers * self.mamba_params()
        norms = sum(self.blocks(i) for i in range(self.num_layers)) * self.norm_params() * self.norms_per_block
        total = mixers + norms + self.num_dense_layers * self.mlp_params(self.intermediate_size)
        if self.moe:
            total += self.num_moe_layers * self._moe_layer_params(active)
        return total + self.embedding_params() + self.lm_head_params() + self.norm_params()

    @property
    def params_total(self) -> int:
        return self._params(active=False)

    @property
    def params_active(self) -> int:
        """Parameters touched per token (equal to params_total for dense models)."""
        return self._params(active=True)

    @property
    def params_non_embedding(self) -> int:
        """Active parameters that take part in GEMMs: params_active less the lookup-only tables.

        The position table (learned positions) is a lookup; the token table is a lookup too unless the
        embeddings are tied, in which case it is also the LM-head GEMM and stays counted (once).
        """
        lookup = self.embedding_params() - (self.vocab_size * self.hidden_size if self.tie_embeddings else 0)
        return self.params_active - lookup


def _parse(data: dict, source: str) -> ModelSpec:
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(validation_message(source, exc)) from None


def model_names() -> list[str]:
    return sorted(shipped_names("workloads"))


@lru_cache(maxsize=128)
def _load_path(path: Path) -> ModelSpec:
    if path.suffix == ".json":
        from perfsim.hf_config import from_hf_config
        return from_hf_config(path)
    return _parse(read_mapping(path), str(path))


@lru_cache(maxsize=1)
def _repo_index() -> dict[str, tuple[str, str]]:
    """lower-cased Hugging Face repository id -> (shipped model name, checkpoint format), from the specs' hf_repos."""
    index = {}
    for name, path in shipped_names("workloads").items():
        repos = read_mapping(path).get("hf_repos") or {}
        for repo, dtype in (repos.items() if isinstance(repos, dict) else ()):
            index[str(repo).lower()] = (name, str(dtype))
    return index


def model_for_repo(repo: str) -> ModelSpec | None:
    """The shipped spec of a Hugging Face repository id (case-insensitive), in that checkpoint's format; None if
    no shipped spec lists it."""
    hit = _repo_index().get(str(repo).strip().lower())
    if hit is None:
        return None
    spec = load_model(hit[0])
    block = hit[1] == "fp8_block"
    fmt = {"checkpoint_dtype": "fp8" if block else hit[1], "checkpoint_block_scaled": block}
    return spec if all(getattr(spec, k) == v for k, v in fmt.items()) else spec.model_copy(update=fmt)


def load_model(name_or_path: str | Path | ModelSpec) -> ModelSpec:
    """A ModelSpec by shipped name ('llama-3.1-8b'), Hugging Face repository id a shipped spec lists
    ('meta-llama/Llama-3.3-70B-Instruct'), perfsim YAML path, or Hugging Face config.json path."""
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    path = find_spec(name_or_path, "workloads")
    if path is None or not path.exists():
        spec = model_for_repo(str(name_or_path))
        if spec is not None:
            return spec
    if path is None or not path.exists():
        raise UnknownNameError(f"model: {str(name_or_path)!r} is no shipped name, Hugging Face repository a shipped "
                               f"spec covers, or file; see `perfsim models list`, or give a perfsim YAML or a "
                               f"Hugging Face config.json path")
    return _load_path(path)
