"""Build a ModelSpec from a local Hugging Face `config.json` (no network, no transformers import).

Each supported `architectures` entry has a small reader that maps the config's keys onto ModelSpec
fields, with the defaults the matching transformers configuration class uses when a key is absent.
Errors are one-line SpecErrors naming the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perfsim.errors import SpecError
from perfsim.model import ModelSpec, _parse
from perfsim.specfiles import read_mapping

_MISSING = object()


class _Config:
    """A config.json mapping with typed, error-reporting accessors."""

    def __init__(self, data: dict[str, Any], path: Path, arch: str):
        self.data, self.path, self.arch = data, path, arch

    def _fail(self, key: str, what: str) -> SpecError:
        return SpecError(f"{self.path}: field {key}: {what}")

    def _get(self, keys: tuple[str, ...], default: Any) -> tuple[str, Any, bool]:
        """(key, value, given): the first of `keys` present and not null, else the default."""
        for key in keys:
            if self.data.get(key) is not None:
                return key, self.data[key], True
        if default is _MISSING:
            raise self._fail(keys[0], f"required field is missing (needed for {self.arch})")
        return keys[0], default, False

    def integer(self, *keys: str, default: Any = _MISSING) -> Any:
        """First of `keys` present and not null, as an int; `default` when none is (required if not given)."""
        key, value, given = self._get(keys, default)
        if not given:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or int(value) != value:
            raise self._fail(key, f"expected an integer, got {value!r}")
        return int(value)

    def per_layer(self, key: str, layers: int, default: Any = _MISSING) -> Any:
        """An integer given once or as a list of one per layer (Hunyuan's moe_topk), whose entries must agree."""
        value = self.data.get(key)
        if not isinstance(value, list):
            return self.integer(key, default=default)
        if len(value) != layers:
            raise self._fail(key, f"has {len(value)} entries for {layers} layers")
        if any(v != value[0] for v in value):
            raise self._fail(key, f"per-layer values differ ({sorted(set(map(str, value)))}); only one value for "
                                  "every layer is supported")
        return _Config({key: value[0]}, self.path, self.arch).integer(key)

    def flag(self, key: str, default: bool) -> bool:
        key, value, given = self._get((key,), default)
        if given and not isinstance(value, bool):
            raise self._fail(key, f"expected true or false, got {value!r}")
        return value

    def text(self, key: str, default: str) -> str:
        key, value, given = self._get((key,), default)
        if given and not isinstance(value, str):
            raise self._fail(key, f"expected a string, got {value!r}")
        return value

    def int_list(self, key: str) -> list[int]:
        value = self.data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self._fail(key, f"expected a list of layer indices, got {value!r}")
        return value

    def str_list(self, key: str) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, f"expected a list of strings, got {value!r}")
        return value

    def activation(self, key: str = "hidden_act", default: str = "silu") -> str:
        act = self.text(key, default).lower()
        if act in ("silu", "swish"):
            return "silu"
        if act.startswith("gelu") or act in ("quick_gelu", "gelu_pytorch_tanh"):
            return "gelu"
        if act in ("relu", "relu2"):    # relu2: squared ReLU (Nemotron-H)
            return act
        raise self._fail(key, f"activation {act!r} is not supported; supported: silu, swish, gelu*, relu, relu2")


# ---- per-family readers: each returns ModelSpec fields --------------------------------------------

def _sliding_layers(c: _Config, num_layers: int) -> dict[str, Any]:
    """sliding_window / num_sliding_layers from `layer_types`, or Qwen2-style use_sliding_window/max_window_layers."""
    window = c.integer("sliding_window", default=None)
    layer_types = c.str_list("layer_types")
    if layer_types is not None:
        if len(layer_types) != num_layers:
            raise c._fail("layer_types", f"has {len(layer_types)} entries for {num_layers} layers")
        sliding = sum(t == "sliding_attention" for t in layer_types)
        if not sliding:
            return {}
        if window is None:
            raise c._fail("sliding_window", "required field is missing (layer_types has sliding_attention layers)")
        return {"sliding_window": window, "num_sliding_layers": sliding}
    if "use_sliding_window" in c.data:           # Qwen2/Qwen3: the window is inert unless switched on
        if not c.flag("use_sliding_window", False) or window is None:
            return {}
        first = c.integer("max_window_layers", default=num_layers)
        return {"sliding_window": window, "num_sliding_layers": max(0, num_layers - first)}
    return {"sliding_window": window} if window is not None else {}


def _rotary_gated_decoder(c: _Config) -> dict[str, Any]:
    """The fields every Llama-style decoder (rotary positions, RMSNorm, gated MLP) reads the same way."""
    return {"intermediate_size": c.integer("intermediate_size"), "vocab_size": c.integer("vocab_size"),
            "max_seq_len": c.integer("max_position_embeddings"), "mlp": "gated", "activation": c.activation(),
            "norm": "rmsnorm", "position": "rotary", "tie_embeddings": c.flag("tie_word_embeddings", False)}


