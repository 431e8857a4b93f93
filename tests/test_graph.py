import networkx as nx
import numpy as np
import pytest

from perfsim import graph, load_model
from perfsim.dtypes import nbytes
from perfsim.errors import PerfsimError
from perfsim.ops import Attention, Gemm, MoEExperts


def _matrix_flops(g) -> float:
    return sum(op.flops for op in graph.ops_of(g) if isinstance(op, (Gemm, Attention, MoEExperts)))


def test_prefill_flops_by_hand(tiny_model):
    g = graph.build(tiny_model, "prefill", batch=1, seq=8)
    # per layer: qkv 64*192 + o 64*64 + gated MLP 3*64*128 = 40960 weights; 2 layers; 2 FLOPs per MAC, 8 tokens
    linear = 2 * 8 * 2 * 40960
    lm_head = 2 * 1 * 64 * 100                # logits of the last token only
    attention = 2 * 2 * 4 * 36 * (16 + 16)   # 2 layers x 4 heads x 36 causal pairs x (QK + PV) dims
    assert _matrix_flops(g) == linear + lm_head + attention


def test_decode_flops_by_hand(tiny_model):
    g = graph.build(tiny_model, "decode", batch=3, context=10)
    linear = 2 * 3 * 2 * 40960 + 2 * 3 * 64 * 100
    attention = 2 * 2 * 3 * 4 * 11 * 32      # each new token sees 10 cached + itself
    assert _matrix_flops(g) == linear + attention


def test_graph_is_a_dag_of_typed_ops(tiny_model):
    g = graph.build(tiny_model, "train", batch=2, seq=16)
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    passes = {d["pass"] for _, d in g.nodes(data=True)}
    assert passes == {"fwd", "bwd", "opt"}
    kinds = {d["op"].kind for _, d in g.nodes(data=True)}
    assert {"gemm", "attention", "norm", "add", "rotary", "activation", "embedding", "optimizer"} <= kinds


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3.1-8b", "mixtral-8x7b", "qwen3-30b-a3b"])
def test_training_is_six_n_tokens_plus_attention(name):
    m = load_model(name)
    seq, batch = 1024, 2
    g = graph.build(m, "train", batch=batch, seq=seq)
    tokens = batch * seq
    attention_fwd = 2 * batch * m.num_layers * m.num_heads * seq * (seq + 1) / 2 * (m.qk_head_dim + m.v_head_dim)
    expected = 6 * m.params_non_embedding * tokens + 3.5 * attention_fwd   # fwd + 2.5x FA2 backward
    assert _matrix_flops(g) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("name", ["llama-2-7b", "mistral-7b", "mixtral-8x7b", "deepseek-v3"])
def test_decode_is_two_n_active_plus_kv_reads(name):
    m = load_model(name)
    batch, context = 4, 2048
    g = graph.build(m, "decode", batch=batch, context=context)
    assert _matrix_flops(g) >= 2 * m.params_non_embedding * batch * 0.97
    kv_bytes = sum(op.cold_bytes for op in graph.ops_of(g) if isinstance(op, Attention))
    window = m.sliding_window or context + 1
    per_layer_tokens = [min(context + 1, window) if i < m.sliding_layers else context + 1
                        for i in range(m.num_layers)]
    expected_kv = batch * sum(per_layer_tokens) * m.kv_cache_elems_per_token_layer() * 2
    assert kv_bytes == pytest.approx(expected_kv, rel=0.05)


@pytest.mark.parametrize("weight_dtype, bits", [("bf16", 16), ("fp8", 8), ("fp4", 4.5), ("int4", 4)])
def test_weights_are_read_at_their_stored_size_block_scales_included(tiny_model, weight_dtype, bits):
    # NVFP4 stores one FP8 scale per 16 four-bit values: 4.5 bits per weight; the LM head stays 16-bit
    g = graph.build(tiny_model, "decode", batch=1, context=10, weight_dtype=weight_dtype)
    weight_reads = sum(op.cold_bytes for op in graph.ops_of(g) if isinstance(op, Gemm))
    assert weight_reads == pytest.approx(2 * 40960 * bits / 8 + 64 * 100 * 2)


