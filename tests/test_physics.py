"""Property tests: no prediction beats the roofline; more bandwidth or compute never predicts slower."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perfsim
from perfsim.cost.roofline import roofline
from perfsim.model import model_names
from perfsim.ops import Attention, Elementwise, GatedDeltaRule, Gemm, IndexerScores, MoEExperts

H100 = perfsim.load_hardware("h100-sxm")

dims = st.integers(min_value=1, max_value=16384)
dtypes = st.sampled_from(["bf16", "fp16", "fp8", "fp32", "int8"])
gemms = st.builds(lambda m, n, k, d: Gemm(m=m, n=n, k=k, dtype=d), dims, dims, dims, dtypes)
attentions = st.builds(
    lambda b, q, extra, kvh, group, d: Attention(batch=b, q_len=q, kv_len=q + extra, num_heads=kvh * group,
                                                 num_kv_heads=kvh, head_dim=d),
    st.integers(1, 64), st.integers(1, 4096), st.integers(0, 8192), st.integers(1, 16), st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([64, 128]))
elementwise = st.builds(lambda n, r: Elementwise(elements=n, reads=r), st.integers(1, 10**9), st.sampled_from([1, 2]))
decodes = st.builds(
    lambda b, kv, kvh, group, w, d: Attention(batch=b, q_len=1, kv_len=kv, num_heads=kvh * group, num_kv_heads=kvh,
                                           head_dim=d, window=w),
    st.integers(1, 512), st.integers(1, 131072), st.integers(1, 16), st.sampled_from([1, 4, 8, 32, 64]),
    st.sampled_from([None, 128, 4096]), st.sampled_from([64, 128, 256]))
experts = st.builds(
    lambda t, e, k, ep, dist, w: MoEExperts(tokens=t, hidden=4096, inter=1536, top_k=k, num_experts=e // ep,
                                            total_experts=e, distribution=dist, weight_dtype=w),
    st.integers(1, 16384), st.sampled_from([8, 64, 256]), st.sampled_from([1, 2, 8]), st.sampled_from([1, 8]),
    st.sampled_from(["balanced", "power_law_1.01", "power_law_1.2"]),
    st.sampled_from([None, "fp8", "mxfp4", "int4_g32", "fp4"]))   # weight-only and checkpoint-native formats
delta_rules = st.builds(
    lambda b, q, nk, group, rec: GatedDeltaRule(tokens=b * (1 if rec else q), batch=b, num_k_heads=nk,
                                                num_v_heads=nk * group, k_dim=128, v_dim=128, recurrent=rec),
    st.integers(1, 256), st.integers(1, 8192), st.sampled_from([1, 4, 16]), st.sampled_from([1, 2, 4]),
    st.booleans())
indexers = st.builds(
    lambda b, q, extra: IndexerScores(batch=b, q_len=q, kv_len=q + extra, num_heads=64, num_kv_heads=1, head_dim=128,
                                      v_head_dim=1, kv_shared_by_heads=True, dtype="fp8", kv_dtype="fp8"),
    st.integers(1, 64), st.sampled_from([1, 7, 512, 4096]), st.integers(0, 65536))
any_op = st.one_of(gemms, attentions, decodes, experts, elementwise, delta_rules, indexers)
scale = st.floats(min_value=1.0, max_value=8.0)


def _faster(device, bw: float = 1.0, flops: float = 1.0):
    memory = [lvl.model_copy(update={"bandwidth": lvl.bandwidth * bw}) for lvl in device.memory]
    compute = device.compute.model_copy(update={
        "peak": {k: v * flops for k, v in device.compute.peak.items()},
        "vector": {k: v * flops for k, v in device.compute.vector.items()}})
    return device.model_copy(update={"memory": memory, "compute": compute})


@settings(max_examples=200, deadline=None)
@given(any_op)
def test_no_op_beats_its_roofline(op):
    cost = perfsim.op_time(op, H100)
    llc = H100.last_level_cache
    hot = op.bytes - op.cold_bytes
    main, cached = (op.cold_bytes, hot) if hot <= llc.capacity else (op.bytes, 0.0)
    bound = max(op.flops / (H100.peak_flops(op.dtype) if op.matrix else H100.vector_flops(op.dtype)),
                main / H100.memory_bw_Bps, cached / llc.bandwidth)
    assert cost.time_s >= bound * (1 - 1e-9)
    assert cost.time_s >= roofline(op, H100).time_s * (1 - 1e-9)


@pytest.mark.parametrize("profile", [None, "auto"])  # pure roofline and the calibrated model
@settings(max_examples=150, deadline=None)
@given(op=any_op, bw=scale, fl=scale)
def test_more_bandwidth_or_compute_never_slower(profile, op, bw, fl):
    base = perfsim.op_time(op, H100, profile=profile).time_s
    assert perfsim.op_time(op, _faster(H100, bw=bw), profile=profile).time_s <= base * (1 + 1e-9)
    assert perfsim.op_time(op, _faster(H100, flops=fl), profile=profile).time_s <= base * (1 + 1e-9)


@pytest.mark.parametrize("device", ["mi300x", "b200"])   # the H100 profile carried over by achievable matmul share
@settings(max_examples=60, deadline=None)
@given(op=any_op, bw=scale, fl=scale)
def test_transferred_profile_obeys_the_roofline_and_speedups(device, op, bw, fl):
    dev = perfsim.load_hardware(device)
    base = perfsim.op_time(op, dev).time_s
    assert base >= roofline(op, dev).time_s * (1 - 1e-9)
    faster = _faster(dev, flops=fl)
    faster = faster.model_copy(update={"compute": faster.compute.model_copy(update={
        "mamf": {k: v * fl for k, v in dev.compute.mamf.items()}})})
    assert perfsim.op_time(op, faster).time_s <= base * (1 + 1e-9)
    assert perfsim.op_time(op, _faster(dev, bw=bw)).time_s <= base * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(dims, dims, dims, st.integers(2, 8))
def test_gemm_flops_scale_linearly(m, n, k, factor):
    assert Gemm(m=m * factor, n=n, k=k).flops == factor * Gemm(m=m, n=n, k=k).flops
    assert Gemm(m=m, n=n, k=k).flops == 2 * m * n * k


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4096), st.integers(1, 8))
def test_causal_prefill_flops_are_quadratic(seq, factor):
    def flops(s):
        return Attention(batch=1, q_len=s, kv_len=s, num_heads=1, num_kv_heads=1, head_dim=64).flops
    assert flops(seq) == 2 * 128 * seq * (seq + 1) / 2
    assert flops(seq * factor) >= flops(seq) * factor


@pytest.mark.parametrize("model", ["llama-2-7b", "nemotron-nano-9b-v2"])   # attention; a Mamba-2 hybrid
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 64), st.integers(0, 4000), scale, scale)
def test_predict_never_slower_with_more_bandwidth(model, batch, context, bw, fl):
    for task, kw in (("decode", {"context": context}), ("prefill", {"seq": context + 1})):
        base = perfsim.predict(model, H100, task=task, batch=batch, **kw).latency_s
        for faster in (_faster(H100, bw=bw), _faster(H100, flops=fl)):
            assert perfsim.predict(model, faster, task=task, batch=batch, **kw).latency_s <= base * (1 + 1e-9)


@settings(max_examples=60, deadline=None)
@given(dyn=st.floats(0.0, 5e3), t=st.floats(1e-4, 10.0), more=st.floats(0.0, 5e3), gpus=st.integers(1, 8))
def test_power_cap_stretches_a_run_and_conserves_energy(dyn, t, more, gpus):
    """Under the TDP the run keeps its time; above it the clocks throttle: the run stretches until its
    power fits, its switching energy unchanged, and more switching energy never makes it shorter."""
    from perfsim.cost.energy import run_energy
    from perfsim.hardware import load_device
    dev = load_device("h200-sxm")
    energy, power, t2 = run_energy(dyn, t, dev, gpus)
    assert t2 >= t and power <= dev.power.tdp * gpus * (1 + 1e-9)
    assert energy == pytest.approx(dyn + dev.power.idle * t2 * gpus)
    assert run_energy(dyn + more, t, dev, gpus)[2] >= t2
    ideal = run_energy(dyn, t, dev, gpus, throttle=False)
    assert ideal[2] == t and ideal[0] == pytest.approx(dyn + dev.power.idle * t * gpus)


@pytest.mark.parametrize("dist", ["balanced", "uniform"])
@settings(max_examples=80, deadline=None)
@given(t=st.integers(1, 8192), more=st.integers(1, 4096), e=st.sampled_from([8, 64, 256, 512]),
       k=st.sampled_from([1, 2, 8]), formats=st.sampled_from([("bf16", None), ("fp8", None), ("bf16", "mxfp4")]))
def test_more_tokens_never_make_the_experts_faster(dist, t, more, e, k, formats):
    """The grouped GEMM's M tile grows with the tokens per expert, and the rows a tile wastes with it: never
    enough to make more tokens cheaper."""
    dtype, weights = formats

    def time(tokens):
        return perfsim.op_time(MoEExperts(tokens=tokens, hidden=4096, inter=1536, top_k=k, num_experts=e,
                                          total_experts=e, dtype=dtype, weight_dtype=weights, distribution=dist),
                               H100).time_s
    assert time(t + more) >= time(t) * (1 - 1e-9)


def test_moe_tile_follows_the_tokens_per_expert():
    from perfsim.cost.moe import TILE_M, TILE_M_MIN, _routed
    for tokens, expected in ((32, TILE_M_MIN), (32 * 24, 32.0), (32 * 100, TILE_M), (32 * 1000, TILE_M)):
        # 256 experts, top-8: tokens / 32 tokens reach each expert under balanced routing
        assert float(_routed(tokens, 8, 256, 256, "balanced")[3][0, 0]) == expected


@settings(max_examples=12, deadline=None, derandomize=True)
@given(model=st.sampled_from(["llama-3.1-8b", "qwen3-30b-a3b"]), policy=st.sampled_from(["chunked", "continuous"]),
       isl=st.integers(16, 2048), osl=st.integers(2, 300), load=st.integers(1, 48),
       closed=st.booleans(), faster_memory=st.booleans(), f=scale)
def test_served_fleet_never_slower_on_a_faster_gpu(model, policy, isl, osl, load, closed, faster_memory, f):
    """The whole simulated server, not only its steps: the same requests on a GPU with more bandwidth or compute
    finish no later on average (mean end-to-end latency) and are served at no lower throughput. Iteration-level
    schedulers only: static batching is not monotone (a faster GPU starts a batch with fewer requests, and the
    next arrivals wait for its longest sequence), as a random search found, e.g. 8x the compute at 3 req/s."""
    from perfsim.serving import serve
    arrivals = {"concurrency": load} if closed else {"rate": float(load)}
    kw = dict(isl=isl, osl=osl, num_requests=100, length_spread=0.5, policy=policy, **arrivals)
    fast = _faster(H100, bw=f) if faster_memory else _faster(H100, flops=f)
    base, quick = serve(model, H100, **kw).summary, serve(model, fast, **kw).summary
    assert quick["e2e_s"] <= base["e2e_s"] * (1 + 1e-3)
    assert quick["throughput_tokens_per_s"] >= base["throughput_tokens_per_s"] * (1 - 1e-3)


@pytest.mark.parametrize("name", model_names())
def test_every_shipped_model_obeys_its_whole_model_roofline(name):
    """Whole-model bounds on one H100: a batch-1 decode step streams every active weight from HBM at least once,
    and a prefill does at least 2 x active parameters FLOPs per token at the BF16 peak."""
    m = perfsim.load_model(name)
    hbm = next(level.bandwidth for level in H100.memory if level.name == "hbm")
    decode = perfsim.predict(m, H100, task="decode", batch=1, context=min(1024, m.max_seq_len - 1)).latency_s
    assert decode >= m.params_non_embedding * 2 / hbm
    seq = min(512, m.max_seq_len)
    prefill = perfsim.predict(m, H100, task="prefill", batch=1, seq=seq).latency_s
    assert prefill >= 2 * m.params_non_embedding * seq / H100.compute.peak["bf16"]


@settings(max_examples=10, deadline=None, derandomize=True)
@given(policy=st.sampled_from(["chunked", "continuous"]), isl=st.integers(64, 4096), osl=st.integers(2, 200),
       load=st.integers(1, 32), closed=st.booleans(), share=st.floats(0.0, 0.95))
def test_a_prefix_cache_never_slows_the_server(policy, isl, osl, load, closed, share):
    """Serving part of every prompt from the prefix cache only removes prefill work: mean end-to-end latency and
    throughput are no worse than computing every prompt whole."""
    from perfsim.serving import serve
    arrivals = {"concurrency": load} if closed else {"rate": float(load)}
    kw = dict(isl=isl, osl=osl, num_requests=80, policy=policy, **arrivals)
    whole = serve("llama-3.1-8b", H100, **kw).summary
    cached = serve("llama-3.1-8b", H100, prefix_len=int(share * (isl - 1)), **kw).summary
    assert cached["e2e_s"] <= whole["e2e_s"] * (1 + 1e-3)
    assert cached["throughput_tokens_per_s"] >= whole["throughput_tokens_per_s"] * (1 - 1e-3)


@settings(max_examples=12, deadline=None)
@given(policy=st.sampled_from(["chunked", "continuous", "static"]), isl=st.integers(16, 4096),
       osl=st.integers(2, 4096), seqs=st.integers(1, 2048), util=st.floats(0.5, 0.9), spread=st.floats(0.0, 0.9))
def test_reserved_admission_never_preempts(policy, isl, osl, seqs, util, spread):
    """Admission 'reserve' (TensorRT-LLM's GUARANTEED_NO_EVICT) holds every admitted request's whole sequence: an
    offline flood of long requests on a small cache runs without a single preemption and never over-fills the
    cache, whatever the batching, lengths and batch limit."""
    from perfsim.serving import serve
    s = serve("llama-3.1-8b", H100, isl=isl, osl=osl, rate=1e6, num_requests=64, length_spread=spread,
              policy=policy, max_num_seqs=seqs, gpu_memory_utilization=util, admission="reserve").summary
    assert s["preemptions"] == 0 and s["kv_peak_fraction"] <= 1.0