def _llama_like(c: _Config, *, qkv_bias: bool | None = None, out_bias: bool | None = None,
                qk_norm: bool = False) -> dict[str, Any]:
    hidden = c.integer("hidden_size")
    heads = c.integer("num_attention_heads")
    layers = c.integer("num_hidden_layers")
    attention_bias = c.flag("attention_bias", False)
    spec: dict[str, Any] = {
        "hidden_size": hidden,
        "num_layers": layers,
        "num_heads": heads,
        "num_kv_heads": c.integer("num_key_value_heads", default=heads),
        **_rotary_gated_decoder(c),
        "qkv_bias": attention_bias if qkv_bias is None else qkv_bias,
        "out_bias": attention_bias if out_bias is None else out_bias,
        "mlp_bias": c.flag("mlp_bias", False),
        "qk_norm": qk_norm,
    }
    head_dim = c.integer("head_dim", default=None)
    if head_dim is not None:
        spec["head_dim"] = head_dim
    return spec | _sliding_layers(c, layers)


def _llama(c: _Config) -> dict[str, Any]:
    return _llama_like(c)


def _qwen2(c: _Config) -> dict[str, Any]:
    return _llama_like(c, qkv_bias=True, out_bias=False)    # Qwen2: q/k/v carry a bias, o_proj does not


def _qwen3(c: _Config) -> dict[str, Any]:
    return _llama_like(c, qk_norm=True)


def _mixtral(c: _Config) -> dict[str, Any]:
    spec = _llama_like(c)
    spec["moe"] = {"num_experts": c.integer("num_local_experts"), "top_k": c.integer("num_experts_per_tok"),
                   "expert_intermediate_size": spec["intermediate_size"]}
    return spec


def _qwen3_moe(c: _Config) -> dict[str, Any]:
    return _qwen_experts(c, _llama_like(c, qk_norm=True))


def _qwen2_5_vl(c: _Config) -> dict[str, Any]:
    """Qwen2.5-VL: the Qwen2 language model (q/k/v biases) of text_config, or of the top level where older checkpoints
    keep it; the ViT and its merger are not modelled, multimodal rotary positions (mrope) have no parameters."""
    return _qwen2(_language_model(c))


def _qwen3_vl_moe(c: _Config) -> dict[str, Any]:
    """Qwen3-VL MoE: the Qwen3-MoE language model of text_config; the ViT, its merger and the DeepStack features added
    to the first layers' hidden states (no language-model parameters) are not modelled."""
    return _qwen3_moe(_language_model(c))


def _exaone4(c: _Config) -> dict[str, Any]:
    """EXAONE 4.0: per-head q/k RMSNorm, each block's output normalised instead of its input (OLMo 2's layout: the same
    two norms a layer); sliding-window layers after layer_types, the global ones without rotary positions (no
    parameters either way)."""
    if c.data.get("sliding_window") is not None and "layer_types" not in c.data:
        raise c._fail("layer_types", "required field is missing (sliding_window is set; which layers slide?)")
    return _qwen3(c)


def _hunyuan_moe(c: _Config) -> dict[str, Any]:
    """Hunyuan-A13B (HunYuanMoEV1ForCausalLM): GQA with per-head q/k RMSNorm, every layer a softmax top-k MoE beside a
    shared MLP of intermediate_size * num_shared_expert; per-layer lists (moe_topk, ...) must hold one value.
    Cross-layer KV sharing (use_cla) and MLA (use_mla) are not supported."""
    for key in ("use_cla", "use_mla"):
        if c.flag(key, False):
            raise c._fail(key, "only false is supported")
    if c.integer("moe_layer_num_skipped", default=0):
        raise c._fail("moe_layer_num_skipped", "only 0 (every layer MoE) is supported")
    spec = _llama_like(c, qk_norm=c.flag("use_qk_norm", True))
    head_dim = c.integer("head_dim", "attention_head_dim", default=None)
    if head_dim is not None:
        spec["head_dim"] = head_dim
    layers, dense = spec["num_layers"], spec["intermediate_size"]
    shared = dense * c.per_layer("num_shared_expert", layers, default=1) if c.flag("use_mixed_mlp_moe", True) else 0
    spec["moe"] = {"num_experts": c.per_layer("num_experts", layers), "top_k": c.per_layer("moe_topk", layers),
                   "expert_intermediate_size": c.per_layer("moe_intermediate_size", layers, default=dense)}
    if shared:
        spec["moe"].update(num_shared_experts=1, shared_intermediate_size=shared)
    return spec


def _qwen2_moe(c: _Config) -> dict[str, Any]:
    """Qwen1.5-MoE / Qwen2-MoE: Qwen2 attention (q/k/v biases), routed experts plus one shared expert whose output a
    sigmoid gate scales."""
    spec = _qwen_experts(c, _qwen2(c))
    shared = c.integer("shared_expert_intermediate_size", default=0)
    if shared and "moe" in spec:
        spec["moe"].update(num_shared_experts=1, shared_intermediate_size=shared, shared_expert_gate=True)
    return spec


def _qwen_experts(c: _Config, spec: dict[str, Any]) -> dict[str, Any]:
    """The routed experts of the Qwen MoE families on top of their attention layers' fields."""
    layers, experts = spec["num_layers"], c.integer("num_experts")
    step = c.integer("decoder_sparse_step", default=1)
    dense_only = set(c.int_list("mlp_only_layers"))
    if experts == 0:
        return spec
    if step < 1:
        raise c._fail("decoder_sparse_step", f"must be >= 1, got {step}")
    # transformers: layer i is sparse when i not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0
    dense = [i for i in range(layers) if i in dense_only or (i + 1) % step]
    if dense != list(range(len(dense))):
        raise c._fail("mlp_only_layers", f"dense layers {dense} are not a leading block; perfsim models only "
                                         "the first k layers as dense (decoder_sparse_step 1, mlp_only_layers 0..k-1)")
    spec["moe"] = {"num_experts": experts, "top_k": c.integer("num_experts_per_tok"),
                   "expert_intermediate_size": c.integer("moe_intermediate_size"), "first_k_dense": len(dense)}
    return spec