@pytest.mark.parametrize("dtype", ["fp8", "fp4"])
def test_quantized_models_keep_head_and_routers_in_16_bits(dtype):
    m = load_model("qwen3-30b-a3b")
    g = graph.build(m, "decode", batch=8, context=100, dtype=dtype)
    gemms = {op.name: op for op in graph.ops_of(g) if isinstance(op, Gemm)}
    assert gemms["lm_head"].dtype == gemms["router"].dtype == "bf16" and gemms["lm_head"].weight_dtype is None
    assert gemms["qkv_proj"].dtype == dtype
    from perfsim.cost.memory import weight_bytes
    kept = m.unquantized_params()
    assert weight_bytes(m, dtype) == pytest.approx((m.params_total - kept) * nbytes(dtype) + 2 * kept)


def test_moe_touches_only_active_experts_per_token():
    m = load_model("mixtral-8x7b")
    g = graph.build(m, "decode", batch=1, context=100)
    moe = [op for op in graph.ops_of(g) if isinstance(op, MoEExperts)]
    assert len(moe) == m.num_layers
    assert moe[0].experts_touched == pytest.approx(2.0)  # one token, top-2


def test_tensor_parallel_splits_work_and_adds_all_reduces():
    m = load_model("llama-2-7b")
    g1 = graph.build(m, "prefill", batch=1, seq=512)
    g4 = graph.build(m, "prefill", batch=1, seq=512, tp=4)
    assert _matrix_flops(g4) == pytest.approx(_matrix_flops(g1) / 4, rel=0.01)
    coll = [op for op in graph.ops_of(g4) if op.kind == "collective"]
    assert len(coll) == 2 * m.num_layers


@pytest.mark.parametrize("kwargs, field", [
    (dict(task="decode", batch=0, context=5), "batch"),
    (dict(task="decode", batch=1), "context"),
    (dict(task="prefill", batch=1), "seq"),
    (dict(task="prefill", batch=1, seq=10**6), "seq"),
    (dict(task="decode", batch=1, context=10**6), "context"),
    (dict(task="serve", batch=1, seq=4), "task"),
    (dict(task="prefill", batch=1, seq=4, dtype="fp7"), "dtype"),
    (dict(task="prefill", batch=1, seq=4, tp=3), "tp"),
    (dict(task="prefill", batch=1, seq=4, ep=2), "ep"),
])
def test_bad_requests_name_the_field(kwargs, field):
    with pytest.raises(PerfsimError) as exc:
        graph.build("llama-2-7b", **kwargs)
    assert str(exc.value).startswith(field) and "\n" not in str(exc.value)


@pytest.mark.parametrize("alpha", ["power_law_1.01", "power_law_1.2"])
@pytest.mark.parametrize("tokens,experts,top_k", [(4096, 256, 8), (1024, 128, 8), (64, 8, 2)])
def test_power_law_routing_skews_load_onto_the_busiest_rank(alpha, tokens, experts, top_k):
    from perfsim.ops import routing_probabilities
    whole = routing_probabilities(top_k, experts, experts, alpha, tokens)
    assert (whole <= 1).all() and whole[0] == whole.max()
    assert tokens * whole.sum() <= tokens * top_k * (1 + 1e-9)  # clipping at one token per expert loses load
    balanced = MoEExperts(tokens=tokens, hidden=64, inter=64, top_k=top_k, num_experts=experts // 8,
                          total_experts=experts)
    skewed = MoEExperts(tokens=tokens, hidden=64, inter=64, top_k=top_k, num_experts=experts // 8,
                        total_experts=experts, distribution=alpha)
    assert skewed.local_assignments > balanced.local_assignments  # the busiest rank holds the heaviest expert