def _qwen3_next(c: _Config) -> dict[str, Any]:
    """Qwen3-Next and Qwen3.5 MoE (text_config): Gated DeltaNet layers with every full_attention_interval-th layer
    a gated (sigmoid output gate) softmax attention; MoE with a sigmoid-gated shared expert. Partial rotary and the
    MTP layers are not modelled."""
    c = _language_model(c)
    if "intermediate_size" not in c.data:   # Qwen3.5 MoE has no dense layers and gives no dense width
        c = _Config({**c.data, "intermediate_size": c.integer("moe_intermediate_size")}, c.path, c.arch)
    # the dense Qwen3.5 models (no num_experts) put a SwiGLU MLP in every layer
    spec = _qwen3_moe(c) if c.integer("num_experts", default=0) else _llama_like(c, qk_norm=True)
    spec["attention_output_gate"] = c.flag("attn_output_gate", True)
    interval = c.integer("full_attention_interval")
    layers = spec["num_layers"]
    kinds = c.data.get("layer_types")
    expected = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(layers)]
    if kinds is not None and kinds != expected:
        raise c._fail("layer_types", f"only every full_attention_interval-th ({interval}) layer full attention, "
                                     "the rest linear_attention, is supported")
    spec["linear_attention"] = {
        "num_key_heads": c.integer("linear_num_key_heads"), "num_value_heads": c.integer("linear_num_value_heads"),
        "key_head_dim": c.integer("linear_key_head_dim"), "value_head_dim": c.integer("linear_value_head_dim"),
        "conv_kernel": c.integer("linear_conv_kernel_dim", default=4), "full_attention_interval": interval}
    shared = c.integer("shared_expert_intermediate_size", default=0)
    if shared and "moe" in spec:
        spec["moe"].update(num_shared_experts=1, shared_intermediate_size=shared, shared_expert_gate=True)
    return spec


def _nemotron_h(c: _Config) -> dict[str, Any]:
    """Nemotron-H: one-block layers after hybrid_override_pattern (M Mamba-2, * attention without positional
    encoding, - squared-ReLU MLP, E MoE of such experts); untied embeddings."""
    pattern = c.text("hybrid_override_pattern", "")
    layers = c.integer("num_hidden_layers")
    if len(pattern) != layers:
        raise c._fail("hybrid_override_pattern", f"has {len(pattern)} characters for {layers} layers")
    heads = c.integer("num_attention_heads")
    spec = {
        "hidden_size": c.integer("hidden_size"), "num_layers": layers, "num_heads": heads,
        "num_kv_heads": c.integer("num_key_value_heads", default=heads),
        "head_dim": c.integer("head_dim", "attention_head_dim"),
        "intermediate_size": c.integer("intermediate_size"), "vocab_size": c.integer("vocab_size"),
        "max_seq_len": c.integer("max_position_embeddings"), "mlp": "plain",
        "activation": c.activation("mlp_hidden_act", "relu2"), "norm": "rmsnorm", "position": "none",
        "tie_embeddings": c.flag("tie_word_embeddings", False),
        "qkv_bias": c.flag("attention_bias", False), "out_bias": c.flag("attention_bias", False),
        "mlp_bias": c.flag("mlp_bias", False), "layer_pattern": pattern,
        "mamba": {"num_heads": c.integer("mamba_num_heads"), "head_dim": c.integer("mamba_head_dim"),
                  "state_size": c.integer("ssm_state_size"), "n_groups": c.integer("n_groups", default=1),
                  "conv_kernel": c.integer("conv_kernel", default=4), "conv_bias": c.flag("use_conv_bias", True),
                  "chunk_size": c.integer("chunk_size", default=256)},
    }
    if "E" in pattern:
        spec["moe"] = {"num_experts": c.integer("n_routed_experts"), "top_k": c.integer("num_experts_per_tok"),
                       "expert_intermediate_size": c.integer("moe_intermediate_size"),
                       "num_shared_experts": c.integer("n_shared_experts", default=0),
                       "shared_intermediate_size": c.integer("moe_shared_expert_intermediate_size", default=None),
                       "router_bias": True}   # sigmoid scores with a per-expert e_score_correction_bias
    return spec


def _glm4_moe(c: _Config) -> dict[str, Any]:
    """GLM-4.5/4.6 (Glm4MoeForCausalLM): q/k/v biases but none on o_proj, optional per-head q/k RMSNorm, the first
    first_k_dense_replace layers dense, then routed experts (sigmoid scores with a per-expert correction bias) plus
    shared ones; the MTP layers (num_nextn_predict_layers) train with the model. Partial rotary is not modelled."""
    spec = _llama_like(c, qkv_bias=c.flag("attention_bias", False), out_bias=False,
                       qk_norm=c.flag("use_qk_norm", False))
    shared = c.integer("n_shared_experts", default=0)
    spec["moe"] = {"num_experts": c.integer("n_routed_experts"), "top_k": c.integer("num_experts_per_tok"),
                   "expert_intermediate_size": c.integer("moe_intermediate_size"), "num_shared_experts": min(shared, 1),
                   # several shared experts run as one MLP of their summed width
                   "shared_intermediate_size": c.integer("moe_intermediate_size") * shared if shared > 1 else None,
                   "first_k_dense": c.integer("first_k_dense_replace", default=0), "router_bias": True}
    spec["mtp_modules"] = c.integer("num_nextn_predict_layers", default=0)
    return spec