@pytest.mark.parametrize("tokens", [1, 64, 4096])
def test_power_law_draws_keep_every_assignment_and_measure_the_busiest_rank(tokens):
    """As aiconfigurator's collector: each draw routes exactly T k assignments, and the device is the rank
    that received the most, so it holds more than an average rank."""
    from perfsim.ops import routing_loads
    whole = routing_loads(8, 256, 256, "power_law_1.01", tokens)
    assert np.allclose(whole.sum(axis=1), tokens * 8) and (whole >= 0).all()
    assert (np.diff(whole, axis=1) <= 0).all()                    # most loaded first
    rank = routing_loads(8, 256, 32, "power_law_1.01", tokens)    # ep = 8
    assert rank.sum(axis=1).mean() >= tokens * 8 / 8
    assert (rank <= tokens).all()


def test_interleaved_moe_layers_alternate_with_dense_ones():
    m = load_model("llama-4-maverick")  # interleave_moe_layer_step 2: layers 1, 3, 5, ... carry the experts
    assert [m.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    g = graph.build(m, "decode", batch=1, context=100)
    moe = [op for op in graph.ops_of(g) if isinstance(op, MoEExperts)]
    assert len(moe) == m.num_moe_layers == m.num_layers // 2
    assert 390e9 < m.params_total < 410e9 and 16e9 < m.params_active < 18e9  # Meta: 400B total, 17B active


def test_moe_per_token_passes_do_not_shrink_with_expert_parallelism():
    """Routing and the finalize's T output rows cost T x hidden x token_bytes on every EP rank."""
    from perfsim.cost.gemm import DeviceRoofs
    from perfsim.cost.moe import moe_time
    from perfsim.cost.params import MoEParams
    from perfsim.hardware import load_device
    dev = load_device("h100-sxm")
    roofs, peak = DeviceRoofs.of(dev), dev.peak_flops(dev.compute_dtype("bf16"))
    tokens, hidden = 4096.0, 4096.0
    for ep in (1, 8, 64):
        args = (tokens, hidden, 1536.0, 8, 128, 128 // ep, 1.0, 2.0, 2.0, peak, roofs)
        without = moe_time(*args, MoEParams(token_bytes=0.0))[0]
        with_ = moe_time(*args, MoEParams(token_bytes=2.0))[0]
        expected = tokens * hidden * 2.0 / (roofs.main_bw * MoEParams().memory_efficiency)
        assert with_ - without == pytest.approx(expected, rel=1e-9)


def test_served_moe_routing_reaches_the_expected_experts():
    """Graphs cost MoE under uniform random routing: a small batch reads the E (1 - (1 - k/E)^T) experts it is
    expected to reach (63% of them when T k = E), where the collector's round-robin 'balanced' rows read
    min(E, T k); a large batch reaches them all either way, so prefill and training do not change."""
    from perfsim.cost.moe import _routed
    op = next(d["op"] for _, d in graph.build(load_model("deepseek-v3"), "decode", 32, context=100).nodes(data=True)
              if isinstance(d["op"], MoEExperts))
    assert op.distribution == graph.SERVED_ROUTING == "uniform"
    hit = float(_routed(32.0, 8, 256, 32, "uniform")[1][0, 0])
    assert hit == pytest.approx(32 * (1 - (1 - 8 / 256) ** 32))
    assert 0.62 < hit / 32 < 0.65 and float(_routed(32.0, 8, 256, 32, "balanced")[1][0, 0]) == 32
    assert float(_routed(4096.0, 8, 256, 32, "uniform")[1][0, 0]) == pytest.approx(32)


@pytest.mark.parametrize("top_k,experts,ep", [(8, 256, 4), (8, 256, 8), (2, 8, 4), (4, 128, 16)])
def test_all_to_all_reaches_each_rank_once(top_k, experts, ep):
    """Serving's MoE dispatch sends a token once per rank holding any of its experts: the expected count of
    such ranks under uniform routing matches a direct draw of top-k experts per token."""
    from perfsim.ops import ranks_reached
    rng = np.random.default_rng(0)
    picks = np.argsort(rng.random((20000, experts)), axis=1)[:, :top_k]
    drawn = np.mean([len(set(row)) for row in picks // (experts // ep)])
    assert ranks_reached(top_k, experts, ep) == pytest.approx(drawn, rel=0.02)
    assert 1.0 <= ranks_reached(top_k, experts, ep) <= min(top_k, ep)
    assert ranks_reached(top_k, experts, 1) == 1.0


def test_inference_dispatch_sends_a_token_once_per_rank_training_once_per_expert():
    from perfsim.ops import Collective, ranks_reached
    spec = load_model("deepseek-v3")

    def dispatch(task, **kw):
        g = graph.build(spec, task, 4, ep=8, **kw)
        return next(d["op"] for _, d in g.nodes(data=True)
                    if isinstance(d["op"], Collective) and d["op"].name == "moe_dispatch")
    decode = dispatch("decode", context=100)
    assert decode.size_bytes == pytest.approx(4 * ranks_reached(8, 256, 8) * spec.hidden_size * 2)
    train = dispatch("train", seq=16)
    assert train.size_bytes == pytest.approx(4 * 16 * 8 * spec.hidden_size * 2)


@pytest.mark.parametrize("dtype, dispatch_bytes_per_element", [("bf16", 2.0), ("fp8", 1.0), ("fp4", 4.5 / 8)])
def test_inference_dispatches_tokens_in_the_expert_gemms_input_format_and_combines_in_bf16(
        dtype, dispatch_bytes_per_element):
    """Engines quantize a token before dispatch when the expert GEMMs take quantized inputs (TensorRT-LLM's
    post-quant all-to-all, DeepEP's FP8 dispatch); the expert outputs come back in bf16. Training stays bf16."""
    from perfsim.ops import Collective
    spec = load_model("deepseek-v3")

    def sizes(task, **kw):
        g = graph.build(spec, task, 4, ep=8, dtype=dtype, **kw)
        return {d["op"].name: d["op"].size_bytes for _, d in g.nodes(data=True)
                if isinstance(d["op"], Collective) and d["op"].name in ("moe_dispatch", "moe_combine")}
    decode = sizes("decode", context=100)
    assert decode["moe_dispatch"] / decode["moe_combine"] == pytest.approx(dispatch_bytes_per_element / 2.0)
    if dtype != "fp4":   # training runs in 16 bits or fp8, never fp4
        train = sizes("train", seq=16)
        assert train["moe_dispatch"] == pytest.approx(train["moe_combine"])


def test_gated_deltanet_layers_replace_attention_and_its_kv_cache():
    from perfsim.cost.memory import kv_cache_bytes, recurrent_state_bytes
    from perfsim.ops import GatedDeltaRule
    m = load_model("qwen3-next-80b-a3b")   # 12 x (3 Gated DeltaNet + 1 gated attention)
    assert m.num_linear_layers == 36 and m.num_attention_layers == 12
    assert [m.is_linear_layer(i) for i in range(4)] == [True, True, True, False]
    for task, kw in (("prefill", {"seq": 512}), ("decode", {"context": 4096})):
        ops = graph.ops_of(graph.build(m, task, 4, **kw))
        delta = [op for op in ops if isinstance(op, GatedDeltaRule)]
        assert len(delta) == 36 and len([op for op in ops if isinstance(op, Attention)]) == 12
        assert all(op.recurrent == (task == "decode") for op in delta)
    dec = next(op for op in graph.ops_of(graph.build(m, "decode", 4, context=4096)) if isinstance(op, GatedDeltaRule))
    # decode streams each sequence's 32 x 128 x 128 fp32 state in and out, whatever its context
    assert dec.cold_bytes == 4 * 32 * 128 * 128 * 4
    assert dec.flops == 4 * 32 * 7 * 128 * 128
    # the KV cache holds the 12 attention layers only (2 KV heads of 256); the states are a fixed 72 MiB + conv
    assert kv_cache_bytes(m, 1, 1000) == 12 * 1000 * 2 * 2 * 256 * 2
    assert recurrent_state_bytes(m, 1) == 36 * (32 * 128 * 128 * 4 + (2 * 16 * 128 + 32 * 128) * 3 * 2)
    # the gated attention's q_proj is twice as wide (query and gate)
    qkv = next(op for op in graph.ops_of(graph.build(m, "prefill", 1, seq=8)) if op.name == "qkv_proj")
    assert qkv.n == (2 * 16 + 2 * 2) * 256


def test_chunked_delta_rule_work_grows_linearly_with_the_prompt():
    from perfsim.ops import GatedDeltaRule
    one = GatedDeltaRule(tokens=4096, batch=1, num_k_heads=16, num_v_heads=32, k_dim=128, v_dim=128)
    two = GatedDeltaRule(tokens=8192, batch=1, num_k_heads=16, num_v_heads=32, k_dim=128, v_dim=128)
    assert two.flops == 2 * one.flops     # no quadratic term: the state carries the past
    # per token and head: 2C(3 dk + 2 dv) inside the chunk plus 6 dk dv across chunks (C = 64)
    assert one.flops == 4096 * 32 * (2 * 64 * (3 * 128 + 2 * 128) + 6 * 128 * 128)
    with pytest.raises(PerfsimError, match="tp"):
        graph.build("qwen3-next-80b-a3b", "decode", 1, context=8, tp=32)


def test_mamba2_hybrid_layers_hold_one_block_each():
    from perfsim.cost.memory import kv_cache_bytes, recurrent_state_bytes
    from perfsim.ops import SSDScan
    m = load_model("nemotron-nano-12b-v2")   # "M-M-M-M*-...": 28 Mamba-2, 28 MLP, 6 attention layers
    ops = graph.ops_of(graph.build(m, "decode", 8, context=1024))
    scans = [op for op in ops if isinstance(op, SSDScan)]
    assert len(scans) == 28 and all(op.recurrent for op in scans)
    assert len([op for op in ops if isinstance(op, Attention)]) == 6
    assert len([op for op in ops if op.name == "mlp_up"]) == 28
    assert not [op for op in ops if op.name == "rope"]                      # no positional encoding
    assert len([op for op in ops if op.kind == "norm" and op.name != "gated_norm"]) == 62 + 1  # one per layer, final
    # decode reads and writes each sequence's 128 heads x 80 channels x 128 states (fp32) per Mamba-2 layer
    assert scans[0].cold_bytes == 8 * 128 * 80 * 128 * 4 and scans[0].flops == 8 * 128 * 5 * 128 * 80
    assert kv_cache_bytes(m, 1, 100) == 6 * 100 * 2 * 8 * 128 * 2
    assert recurrent_state_bytes(m, 1) == 28 * (128 * 80 * 128 * 4 + (10240 + 2 * 8 * 128) * 3 * 2)
    prefill = [op for op in graph.ops_of(graph.build(m, "prefill", 1, seq=1024)) if isinstance(op, SSDScan)]
    # chunked SSD: 2Q(N + P) inside a chunk of Q = 128 plus 4NP across chunks, per token and head
    assert prefill[0].flops == 1024 * 128 * (2 * 128 * (128 + 80) + 4 * 128 * 80)
    with pytest.raises(PerfsimError, match="Mamba-2 groups"):
        graph.build(m, "decode", 1, context=8, tp=5)   # 5 divides the 40 attention heads, not the 8 groups


def test_deepseek_sparse_attention_reads_its_top_k_keys_and_scores_all():
    from perfsim.cost.memory import kv_cache_bytes
    from perfsim.ops import IndexerScores
    v3, v32 = load_model("deepseek-v3"), load_model("deepseek-v3.2")
    ops = graph.ops_of(graph.build(v32, "decode", 4, context=100_000))
    scores = [op for op in ops if isinstance(op, IndexerScores)]
    attention = [op for op in ops if type(op) is Attention]
    assert len(scores) == len(attention) == 61
    # MLA reads the 2048 selected latents of each sequence; the indexer scores all 100,001 FP8 index keys
    assert attention[0].kv_tokens_read == 2048
    assert scores[0].cold_bytes == 4 * 100_001 * 128 and scores[0].flops == 2 * 4 * 64 * 100_001 * 128
    # KV cache: the MLA latent (bf16) plus a 128-byte FP8 index key and its fp32 scale, per token and layer
    assert kv_cache_bytes(v32, 1, 10) - kv_cache_bytes(v3, 1, 10) == 61 * 10 * (128 + 4)
    # the indexer adds wq_b, wk (+ LayerNorm) and weights_proj to every layer
    assert v32.params_total - v3.params_total == 61 * (1536 * 64 * 128 + 7168 * 128 + 2 * 128 + 7168 * 64)


def test_kimi_delta_attention_layers_between_mla_layers():
    from perfsim.cost.memory import kv_cache_bytes
    from perfsim.ops import GatedDeltaRule
    m = load_model("kimi-linear-48b-a3b")   # 20 KDA layers, MLA (no positional encoding) at 3, 7, ..., 23, 26
    ops = graph.ops_of(graph.build(m, "decode", 4, context=1000))
    kda = [op for op in ops if isinstance(op, GatedDeltaRule)]
    assert len(kda) == 20 and len([op for op in ops if type(op) is Attention]) == 7
    assert kda[0].gates == 128 + 1                      # a decay per channel and one beta per head
    assert len([op for op in ops if op.name == "decay_up"]) == 20 and not [op for op in ops if op.name == "rope"]
    assert kv_cache_bytes(m, 1, 1000) == 7 * 1000 * (512 + 64) * 2   # MLA latents of the 7 MLA layers only


def test_lightning_attention_layers_scan_with_a_fixed_decay():
    from perfsim.ops import SSDScan
    m = load_model("minimax-m1-80k")   # 7 lightning layers, then 1 softmax layer, ten times
    ops = graph.ops_of(graph.build(m, "decode", 2, context=4000))
    scans = [op for op in ops if isinstance(op, SSDScan)]
    assert len(scans) == 70 and len([op for op in ops if type(op) is Attention]) == 10
    assert scans[0].gates == 0 and scans[0].num_k_heads == scans[0].num_v_heads == 64
    assert not [op for op in ops if op.name == "short_conv"]
    assert len([op for op in ops if op.name == "output_gate"]) == 70
    prefill = next(op for op in graph.ops_of(graph.build(m, "prefill", 1, seq=1024)) if isinstance(op, SSDScan))
    assert prefill.chunk == 256 and prefill.flops == 1024 * 64 * (2 * 256 * (128 + 128) + 4 * 128 * 128)


def test_sandwich_norms_and_the_shared_expert_gate_are_ops():
    names = [op.name for op in graph.ops_of(graph.build("gemma-2-9b", "decode", batch=2, context=64))]
    assert names.count("post_mixer_norm") == names.count("post_mlp_norm") == 42
    names = [op.name for op in graph.ops_of(graph.build("qwen2-57b-a14b", "decode", batch=2, context=64))]
    assert names.count("shared_expert_gate") == 28
    names = [op.name for op in graph.ops_of(graph.build("llama-3.1-8b", "decode", batch=2, context=64))]
    assert "post_mixer_norm" not in names and "shared_expert_gate" not in names