def _kimi_linear(c: _Config) -> dict[str, Any]:
    """Kimi Linear: KDA layers (linear_attn_config) between MLA layers without positional encoding, DeepSeek-style
    MoE after first_k_dense_replace dense layers."""
    block = c.data.get("linear_attn_config")
    if not isinstance(block, dict):
        raise c._fail("linear_attn_config", "required block is missing (kda_layers, full_attn_layers, ...)")
    la = _Config(block, c.path, c.arch)
    layers = c.integer("num_hidden_layers")
    full = [i - 1 for i in la.int_list("full_attn_layers")]    # counted from 1 (configuration_kimi.py)
    if sorted(full + [i - 1 for i in la.int_list("kda_layers")]) != list(range(layers)):
        raise c._fail("linear_attn_config", f"kda_layers and full_attn_layers must cover the {layers} layers once")
    if not c.flag("mla_use_nope", False):
        raise c._fail("mla_use_nope", "only true (MLA layers without positional encoding) is supported")
    heads, width = la.integer("num_heads"), la.integer("head_dim")
    heads_q = c.integer("num_attention_heads")
    return {
        "hidden_size": c.integer("hidden_size"), "num_layers": layers, "num_heads": heads_q,
        "num_kv_heads": heads_q, "intermediate_size": c.integer("intermediate_size"),
        "vocab_size": c.integer("vocab_size"), "max_seq_len": c.integer("model_max_length", "max_position_embeddings"),
        "mlp": "gated", "activation": c.activation(), "norm": "rmsnorm", "position": "none",
        "tie_embeddings": c.flag("tie_word_embeddings", False),
        "mla": {"q_lora_rank": c.integer("q_lora_rank", default=None), "kv_lora_rank": c.integer("kv_lora_rank"),
                "qk_nope_head_dim": c.integer("qk_nope_head_dim"), "qk_rope_head_dim": c.integer("qk_rope_head_dim"),
                "v_head_dim": c.integer("v_head_dim")},
        "linear_attention": {"kind": "kda", "num_key_heads": heads, "num_value_heads": heads, "key_head_dim": width,
                             "value_head_dim": width, "conv_kernel": la.integer("short_conv_kernel_size", default=4),
                             "full_attention_layers": full},
        "moe": {"num_experts": c.integer("num_experts", "n_routed_experts"),
                "top_k": c.integer("num_experts_per_token", "num_experts_per_tok"),
                "expert_intermediate_size": c.integer("moe_intermediate_size"),
                "num_shared_experts": c.integer("num_shared_experts", default=0),
                "first_k_dense": c.integer("first_k_dense_replace", default=0), "router_bias": True},
    }


def _checkpoint_dtype(c: _Config) -> dict[str, Any]:
    """checkpoint_dtype fp8 for a checkpoint stored in FP8 throughout (quantization_config quant_method fp8), block
    scaled when it names a weight_block_size (DeepSeek-V3's and MiniMax-M2's 128 x 128 blocks)."""
    quant = c.data.get("quantization_config")
    if not (isinstance(quant, dict) and quant.get("quant_method") == "fp8"):
        return {}
    return {"checkpoint_dtype": "fp8", "checkpoint_block_scaled": bool(quant.get("weight_block_size"))}


def _native_experts(c: _Config, spec: dict[str, Any]) -> None:
    """Set the routed experts' shipped format from a quantization_config that quantizes only them: MXFP4 (gpt-oss,
    quant_method mxfp4) or compressed-tensors INT4 in groups of 32 with attention left out (Kimi K2 Thinking /
    K2.5, format pack-quantized). Whole-model formats (DeepSeek's FP8) stay a run's --dtype."""
    quant = c.data.get("quantization_config")
    if not isinstance(quant, dict):
        return
    if quant.get("quant_method") == "mxfp4":
        spec["moe"]["weight_dtype"] = "mxfp4"
        return
    groups = quant.get("config_groups") if quant.get("quant_method") == "compressed-tensors" else None
    weights = [g.get("weights") or {} for g in (groups or {}).values() if isinstance(g, dict)]
    attention_kept = any("self_attn" in str(rule) for rule in quant.get("ignore") or [])
    if attention_kept and len(weights) == 1 and {k: weights[0].get(k) for k in ("num_bits", "type", "group_size")} \
            == {"num_bits": 4, "type": "int", "group_size": 32}:
        spec["moe"]["weight_dtype"] = "int4_g32"


def _language_model(c: _Config) -> _Config:
    """A multimodal checkpoint's language model (its text_config); a text-only config as it is."""
    text = c.data.get("text_config")
    return _Config(text, c.path, c.arch) if isinstance(text, dict) else c


def _deepseek_v3(c: _Config) -> dict[str, Any]:
    """DeepSeek-V2 and V3 and the models built on them, e.g. Kimi K2 / K2.5 (whose vision tower is not modelled).
    Several shared experts run as one MLP of their summed width, as DeepSeek's DeepseekV2MoE builds them."""
    c = _language_model(c)
    routing = "greedy" if c.arch == "DeepseekV2ForCausalLM" else "noaux_tc"   # the config classes' defaults
    heads = c.integer("num_attention_heads")
    layers = c.integer("num_hidden_layers")
    if c.integer("moe_layer_freq", default=1) != 1:
        raise c._fail("moe_layer_freq", "only 1 (every layer after first_k_dense_replace is MoE) is supported")
    spec = {
        "hidden_size": c.integer("hidden_size"),
        "num_layers": layers,
        "mtp_modules": c.integer("num_nextn_predict_layers", default=0),
        "num_heads": heads,
        "num_kv_heads": heads,   # MLA: every head has its own (decompressed) K and V
        **_rotary_gated_decoder(c),
        "mla": {
            "q_lora_rank": c.integer("q_lora_rank", default=None),
            "kv_lora_rank": c.integer("kv_lora_rank"),
            "qk_nope_head_dim": c.integer("qk_nope_head_dim"),
            "qk_rope_head_dim": c.integer("qk_rope_head_dim"),
            "v_head_dim": c.integer("v_head_dim"),
        },
        "moe": {
            "num_experts": c.integer("n_routed_experts"),
            "top_k": c.integer("num_experts_per_tok"),
            "expert_intermediate_size": c.integer("moe_intermediate_size"),
            "num_shared_experts": c.integer("n_shared_experts", default=0),
            "first_k_dense": c.integer("first_k_dense_replace", default=0),
            # noaux_tc routing keeps a per-expert e_score_correction_bias next to the gate weight
            "router_bias": c.text("topk_method", routing) == "noaux_tc",
        },
    }
    groups, limit = c.integer("n_group", default=1), c.integer("topk_group", default=1)
    if 1 <= limit < groups:   # group-limited routing: a token's experts come from at most topk_group groups
        spec["moe"].update(route_groups=groups, route_group_limit=limit)
    if c.integer("index_topk", default=None) is not None:   # DeepSeek-V3.2's sparse attention
        spec["sparse_attention"] = {"index_heads": c.integer("index_n_heads"),
                                    "index_head_dim": c.integer("index_head_dim"),
                                    "index_topk": c.integer("index_topk")}
    _native_experts(c, spec)
    return {**spec, **_checkpoint_dtype(c)}


def _minimax_m2(c: _Config) -> dict[str, Any]:
    """MiniMax-M2: full GQA attention with q/k RMSNorm, every layer 256-expert MoE with sigmoid scores and a
    per-expert routing bias, no shared expert. Partial rotary (rotary_dim) and the multi-token-prediction modules
    (num_mtp_modules, speculative decoding only) are not modelled."""
    spec = _llama_like(c, qk_norm=c.flag("use_qk_norm", True))
    if 0 in c.int_list("attn_type_list"):
        raise c._fail("attn_type_list", "only full attention (1) in every layer is supported, not lightning (0)")
    if c.integer("shared_intermediate_size", default=0):
        raise c._fail("shared_intermediate_size", "only 0 (no shared expert) is supported")
    spec["moe"] = {"num_experts": c.integer("num_local_experts"), "top_k": c.integer("num_experts_per_tok"),
                   "expert_intermediate_size": spec["intermediate_size"],
                   "router_bias": c.flag("use_routing_bias", False)}
    return {**spec, **_checkpoint_dtype(c)}


def _minimax_m1(c: _Config) -> dict[str, Any]:
    """MiniMax-M1 / MiniMax-Text-01: lightning-attention layers (attn_type_list 0) between GQA softmax layers (1),
    every layer a Mixtral-style MoE. Partial rotary, DeepNorm-style residual scaling and postnorm do not change cost."""
    spec = _llama_like(c)
    kinds = c.int_list("attn_type_list")
    if len(kinds) != spec["num_layers"] or set(kinds) - {0, 1}:
        raise c._fail("attn_type_list", f"expected {spec['num_layers']} entries of 0 (lightning) or 1 (softmax)")
    if c.integer("shared_intermediate_size", default=0):
        raise c._fail("shared_intermediate_size", "only 0 (no shared expert) is supported")
    heads, width = spec["num_heads"], spec.get("head_dim") or spec["hidden_size"] // spec["num_heads"]
    spec["linear_attention"] = {"kind": "lightning", "num_key_heads": heads, "num_value_heads": heads,
                                "key_head_dim": width, "value_head_dim": width, "conv_kernel": 0,
                                "full_attention_layers": [i for i, k in enumerate(kinds) if k == 1]}
    spec["moe"] = {"num_experts": c.integer("num_local_experts"), "top_k": c.integer("num_experts_per_tok"),
                   "expert_intermediate_size": spec["intermediate_size"]}
    return spec


def _llama4(c: _Config) -> dict[str, Any]:
    """Llama 4 (text_config): routed experts of `intermediate_size` plus one shared expert of the same size on
    every interleave_moe_layer_step-th layer, dense layers of `intermediate_size_mlp`; the rotary layers use
    chunked attention (attention_chunk_size), modelled as a sliding window of that size, which never attends
    to fewer keys; the NoPE layers (no_rope_layers[i] == 0) attend globally."""
    c = _language_model(c)
    layers = c.integer("num_hidden_layers")
    spec = _llama_like(c, qk_norm=c.flag("use_qk_norm", True))
    spec["intermediate_size"] = c.integer("intermediate_size_mlp")
    chunk = c.integer("attention_chunk_size", default=None)
    rope_layers = c.int_list("no_rope_layers") or [0 if (i + 1) % 4 == 0 else 1 for i in range(layers)]
    if len(rope_layers) != layers:
        raise c._fail("no_rope_layers", f"has {len(rope_layers)} entries for {layers} layers")
    if chunk is not None and sum(rope_layers):
        spec.update(sliding_window=chunk, num_sliding_layers=sum(1 for r in rope_layers if r))
    step = c.integer("interleave_moe_layer_step", default=1)
    if step < 1:
        raise c._fail("interleave_moe_layer_step", f"must be >= 1, got {step}")
    spec["moe"] = {"num_experts": c.integer("num_local_experts"), "top_k": c.integer("num_experts_per_tok"),
                   "expert_intermediate_size": c.integer("intermediate_size"), "num_shared_experts": 1,
                   "layer_step": step}
    return spec


def _gpt_oss(c: _Config) -> dict[str, Any]:
    spec = _llama_like(c, qkv_bias=c.flag("attention_bias", True), out_bias=c.flag("attention_bias", True))
    spec.update(activation="swiglu_clamped", attention_sinks=True)
    spec["moe"] = {"num_experts": c.integer("num_local_experts"),
                   "top_k": c.integer("num_experts_per_tok", "experts_per_token"),
                   "expert_intermediate_size": spec["intermediate_size"],
                   "router_bias": True, "expert_bias": True}
    _native_experts(c, spec)
    return spec


def _gpt2(c: _Config) -> dict[str, Any]:
    hidden = c.integer("n_embd", "hidden_size")
    return {
        "hidden_size": hidden,
        "num_layers": c.integer("n_layer", "num_hidden_layers"),
        "num_heads": c.integer("n_head", "num_attention_heads"),
        "intermediate_size": c.integer("n_inner", default=4 * hidden),   # n_inner null -> 4 * n_embd
        "vocab_size": c.integer("vocab_size"),
        "max_seq_len": c.integer("n_positions", "max_position_embeddings"),
        "mlp": "plain",
        "activation": c.activation("activation_function", "gelu_new"),
        "norm": "layernorm",
        "position": "learned",
        "tie_embeddings": c.flag("tie_word_embeddings", True),
        "qkv_bias": True, "out_bias": True, "mlp_bias": True,
    }


def _plain_rotary(c: _Config, *, bias: bool) -> dict[str, Any]:
    """GPT-NeoX / Phi: LayerNorm, plain GELU MLP, biases, partial rotary (no parameters; ignored)."""
    heads = c.integer("num_attention_heads")
    return {
        "hidden_size": c.integer("hidden_size"),
        "num_layers": c.integer("num_hidden_layers"),
        "num_heads": heads,
        "num_kv_heads": c.integer("num_key_value_heads", default=heads),
        "intermediate_size": c.integer("intermediate_size"),
        "vocab_size": c.integer("vocab_size"),
        "max_seq_len": c.integer("max_position_embeddings"),
        "mlp": "plain",
        "activation": c.activation("hidden_act", "gelu"),
        "norm": "layernorm",
        "position": "rotary",
        "tie_embeddings": c.flag("tie_word_embeddings", False),
        "qkv_bias": bias, "out_bias": bias, "mlp_bias": True,
    }


def _gpt_neox(c: _Config) -> dict[str, Any]:
    # use_parallel_residual changes the dataflow, not the weights or FLOPs: ignored for cost.
    return _plain_rotary(c, bias=c.flag("attention_bias", True))


def _phi(c: _Config) -> dict[str, Any]:
    return _plain_rotary(c, bias=True)


def _qwen1(c: _Config) -> dict[str, Any]:
    """Qwen-1 (QWenLMHeadModel, trust_remote_code): intermediate_size counts w1 and w2 together."""
    hidden, heads = c.integer("hidden_size"), c.integer("num_attention_heads")
    spec = {
        "hidden_size": hidden,
        "num_layers": c.integer("num_hidden_layers"),
        "num_heads": heads,
        "intermediate_size": c.integer("intermediate_size") // 2,
        "vocab_size": c.integer("vocab_size"),
        "max_seq_len": c.integer("seq_length", "max_position_embeddings"),
        "mlp": "gated", "activation": "silu", "norm": "rmsnorm", "position": "rotary",
        "tie_embeddings": c.flag("tie_word_embeddings", False),
        "qkv_bias": True,                                  # c_attn always has a bias
        "out_bias": not c.flag("no_bias", True),
        "mlp_bias": not c.flag("no_bias", True),
    }
    kv_channels = c.integer("kv_channels", default=None)
    if kv_channels is not None and kv_channels * heads != hidden:
        spec["head_dim"] = kv_channels
    return spec


def _internlm(c: _Config) -> dict[str, Any]:
    bias = c.flag("bias", True)                            # InternLM (v1): q/k/v/o biases unless bias: false
    return _llama_like(c, qkv_bias=bias, out_bias=bias)


# Gemma 1 / 2 / 3 configuration defaults (transformers GemmaConfig, Gemma2Config, Gemma3TextConfig): a Gemma 3
# checkpoint's text_config often lists only the keys that differ from them.
_GEMMA_DEFAULTS = {
    "GemmaForCausalLM": {"vocab_size": 256000, "max_position_embeddings": 8192, "head_dim": 256,
                         "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True},
    "Gemma2ForCausalLM": {"vocab_size": 256000, "max_position_embeddings": 8192, "head_dim": 256,
                          "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
                          "sliding_window": 4096},
    "Gemma3": {"vocab_size": 262208, "max_position_embeddings": 131072, "head_dim": 256,
               "num_attention_heads": 8, "num_key_value_heads": 4,   # gemma-3-4b-it's config leaves them out
               "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True, "sliding_window": 4096,
               "sliding_window_pattern": 6},
}


def _with_defaults(c: _Config, defaults: dict[str, Any]) -> _Config:
    """The config with its configuration class's defaults for the keys it leaves out."""
    return _Config({**defaults, **c.data}, c.path, c.arch)


def _gemma(c: _Config) -> dict[str, Any]:
    """Gemma 1, 2 and 3 (Gemma3ForConditionalGeneration: its text_config; the SigLIP vision tower is not modelled):
    GeGLU MLP (hidden_activation, else hidden_act), tied embeddings, head_dim (256 by default) apart from hidden_size.
    Gemma 2/3 add sandwich norms around both blocks, Gemma 3 per-head q/k norms. Sliding-window layers (Gemma 2/3)
    after layer_types, else every other layer from the first (Gemma 2) or all but every sliding_window_pattern-th
    (Gemma 3). Logit soft-capping and the embedding scale do not change cost."""
    c = _language_model(c)
    gemma3 = c.arch.startswith("Gemma3")
    c = _with_defaults(c, _GEMMA_DEFAULTS["Gemma3" if gemma3 else c.arch])
    c.data["hidden_act"] = c.data.get("hidden_activation") or c.data.get("hidden_act")
    if c.arch == "GemmaForCausalLM":
        return _llama_like(c)          # Gemma 1: pre-norm blocks only, every layer global
    spec = _llama_like(c, qk_norm=gemma3) | {"sandwich_norm": True}
    layers, window = spec["num_layers"], c.integer("sliding_window")
    if "layer_types" not in c.data:
        pattern = c.integer("sliding_window_pattern") if gemma3 else 2
        sliding = layers - layers // pattern if gemma3 else (layers + 1) // 2
        spec.update(sliding_window=window, num_sliding_layers=sliding)
    return spec


def _mistral3(c: _Config) -> dict[str, Any]:
    """Mistral Small 3.1 and later (Mistral3ForConditionalGeneration): the Mistral language model of text_config;
    the Pixtral vision tower and its projector are not modelled."""
    return _llama(_language_model(c))


# transformers LlamaConfig / MistralConfig defaults: a LLaVA checkpoint's text_config lists only the keys that differ
# from those of its model_type (llava-1.5: vocab_size and max_position_embeddings)
_LLAVA_TEXT_DEFAULTS = {
    "llama": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "max_position_embeddings": 2048},
    "mistral": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
                "sliding_window": 4096},
}


def _llava(c: _Config) -> dict[str, Any]:
    """LLaVA (LlavaForConditionalGeneration): the Llama or Mistral language model of text_config (model_type, default
    llama); the CLIP vision tower and the projector are not modelled."""
    c = _language_model(c)
    kind = c.text("model_type", "llama")
    if kind not in _LLAVA_TEXT_DEFAULTS:
        raise c._fail("model_type", f"language model {kind!r} is not supported; supported: "
                                    f"{', '.join(_LLAVA_TEXT_DEFAULTS)}")
    return _llama(_with_defaults(c, _LLAVA_TEXT_DEFAULTS[kind]))


def _smollm3(c: _Config) -> dict[str, Any]:
    """SmolLM3: a Llama-style GQA decoder with tied embeddings by default (SmolLM3Config); its NoPE layers
    (no_rope_layers[i] == 0) only skip the rotary rotation, which has no parameters, so they cost as the others."""
    return _llama_like(_with_defaults(c, {"tie_word_embeddings": True}))


def _olmo2(c: _Config) -> dict[str, Any]:
    """OLMo 2 and OLMoE: q/k RMSNorm over the whole projections; OLMoE's every layer routes to experts of
    `intermediate_size`. OLMo 2 normalises each block's output instead of its input (the same two norms a layer);
    clip_qkv does not change cost."""
    spec = _llama_like(c, qk_norm=True) | {"qk_norm_per_channel": True}
    if c.arch == "OlmoeForCausalLM":
        spec["moe"] = {"num_experts": c.integer("num_experts"), "top_k": c.integer("num_experts_per_tok"),
                       "expert_intermediate_size": spec["intermediate_size"]}
    return spec


def _starcoder2(c: _Config) -> dict[str, Any]:
    """StarCoder2: GQA with rotary positions, LayerNorm, a plain GELU MLP, biases everywhere unless use_bias is
    false; a sliding window over every layer."""
    bias = c.flag("use_bias", True)
    return _llama_like(c) | {"mlp": "plain", "activation": c.activation("hidden_act", "gelu_pytorch_tanh"),
                             "norm": "layernorm", "qkv_bias": bias, "out_bias": bias, "mlp_bias": bias}


def _opt(c: _Config) -> dict[str, Any]:
    """OPT: learned positions (two more table rows than max_position_embeddings, left uncounted), LayerNorm, a plain
    ReLU MLP of ffn_dim, biases unless enable_bias is false, tied embeddings."""
    hidden = c.integer("hidden_size")
    if c.integer("word_embed_proj_dim", default=hidden) != hidden:
        raise c._fail("word_embed_proj_dim", f"only equal to hidden_size ({hidden}) is supported (no project_in/out)")
    bias = c.flag("enable_bias", True)
    return {
        "hidden_size": hidden, "num_layers": c.integer("num_hidden_layers"),
        "num_heads": c.integer("num_attention_heads"), "intermediate_size": c.integer("ffn_dim"),
        "vocab_size": c.integer("vocab_size"), "max_seq_len": c.integer("max_position_embeddings"),
        "mlp": "plain", "activation": c.activation("activation_function", "relu"), "norm": "layernorm",
        "position": "learned", "tie_embeddings": c.flag("tie_word_embeddings", True),
        "qkv_bias": bias, "out_bias": bias, "mlp_bias": bias,
    }


_READERS: dict[str, tuple[str, Callable[[_Config], dict[str, Any]]]] = {
    "LlamaForCausalLM": ("llama", _llama),
    "MistralForCausalLM": ("mistral", _llama),
    "MixtralForCausalLM": ("mixtral", _mixtral),
    "Qwen2ForCausalLM": ("qwen2", _qwen2),
    "Qwen3ForCausalLM": ("qwen3", _qwen3),
    "Qwen3MoeForCausalLM": ("qwen3-moe", _qwen3_moe),
    "Qwen3NextForCausalLM": ("qwen3-next", _qwen3_next),
    "Glm4MoeForCausalLM": ("glm4-moe", _glm4_moe),
    "KimiLinearForCausalLM": ("kimi-linear", _kimi_linear),
    "NemotronHForCausalLM": ("nemotron-h", _nemotron_h),
    "Qwen3_5MoeForConditionalGeneration": ("qwen3.5-moe", _qwen3_next),
    "Qwen3_5ForConditionalGeneration": ("qwen3.5", _qwen3_next),
    "DeepseekV3ForCausalLM": ("deepseek-v3", _deepseek_v3),
    "KimiK25ForConditionalGeneration": ("deepseek-v3", _deepseek_v3),
    "DeepseekV32ForCausalLM": ("deepseek-v3.2", _deepseek_v3),
    "MiniMaxM2ForCausalLM": ("minimax-m2", _minimax_m2),
    "MiniMaxM1ForCausalLM": ("minimax-m1", _minimax_m1),
    "MiniMaxText01ForCausalLM": ("minimax-m1", _minimax_m1),
    "Llama4ForConditionalGeneration": ("llama4", _llama4),
    "Llama4ForCausalLM": ("llama4", _llama4),
    "GptOssForCausalLM": ("gpt-oss", _gpt_oss),
    "GPT2LMHeadModel": ("gpt2", _gpt2),
    "GPTNeoXForCausalLM": ("gpt-neox", _gpt_neox),
    "PhiForCausalLM": ("phi", _phi),
    "QWenLMHeadModel": ("qwen", _qwen1),
    "InternLMForCausalLM": ("internlm", _internlm),
    "GemmaForCausalLM": ("gemma", _gemma),
    "Gemma2ForCausalLM": ("gemma2", _gemma),
    "Gemma3ForCausalLM": ("gemma3", _gemma),
    "Gemma3ForConditionalGeneration": ("gemma3", _gemma),
    "Phi3ForCausalLM": ("phi3", _llama),
    "Mistral3ForConditionalGeneration": ("mistral3", _mistral3),
    "DeepseekV2ForCausalLM": ("deepseek-v2", _deepseek_v3),
    "Qwen2MoeForCausalLM": ("qwen2-moe", _qwen2_moe),
    "Olmo2ForCausalLM": ("olmo2", _olmo2),
    "OlmoeForCausalLM": ("olmoe", _olmo2),
    "GraniteForCausalLM": ("granite", _llama),
    "Starcoder2ForCausalLM": ("starcoder2", _starcoder2),
    "OPTForCausalLM": ("opt", _opt),
    "Qwen2_5_VLForConditionalGeneration": ("qwen2.5-vl", _qwen2_5_vl),
    "Qwen3VLMoeForConditionalGeneration": ("qwen3-vl-moe", _qwen3_vl_moe),
    "Exaone4ForCausalLM": ("exaone4", _exaone4),
    "HunYuanMoEV1ForCausalLM": ("hunyuan-moe", _hunyuan_moe),
    "LlavaForConditionalGeneration": ("llava", _llava),
    "SmolLM3ForCausalLM": ("smollm3", _smollm3),
}


def supported_architectures() -> list[str]:
    return list(_READERS)


def from_hf_config(path: str | Path) -> ModelSpec:
    """A ModelSpec from a local Hugging Face config.json (or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    data = read_mapping(path)
    archs = data.get("architectures")
    names = [archs] if isinstance(archs, str) else archs if isinstance(archs, list) else []
    arch = next((a for a in names if isinstance(a, str) and a in _READERS), None)
    if arch is None:
        shown = "(missing)" if not archs else ", ".join(map(str, names)) if names else repr(archs)
        raise SpecError(f"{path}: field architectures: {shown} is not supported; "
                        f"supported: {', '.join(_READERS)}")
    family, reader = _READERS[arch]
    fields = reader(_Config(data, path, arch))
    name = data.get("_name_or_path")
    if not isinstance(name, str) or not name.strip():
        name = path.resolve().parent.name or path.stem
    fields = {"name": name.strip(), "family": family,
              "source": f"Hugging Face config.json ({arch}): {path}", **fields}
    return _parse(fields, str(path))
