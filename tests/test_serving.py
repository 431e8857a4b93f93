"""Serving simulation: event-loop invariants, arrivals, schedulers, KV cache, disaggregation, power cap,
energy and cost outputs, the CLI contract, the deployment search and validation floors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from perfsim.errors import InvalidInputError, PerfsimError
from perfsim.serving import arrivals, serve
from perfsim.serving.energy import footprint, run_footprint
from perfsim.serving.steptime import StepModel, make_deployment

SMALL = dict(model="llama-3.1-8b", hardware="h100-sxm")


def _check_invariants(res) -> None:
    per = res.per_request
    assert np.all(per["first_token_s"] >= 0) and np.all(per["finish_s"] >= 0), "every request completes"
    assert np.all(per["first_token_s"] >= per["arrival_s"] - 1e-12)
    assert np.all(per["finish_s"] >= per["first_token_s"] - 1e-12)
    assert np.all(per["ttft_s"] <= per["e2e_s"] + 1e-12)
    assert res.summary["kv_peak_fraction"] <= 1.0 + 1e-12


@pytest.mark.parametrize("policy", ["chunked", "continuous", "static"])
def test_every_request_completes_and_ttft_within_e2e(policy):
    res = serve(**SMALL, isl=512, osl=64, rate=20.0, num_requests=300, length_spread=0.5, policy=policy)
    _check_invariants(res)
    s = res.summary
    assert s["num_requests"] == 300 and s["ttft_p50_s"] <= s["ttft_p99_s"] <= s["e2e_p99_s"]
    assert s["throughput_tokens_per_s"] > 0 and s["energy_per_token_j"] > 0


def test_closed_loop_never_exceeds_concurrency():
    res = serve(**SMALL, isl=256, osl=32, concurrency=12, num_requests=200, length_spread=0.3)
    _check_invariants(res)
    assert res.summary["max_in_flight"] == 12
    # ramped clients: the same bound, and the first requests start spread out
    ramped = serve(**SMALL, isl=256, osl=32, concurrency=12, num_requests=100, ramp="auto")
    assert ramped.summary["max_in_flight"] <= 12
    assert ramped.per_request["arrival_s"][11] > ramped.per_request["arrival_s"][0]


def test_tiny_kv_cache_preempts_and_stays_within_capacity():
    res = serve(**SMALL, isl=1024, osl=512, concurrency=48, num_requests=150, gpu_memory_utilization=0.23)
    _check_invariants(res)
    pool = res.config["pools"][0]
    assert pool["kv_tokens_per_engine"] < 48 * (1024 + 512), "the cache is smaller than the load"
    assert res.summary["preemptions"] > 0
    assert res.per_request["preemptions"].sum() == res.summary["preemptions"]


def test_request_too_long_for_the_cache_is_rejected():
    with pytest.raises(InvalidInputError, match="isl"):
        serve(**SMALL, isl=30000, osl=1000, concurrency=1, num_requests=2, gpu_memory_utilization=0.23)


def test_poisson_and_gamma_arrival_statistics():
    w = arrivals.poisson(rate=5.0, n=20000, isl=100, osl=10, seed=1)
    gaps = np.diff(np.concatenate([[0.0], w.arrival_s]))
    assert gaps.mean() == pytest.approx(1 / 5.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)          # exponential: CV 1
    counts = np.histogram(w.arrival_s, bins=np.arange(0, w.arrival_s[-1], 10.0))[0]
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.15)      # Poisson counts: dispersion 1
    b = arrivals.gamma(rate=5.0, cv=3.0, n=20000, isl=100, osl=10, seed=1)
    gaps = np.diff(np.concatenate([[0.0], b.arrival_s]))
    assert gaps.mean() == pytest.approx(1 / 5.0, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.15)


def test_trace_files(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("timestamp,input_tokens,output_tokens\n2.0,100,10\n1.0,50,5\n3.5,80,1\n")
    w = arrivals.trace(csv)
    assert list(w.arrival_s) == [0.0, 1.0, 2.5] and list(w.input_len) == [50, 100, 80]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"arrival_s": 0, "input_len": 64, "output_len": 8}\n{"arrival_s": 0.5, "input_len": 32, '
                     '"output_len": 1}\n')
    res = serve(**SMALL, trace=str(jsonl))
    _check_invariants(res)
    assert res.summary["num_requests"] == 2
    with pytest.raises(InvalidInputError, match="trace: not a file"):
        arrivals.trace(tmp_path)   # a folder
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,prompt,completion\n1,2,3\n")   # no input-length column it knows
    with pytest.raises(InvalidInputError, match="trace"):
        arrivals.trace(bad)


def test_public_traces_read_in_their_own_formats(tmp_path):
    # Azure LLM inference 2023/2024 (Azure/AzurePublicDataset): date-times with 100 ns ticks
    azure = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    azure.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                     "2023-11-16 18:15:50.9951690,396,109\n2023-11-16 18:15:47.0000000,879,17\n")
    w = arrivals.trace(azure)
    assert w.arrival_s == pytest.approx([0.0, 0.31941, 4.314579]) and list(w.input_len) == [374, 879, 396]
    # BurstGPT: seconds, spaced column names
    burst = tmp_path / "BurstGPT_1.csv"
    burst.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                     "5,ChatGPT,472,18,490,Conversation log\n45,GPT-4,1087,230,1317,Conversation log\n")
    w = arrivals.trace(burst)
    assert list(w.arrival_s) == [0.0, 40.0] and list(w.output_len) == [18, 230]
    # Mooncake: JSONL, timestamps in milliseconds
    moon = tmp_path / "mooncake.jsonl"
    moon.write_text('{"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [0, 1]}\n'
                    '{"timestamp": 2500, "input_length": 6472, "output_length": 26, "hash_ids": [0, 2]}\n')
    assert list(arrivals.trace(moon, time_unit="ms").arrival_s) == [0.0, 2.5]
    with pytest.raises(InvalidInputError, match="trace-time-unit"):
        arrivals.trace(moon, time_unit="minutes")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"timestamp": 0, "input_length": 10, "output_length": 2}\n[1, 2]\n')
    with pytest.raises(InvalidInputError, match=r"mixed.jsonl:2 is not a JSON object"):
        arrivals.trace(mixed)
    bad = tmp_path / "bad_times.csv"
    bad.write_text("timestamp,input_tokens,output_tokens\nyesterday,10,2\n")
    with pytest.raises(InvalidInputError, match="arrival times"):
        arrivals.trace(bad)


@pytest.mark.parametrize("row, what", [
    ("0,inf,2", "not a finite number"), ("0,1e308,2", "not a finite number"), ("0,10,inf", "not a finite number"),
    ("1e308,10,2", r"would span 1e\+308 s"),   # a span no workload has: a unit mistake
])
def test_trace_values_out_of_range_are_one_line_errors(tmp_path, row, what):
    path = tmp_path / "t.csv"
    path.write_text(f"arrival_s,input_len,output_len\n0,10,2\n{row}\n")
    with pytest.raises(InvalidInputError, match=what) as err:
        arrivals.trace(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("policy", ["chunked", "continuous"])
def test_a_shared_prompt_prefix_is_computed_once_per_engine(policy):
    kw = dict(**SMALL, isl=2048, osl=32, rate=4.0, num_requests=60, policy=policy)
    cold = serve(**kw)
    warm = serve(**kw, prefix_len=1536)
    _check_invariants(warm)
    hits = warm.per_request["cached_tokens"]
    assert hits[0] == 0 and np.all(hits[1:] == 1536)          # one engine: only the first request computes it
    assert warm.summary["prefix_cache_hit_rate"] == pytest.approx(1536 * 59 / (2048 * 60))
    assert cold.summary["prefix_cache_hit_rate"] == 0.0
    assert warm.summary["ttft_s"] < 0.5 * cold.summary["ttft_s"]
    for bad in (-1, 2048, 1.5):
        with pytest.raises(InvalidInputError, match="prefix-len"):
            serve(**kw, prefix_len=bad)


def _most_decoding(per) -> int:
    events = sorted([(t, 1) for t in per["first_token_s"]] + [(t, -1) for t in per["finish_s"]])
    return int(np.max(np.cumsum([d for _, d in events])))


def test_a_shared_prefix_holds_its_kv_blocks_once():
    # an L4 holds the KV of only 4 whole 8k-token requests next to Llama-3.1-8B's weights; a 7680-token shared
    # prefix leaves each request 640 tokens of its own, so many more decode at once
    kw = dict(**{**SMALL, "hardware": "l4"}, isl=8192, osl=128, concurrency=48, num_requests=150)
    cold, warm = serve(**kw), serve(**kw, prefix_len=7680)
    _check_invariants(cold)
    _check_invariants(warm)
    whole = cold.config["pools"][0]["kv_tokens_per_engine"] // (8192 + 128)
    assert _most_decoding(cold.per_request) <= whole < 3 * whole < _most_decoding(warm.per_request)


def test_trace_prefix_hits_from_cached_tokens_or_mooncake_hash_ids(tmp_path):
    moon = tmp_path / "mooncake.jsonl"   # 512-token blocks: the second request shares its first two blocks
    moon.write_text('{"timestamp": 0, "input_length": 1500, "output_length": 8, "hash_ids": [1, 2, 3]}\n'
                    '{"timestamp": 100, "input_length": 1800, "output_length": 8, "hash_ids": [1, 2, 9, 10]}\n'
                    '{"timestamp": 200, "input_length": 600, "output_length": 8, "hash_ids": [7, 1]}\n'
                    '{"timestamp": 300, "input_length": 1024, "output_length": 8, "hash_ids": [1, 2]}\n')
    w = arrivals.trace(moon, time_unit="ms")
    assert list(w.cached_len) == [0, 1024, 0, 1024]
    per = serve(**SMALL, trace=str(moon), trace_time_unit="ms").per_request
    assert list(per["cached_tokens"]) == [0, 1024, 0, 1023]    # the last prompt token is always recomputed
    table = tmp_path / "cached.csv"
    table.write_text("arrival_s,input_len,output_len,cached_tokens\n0,1000,4,0\n1,1000,4,900\n2,500,4,\n")
    assert list(arrivals.trace(table).cached_len) == [0, 900, 0]
    table.write_text("arrival_s,input_len,output_len,cached_tokens\n0,1000,4,-3\n")
    with pytest.raises(InvalidInputError, match="cached tokens"):
        arrivals.trace(table)


@pytest.mark.parametrize("router", ["round_robin", "least_loaded"])
def test_routers_spread_a_burst_evenly_and_least_loaded_follows_the_load(tmp_path, router):
    burst = tmp_path / "burst.csv"
    burst.write_text("arrival_s,input_len,output_len\n" + "0,256,8\n" * 8)
    res = serve(model="llama-3.1-8b", hardware="dgx-h100", num_gpus=4, trace=str(burst), router=router)
    _check_invariants(res)
    assert res.config["router"] == router and np.bincount(res.per_request["engine"], minlength=4).tolist() == [2] * 4
    # one long request holds engine 0: least_loaded sends the short ones elsewhere, round robin does not
    skew = tmp_path / "skew.csv"
    skew.write_text("arrival_s,input_len,output_len\n0,256,2000\n" +
                    "".join(f"{0.5 + 0.01 * i},256,4\n" for i in range(8)))
    engines = serve(model="llama-3.1-8b", hardware="dgx-h100", num_gpus=4, trace=str(skew), router=router)\
        .per_request["engine"]
    on_first = int(np.sum(engines[1:] == 0))
    assert on_first == (0 if router == "least_loaded" else 2)


def test_unknown_router_names_the_flag():
    with pytest.raises(InvalidInputError, match="router"):
        serve(**SMALL, rate=1.0, num_requests=5, router="random")


def test_multi_turn_sessions_grow_their_prompts_and_cache_the_conversation():
    w = arrivals.conversations(rate=2.0, turns=3, think_s=5.0, n=9, isl=100, osl=50, seed=1)
    assert sorted(w.input_len.tolist()) == [100] * 3 + [250] * 3 + [400] * 3
    assert np.all(w.cached_len == w.input_len - 100) and np.all(np.diff(w.arrival_s) >= 0)
    kw = dict(**SMALL, rate=4.0, isl=300, osl=100, num_requests=200)
    chat = serve(**kw, turns=4, think_time=10.0)
    _check_invariants(chat)
    load = chat.per_request
    assert chat.summary["prefix_cache_hit_rate"] == pytest.approx(
        np.sum(np.minimum(load["cached_tokens"], load["input_len"] - 1)) / np.sum(load["input_len"]))
    assert chat.summary["prefix_cache_hit_rate"] > 0.5
    from dataclasses import replace
    same = arrivals.conversations(4.0, 4, 10.0, 200, 300, 100, seed=0)
    uncached = serve(**SMALL, trace=replace(same, cached_len=None))
    assert chat.summary["ttft_s"] < uncached.summary["ttft_s"]
    for bad in (dict(concurrency=4, turns=2), dict(rate=1.0, turns=2), dict(rate=1.0, turns=0, think_time=1.0)):
        with pytest.raises(InvalidInputError, match="turns"):
            serve(**SMALL, num_requests=10, **bad)


def test_trace_requests_sharing_a_timestamp_share_a_batch(tmp_path):
    """An offline trace (every request at t = 0) is one prefill batch, not one prompt and then the rest."""
    trace = tmp_path / "offline.csv"
    trace.write_text("timestamp,input_tokens,output_tokens\n" + "0,512,4\n" * 12)
    per = serve(**SMALL, trace=str(trace), policy="continuous").per_request
    assert np.allclose(per["first_token_s"], per["first_token_s"][0])


def test_a_trace_without_arrival_times_is_an_offline_batch(tmp_path):
    lengths = tmp_path / "samples.csv"
    lengths.write_text("input_length,output_length\n300,20\n100,5\n")
    w = arrivals.trace(lengths)
    assert list(w.arrival_s) == [0.0, 0.0] and list(w.input_len) == [300, 100] and w.kind.startswith("offline")
    res = serve(**SMALL, trace=str(lengths))
    _check_invariants(res)


def test_saturated_throughput_counts_tokens_made_between_first_completion_and_last_first_token():
    from perfsim.serving.metrics import saturated_throughput
    # two requests: 11 tokens over [0, 10] s (first token at 0) and 21 tokens over [5, 25] s
    first, finish, osl = np.array([0.0, 5.0]), np.array([10.0, 25.0]), np.array([11.0, 21.0])
    # window [first completion 10, last first token 5] is empty: no saturated phase
    assert np.isnan(saturated_throughput(first, finish, osl))
    first, finish = np.array([0.0, 12.0]), np.array([10.0, 32.0])
    # window [10, 12]: only request 1's first token falls in it
    assert saturated_throughput(first, finish, osl) == pytest.approx(1 / 2)
    first, finish, osl = np.array([0.0, 0.0, 20.0]), np.array([10.0, 40.0, 30.0]), np.array([11.0, 41.0, 11.0])
    # window [10, 20]: request 2 makes 1 token per second, request 3 its first token
    assert saturated_throughput(first, finish, osl) == pytest.approx((10 + 1) / 10)


def test_chunked_prefill_smooths_token_gaps():
    """Long prompts stall decodes under prefill-first batching; small chunks (Sarathi-Serve) keep gaps short."""
    common = dict(**SMALL, isl=4096, osl=128, rate=3.0, num_requests=200)
    whole = serve(**common, policy="continuous").summary
    chunked = serve(**common, policy="chunked", max_num_batched_tokens=512).summary
    assert chunked["itl_p99_s"] < 0.5 * whole["itl_p99_s"]
    assert chunked["tpot_p99_s"] < whole["tpot_p99_s"]


def test_engines_batch_their_own_way_unless_told():
    """SGLang runs a waiting prefill batch before any decode, up to its chunked prefill size (8192 tokens on an
    80 GB H100, 16384 on a B200); vLLM chunks at 8192 on large GPUs, 2048 on an A100 or a smaller GPU."""
    from perfsim.hardware import load_device
    from perfsim.serving.scheduler import engine_batching, engine_max_seqs
    from perfsim.serving.simulate import SchedulerConfig
    assert SchedulerConfig(engine="sglang").policy == "continuous"
    assert (SchedulerConfig().policy, SchedulerConfig().token_budget) == ("chunked", 8192)
    told = SchedulerConfig(policy="static", max_num_batched_tokens=1024, engine="sglang")
    assert (told.policy, told.token_budget) == ("static", 1024)
    h100, b200, a100, l4 = (load_device(n) for n in ("h100-sxm", "b200", "a100-sxm-80gb", "l4"))
    assert [engine_batching("sglang", d)[1] for d in (h100, b200, a100, l4)] == [8192, 16384, 8192, 2048]
    assert [engine_batching("vllm", d)[1] for d in (h100, b200, a100, l4)] == [8192, 8192, 2048, 2048]
    assert [engine_max_seqs("vllm", d) for d in (h100, a100)] == [1024, 256]
    # SGLang's request pool (at least 2048) is the server's, shared by its DP-attention ranks
    assert [engine_max_seqs("sglang", b200, adp) for adp in (1, 8)] == [2048, 256]
    assert engine_max_seqs("sglang", b200, 1, recurrent_states=True) == 256   # states reserved per sequence
    assert engine_batching("trtllm", a100)[1] == 8192
    # SGLang's chunked prefill size is the server's: DP attention splits it over the ranks; vLLM's is per rank
    assert [engine_batching("sglang", b200, adp)[1] for adp in (1, 4, 8)] == [16384, 4096, 2048]
    assert engine_batching("vllm", b200, 8)[1] == 8192
    common = dict(**SMALL, isl=1024, osl=32, concurrency=32, num_requests=128)
    sgl = serve(**common, engine="sglang")
    assert (sgl.config["policy"], sgl.config["max_num_batched_tokens"]) == ("continuous", 8192)
    # 32 prompts arrive at once: four prefill batches of 8 run back to back before the first decode step
    per = sgl.per_request
    first = np.sort(per["first_token_s"][per["arrival_s"] == 0.0])
    assert len(first) == 32 and np.isclose(first[0], first[7]) and first[8] > first[7]
    next_batch = first[8] - first[7]
    assert np.all(np.diff(np.sort(per["first_token_s"]))[:31] <= next_batch * 1.01 + 1e-9)  # no decode in between
    assert serve(**common, engine="vllm").config["policy"] == "chunked"


def test_engines_size_their_kv_cache_their_own_way():
    """vLLM keeps 0.9 of the GPU, TensorRT-LLM gives the KV cache 0.9 of what the weights leave, SGLang keeps
    its mem_fraction_static (on an 80 GB H100 at tp 1: 512 + 8192 x 1.5 + 256 x 2 + 128 MiB, at least 10 GiB)."""
    from perfsim.hardware import load_device
    from perfsim.serving.scheduler import engine_memory
    h100 = load_device("h100-sxm")
    assert engine_memory("vllm", h100) == (0.9, None)
    assert engine_memory("trtllm", h100) == (1.0, 0.9)
    mib = h100.memory_bytes / 2**20
    assert engine_memory("sglang", h100)[0] == pytest.approx((mib - (512 + 8192 * 1.5 + 512 + 128)) / mib, abs=1e-3)
    common = dict(**SMALL, isl=512, osl=32, concurrency=8, num_requests=16)
    kv = {e: serve(**common, engine=e).config["pools"][0]["kv_tokens_per_engine"] for e in ("vllm", "trtllm", "sglang")}
    assert kv["sglang"] < kv["vllm"] < kv["trtllm"]


def test_engines_store_the_kv_cache_their_checkpoints_quantize():
    """ModelOpt checkpoints (NVFP4; FP8 for models released in BF16) carry FP8 KV scales that TensorRT-LLM and vLLM
    follow; a publisher's own FP8 release and SGLang keep a 16-bit cache; a given --kv-dtype wins."""
    from perfsim.model import load_model
    from perfsim.serving.scheduler import engine_kv_dtype
    llama, deepseek = load_model("llama-3.1-8b"), load_model("deepseek-v3")
    assert [engine_kv_dtype(llama, "fp4", e) for e in ("trtllm", "vllm", "sglang", "none")] == ["fp8", "fp8", None,
                                                                                                  None]
    assert [engine_kv_dtype(llama, "fp8", e) for e in ("trtllm", "vllm", "sglang")] == ["fp8", None, None]
    assert engine_kv_dtype(deepseek, "fp8", "trtllm") is None
    assert engine_kv_dtype(llama, "bf16", "trtllm") is None
    common = dict(**SMALL, isl=512, osl=32, concurrency=8, num_requests=16, dtype="fp8")
    pool = {e: serve(**common, engine=e).config["pools"][0] for e in ("trtllm", "vllm")}
    assert (pool["trtllm"]["kv_dtype"], pool["vllm"]["kv_dtype"]) == ("fp8", "bf16")
    told = serve(**common, engine="trtllm", kv_dtype="bf16").config["pools"][0]
    assert told["kv_dtype"] == "bf16" and told["kv_tokens_per_engine"] < pool["trtllm"]["kv_tokens_per_engine"]


def test_static_batching_waits_for_the_batch():
    common = dict(**SMALL, isl=256, osl=128, rate=30.0, num_requests=200)
    static = serve(**common, policy="static").summary
    continuous = serve(**common, policy="chunked").summary
    assert static["ttft_p90_s"] > continuous["ttft_p90_s"]


def test_disaggregation_transfers_kv():
    res = serve("llama-3.1-70b", "dgx-h100", num_gpus=8, tp=4, isl=2048, osl=64, rate=2.0, num_requests=100,
                disagg="4:4")
    _check_invariants(res)
    s = res.summary
    assert s["kv_transfer_s"] > 0
    assert [p["role"] for p in res.config["pools"]] == ["prefill", "decode"]
    # the decode pool never prefills: TPOT is free of prefill interference
    agg = serve("llama-3.1-70b", "dgx-h100", num_gpus=8, tp=4, isl=2048, osl=64, rate=2.0, num_requests=100).summary
    assert s["tpot_p99_s"] < agg["tpot_p99_s"]
    # a mixed fleet moves the KV over the NICs: slower than NVLink inside one node
    mixed = serve("llama-3.1-70b", "dgx-h100", num_gpus=8, tp=4, isl=2048, osl=64, rate=2.0, num_requests=50,
                  disagg="4:4", decode={"hardware": "hgx-h200"}).summary
    assert mixed["kv_transfer_s"] > s["kv_transfer_s"]


def test_disaggregated_first_token_streams_from_the_decode_side(tmp_path):
    """As Dynamo, SGLang and TensorRT-LLM's disaggregated servers do: the client sees the first token once the
    decode engine holds the KV, so a slower KV link adds its whole transfer time to TTFT."""
    trace = tmp_path / "one.csv"
    trace.write_text("timestamp,input_tokens,output_tokens\n0,2048,16\n")
    common = dict(model="llama-3.1-70b", hardware="dgx-h100", num_gpus=8, tp=4, trace=str(trace), disagg="4:4",
                  engine="trtllm")
    near = serve(**common)
    far = serve(**common, decode={"hardware": "hgx-h200"})   # KV over the NICs instead of NVLink
    extra = far.summary["kv_transfer_s"] - near.summary["kv_transfer_s"]
    assert extra > 0
    assert far.per_request["ttft_s"][0] - near.per_request["ttft_s"][0] == pytest.approx(extra, rel=1e-6)


def test_a_vllm_decode_engine_recomputes_the_first_token(tmp_path, monkeypatch):
    """vLLM's KV connectors drop the token the prefill sampled and generate it again on the decode side: the
    client waits one more decode step for its first token, and the request one more step to finish."""
    import perfsim.serving.simulate as sim
    trace = tmp_path / "one.csv"
    trace.write_text("timestamp,input_tokens,output_tokens\n0,2048,16\n")
    common = dict(model="llama-3.1-70b", hardware="dgx-h100", num_gpus=8, tp=4, trace=str(trace), disagg="4:4",
                  engine="none")
    streamed = serve(**common).per_request
    monkeypatch.setattr(sim, "RECOMPUTES_FIRST_TOKEN", {"none"})
    recomputed = serve(**common).per_request
    step = make_deployment("llama-3.1-70b", "dgx-h100", tp=4)
    one = StepModel(step, max_tokens=8192, max_seqs=8, max_context=4096).decode(1, 2048)[0]
    assert recomputed["ttft_s"][0] - streamed["ttft_s"][0] == pytest.approx(one, rel=0.05)
    assert recomputed["e2e_s"][0] - streamed["e2e_s"][0] == pytest.approx(one, rel=0.05)


def test_attention_dp_and_expert_parallel_layout():
    dep = make_deployment("deepseek-v3", "hgx-h200", tp=1, ep=8, dtype="fp8")
    assert dep.attn_dp == 8 and dep.gpus == 8 and dep.moe_tp == 1
    with pytest.raises(InvalidInputError, match="ep"):
        make_deployment("llama-3.1-70b", "dgx-h100", tp=4, ep=2)
    with pytest.raises(InvalidInputError, match="hardware"):
        make_deployment("llama-3.1-8b", "h100-sxm", tp=2)


def test_step_model_matches_predict():
    from perfsim import predict
    dep = make_deployment("llama-3.1-8b", "h100-sxm")
    sm = StepModel(dep, max_tokens=4096, max_seqs=128, max_context=4096, profile="none")
    for b, c in ((1, 100), (64, 2000)):
        est = predict("llama-3.1-8b", "h100-sxm", task="decode", batch=b, context=c, profile=None)
        assert sm.decode(b, c)[0] == pytest.approx(est.latency_s, rel=0.02)
    est = predict("llama-3.1-8b", "h100-sxm", task="prefill", batch=1, seq=1000, profile=None)
    assert sm.prefill([1000])[0] == pytest.approx(est.latency_s, rel=0.03)


def test_power_cap_throttles_and_caps_power():
    common = dict(model="llama-3.1-70b", hardware="dgx-h100", num_gpus=4, tp=4, isl=512, osl=128, concurrency=32,
                  num_requests=96)
    free = serve(**common).summary
    capped = serve(**common, power_limit="330W").summary
    assert capped["power_cap_w"] == 330.0
    assert capped["avg_power_per_gpu_w"] <= 330.0 + 1e-6
    assert capped["throttle_slowdown"] > 1.0
    assert capped["tpot_s"] > free["tpot_s"]
    with pytest.raises(InvalidInputError, match="power-limit"):
        serve(**common, power_limit="50W")


def test_energy_carbon_and_cost_outputs():
    res = serve(**SMALL, isl=256, osl=64, rate=5.0, num_requests=100, price_per_gpu_hour=2.0, grid_intensity=0.5)
    s = res.summary
    assert s["kwh"] == pytest.approx(s["energy_j"] / 3.6e6)
    assert s["co2e_kg"] == pytest.approx(s["kwh"] * 0.5)
    assert s["cost_usd"] == pytest.approx(s["makespan_s"] / 3600 * 2.0)
    assert s["energy_per_token_j"] == pytest.approx(s["energy_j"] / res.per_request["output_len"].sum())
    assert s["avg_power_w"] <= 700.0 + 1e-6          # one H100: never above its TDP
    fp = footprint(3.6e6, 3600.0, 2, 1.5, grid_kg_per_kwh=0.4, pue=1.2)
    assert fp["kwh"] == pytest.approx(1.2) and fp["co2e_kg"] == pytest.approx(0.48) and fp["cost_usd"] == 3.0


def test_training_run_footprint():
    from perfsim import predict
    est = predict("llama-2-7b", "h100-sxm", task="train", batch=1, seq=1024)
    fp = run_footprint(est, steps=100, price_per_gpu_hour=3.0)
    assert fp["energy_j"] > 0 and fp["duration_s"] == pytest.approx(100 * fp["step_time_s"])
    capped = run_footprint(est, steps=100, power_limit="300W")
    assert capped["avg_power_w"] <= 300.0 + 1e-6 and capped["step_time_s"] >= fp["step_time_s"]


@pytest.mark.parametrize("kwargs, flag", [
    (dict(rate=1.0, concurrency=2), "concurrency"),
    (dict(rate=-1.0), "rate"),
    (dict(rate=1.0, num_gpus=3, tp=2, hardware="dgx-h100"), "num-gpus"),
    (dict(rate=1.0, disagg="1:x"), "disagg"),
    (dict(rate=1.0, policy="fifo"), "policy"),
    (dict(rate=1.0, isl=0), "isl"),
    (dict(rate=1.0, length_spread=2.0), "length-spread"),
    (dict(rate=1.0, isl=200_000), "isl"),
    (dict(rate=1.0, slo_ttft=-1.0), "slo-ttft"),
    (dict(rate=1.0, slo_tpot=0.0), "slo-tpot"),
    (dict(rate=1.0, recv_interval=0), "recv-interval"),
    (dict(rate=1.0, num_requests=10**12), "num-requests"),   # bounded before any array is allocated
    (dict(rate=1.0, price_per_gpu_hour=-2.0), "price-per-gpu-hour"),
    (dict(rate=1.0, price_per_gpu_hour=float("nan")), "price-per-gpu-hour"),
    (dict(rate=1.0, grid_intensity=float("inf")), "grid-intensity"),
    (dict(rate=1.0, pue=float("nan")), "pue"),
    (dict(rate=float("inf")), "rate"),
    (dict(rate=1.0, burstiness=float("inf")), "burstiness"),          # a ZeroDivisionError before
    (dict(rate=1.0, turns=3, think_time=float("inf")), "think-time"),  # an endless run before
    (dict(concurrency=2, ramp=float("nan")), "ramp"),
    (dict(rate=1.0, power_limit="1e309W"), "power-limit"),
])
def test_bad_input_names_the_flag(kwargs, flag):
    args = {**SMALL, "num_requests": 5, **kwargs}
    with pytest.raises(PerfsimError, match=flag):
        serve(**args)


def _cli(argv, capsys):
    from perfsim import cli
    from perfsim.commands import serve as serve_cmd
    if not any(getattr(c, "name", None) == "serve" for c in cli.app.registered_commands):
        serve_cmd.register(cli.app)
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_contract(capsys):
    code, out, _ = _cli(["serve", "--model", "llama-3.1-8b", "--hardware", "dgx-h100", "--num-gpus", "2",
                         "--isl", "256", "--osl", "32", "--rate", "4", "--num-requests", "50",
                         "--price-per-gpu-hour", "2.5", "--grid-intensity", "0.3", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    for key in ("ttft_s", "tpot_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s",
                "tpot_p99_s", "e2e_s", "e2e_p99_s", "throughput_tokens_per_s", "goodput", "energy_per_token_j",
                "avg_power_w", "kwh", "co2e_kg", "cost_usd"):
        assert key in data, key
    assert data["config"]["pools"][0]["replicas"] == 2


def test_cli_bad_input_exits_2(capsys):
    code, _, err = _cli(["serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--rate", "1",
                         "--power-limit", "lots"], capsys)
    assert code == 2 and "power-limit" in err and "Traceback" not in err
    for argv in (["--disagg", "1:1", "--disagg-handoff", "-1"], ["--disagg-handoff", "0.1"]):
        code, _, err = _cli(["serve", "--model", "llama-3.1-8b", "--hardware", "dgx-h100", "--num-gpus", "2",
                             "--rate", "1", *argv], capsys)
        assert code == 2 and "disagg" in err and "Traceback" not in err


def test_plan_serve_finds_cheapest_deployment_meeting_slos():
    from perfsim.serving.plan import plan_serving
    res = plan_serving("llama-3.1-8b", "dgx-h100", isl=512, osl=128, rate=8.0, slo_ttft=0.5, slo_tpot=0.05,
                       num_requests=150, disagg=False)
    assert res.plans, res.skipped
    best = res.plans[0]
    assert best.rank == 1 and best.meets_slo and best.slo_attainment >= 0.9
    costs = [p.cost_per_hour_usd for p in res.plans]
    assert costs == sorted(costs)


def test_plan_serve_with_a_shared_prefix_needs_no_more_gpus():
    from perfsim.serving.plan import plan_serving
    kw = dict(isl=4096, osl=128, rate=20.0, slo_ttft=0.3, num_requests=150, disagg=False)
    whole = plan_serving("llama-3.1-8b", "dgx-h100", **kw).plans[0]
    cached = plan_serving("llama-3.1-8b", "dgx-h100", prefix_len=3000, **kw).plans[0]
    assert cached.num_gpus <= whole.num_gpus and cached.cost_per_hour_usd <= whole.cost_per_hour_usd
    with pytest.raises(InvalidInputError, match="prefix-len"):
        plan_serving("llama-3.1-8b", "dgx-h100", prefix_len=4096, **kw)


def test_plan_serve_simulates_the_engine_it_is_asked_for(monkeypatch):
    import perfsim.serving.plan as plan_mod
    seen = []
    real = plan_mod._evaluate

    def spy(model, spec_kwargs, common, systems):
        res = real(model, spec_kwargs, common, systems)
        seen.append((common["engine"], res.config["policy"], res.config["max_num_batched_tokens"]))
        return res
    monkeypatch.setattr(plan_mod, "_evaluate", spy)
    res = plan_mod.plan_serving("llama-3.1-8b", "dgx-h100", isl=512, osl=64, rate=4.0, slo_tpot=0.05,
                                num_requests=100, disagg=False, engine="sglang")
    assert res.plans and seen and all(s == ("sglang", "continuous", 8192) for s in seen)   # H100: 8192
    seen.clear()
    monkeypatch.setattr(plan_mod, "_evaluate", lambda model, spec_kwargs, common, systems: seen.append(common) or
                        real(model, spec_kwargs, common, systems))
    plan_mod.plan_serving("llama-3.1-8b", "dgx-h100", isl=512, osl=64, rate=4.0, num_requests=100, disagg=False,
                          engine="vllm", async_scheduling=False)
    assert seen and all(c["engine"] == "vllm" and c["async_scheduling"] is False for c in seen)
    with pytest.raises(InvalidInputError, match="engine"):
        plan_mod.plan_serving("llama-3.1-8b", "dgx-h100", isl=512, osl=64, rate=4.0, engine="tgi")


def test_plan_serve_ties_on_price_go_to_the_faster_decode():
    """1 x tp4 and 2 x tp2 cost the same per hour (their float sums differ in the last bit): lower TPOT first."""
    from perfsim.serving.plan import plan_serving
    res = plan_serving("llama-3.1-70b", "dgx-b200", isl=1024, osl=256, rate=10.0, slo_ttft=0.2, slo_tpot=0.05,
                       disagg=False)
    tied = 0
    for a, b in zip(res.plans, res.plans[1:], strict=False):
        if abs(a.cost_per_hour_usd - b.cost_per_hour_usd) < 0.005:
            tied += 1
            assert a.tpot_p90_s <= b.tpot_p90_s, (a.fleet, b.fleet)
    assert tied


def test_validation_floors():
    """Generous floors on the measured serving data (skipped where the data is not present)."""
    from perfsim.errors import DataError
    from perfsim.serving.validation import validate_mlenergy, validate_silicon
    try:
        sil = validate_silicon(max_requests=300)
        mle, fits = validate_mlenergy()
    except DataError as exc:
        pytest.skip(f"measured serving data not available: {exc}")
    assert sil.scores["rows"] >= 15 and sil.scores["tpot_mape"] < 0.6
    assert mle.scores["itl_mape_test"] < 0.6 and mle.scores["energy_per_token_mape_test"] < 0.6
    assert set(fits) == {"h100-sxm", "b200"}


def test_host_overhead_adds_per_step_and_per_sequence():
    from perfsim.serving.host import HostOverhead, host_overhead
    dep = make_deployment("llama-3.1-8b", "h100-sxm")
    bare = StepModel(dep, max_tokens=2048, max_seqs=128, max_context=2048, profile="none")
    host = HostOverhead(step_s=1e-3, per_seq_s=50e-6)
    loaded = StepModel(dep, max_tokens=2048, max_seqs=128, max_context=2048, profile="none", host=host)
    for n in (1, 37, 128):
        assert loaded.decode(n, 500)[0] - bare.decode(n, 500)[0] == pytest.approx(host.time(n), rel=1e-9)
    mixed = loaded.mixed(10, 500, [(256, 256)], 11)[0] - bare.mixed(10, 500, [(256, 256)], 11)[0]
    assert mixed == pytest.approx(host.time(11), rel=1e-9)
    assert host_overhead("none") == HostOverhead()
    with pytest.raises(InvalidInputError, match="engine"):
        host_overhead("tgi")
    with pytest.raises(InvalidInputError, match="host overhead"):
        HostOverhead(per_seq_s=-1.0)


def test_async_scheduling_overlaps_the_host_with_the_gpu():
    from perfsim.serving.host import HostOverhead, host_overhead
    dep = make_deployment("llama-3.1-8b", "h100-sxm")
    bare = StepModel(dep, max_tokens=2048, max_seqs=128, max_context=2048, profile="none")
    for host in (HostOverhead(1e-3, 50e-6, overlapped=True), HostOverhead(0.5, 0.0, overlapped=True)):
        loaded = StepModel(dep, max_tokens=2048, max_seqs=128, max_context=2048, profile="none", host=host)
        for n in (1, 37, 128):   # two pipelined stages: the slower one paces the steps
            assert loaded.decode(n, 500)[0] == pytest.approx(max(bare.decode(n, 500)[0], host.time(n)), rel=1e-9)
        mixed = loaded.mixed(10, 500, [(256, 256)], 11)[0]
        assert mixed == pytest.approx(max(bare.mixed(10, 500, [(256, 256)], 11)[0], host.time(11)), rel=1e-9)
    assert host_overhead("vllm").overlapped and not host_overhead("vllm", async_scheduling=False).overlapped
    common = dict(**SMALL, isl=256, osl=64, concurrency=32, num_requests=64, engine="vllm")
    sync = serve(**common, async_scheduling=False).summary
    overlapped = serve(**common).summary
    gpu_only = serve(**{**common, "engine": "none"}).summary
    assert gpu_only["tpot_s"] <= overlapped["tpot_s"] < sync["tpot_s"]


def test_engine_versions_that_schedule_asynchronously():
    from perfsim.serving.host import schedules_async
    assert schedules_async("vllm", "0.18.0") and schedules_async("vllm", "0.14.0") and schedules_async("vllm", "1.0")
    assert not schedules_async("vllm", "0.12.0") and not schedules_async("vllm", "0.9.0.2")
    assert schedules_async("vllm") and schedules_async("vllm", None)   # current releases
    assert schedules_async("trtllm", "1.2.0rc6") and schedules_async("trtllm", "1.0")   # overlap scheduler default
    assert not schedules_async("sglang", "0.5.9")


def test_pipeline_stages_each_pay_the_host_and_tensorrt_llm_pipelines_do_not_overlap():
    from perfsim.serving.host import host_overhead
    trt = host_overhead("trtllm")
    # NVIDIA/TensorRT-LLM PR 10273: 45.11 and 44.53 ms of host time per iteration at 1536 sequences per rank
    assert trt.time(1536) == pytest.approx(0.5 * (45.11e-3 + 44.53e-3), rel=1e-3) and trt.overlapped
    for engine in ("trtllm", "vllm"):
        one, four = host_overhead(engine), host_overhead(engine, pp=4)
        assert four.time(100) == pytest.approx(4 * one.time(100), rel=1e-12)   # every stage handles every microbatch
    assert host_overhead("vllm", pp=4).overlapped and not host_overhead("trtllm", pp=4).overlapped
    assert not host_overhead("trtllm", async_scheduling=True, pp=2).overlapped   # the pipeline loop has no overlap
    common = dict(model="llama-3.1-8b", hardware="rtx-pro-6000-pcie-8x", num_gpus=4, pp=4, isl=256, osl=64,
                  concurrency=64, num_requests=128)
    trt_pp = serve(**common, engine="trtllm")
    gpu_only = serve(**common, engine="none").summary
    assert trt_pp.config["host_overhead"]["per_seq_s"] == pytest.approx(4 * trt.per_seq_s)
    assert not trt_pp.config["host_overhead"]["overlapped"] and trt_pp.summary["tpot_s"] > gpu_only["tpot_s"]


def test_fit_host_recovers_known_coefficients():
    import pandas as pd

    from perfsim.serving.validation import fit_host
    rng = np.random.default_rng(1)
    n = rng.integers(1, 512, 60)
    gpu = rng.uniform(5e-3, 50e-3, 60)
    rows = pd.DataFrame({"seqs_per_rank": n, "itl_gpu_s": gpu, "itl_measured_s": gpu + 2e-3 + 30e-6 * n})
    host = fit_host(rows)
    assert host.step_s == pytest.approx(2e-3, rel=1e-6) and host.per_seq_s == pytest.approx(30e-6, rel=1e-6)


def test_receive_interval_delays_first_tokens_by_about_half_its_steps():
    """SGLang's --scheduler-recv-interval N: a request that reaches a decoding engine waits for its next receive, on
    average about N / 2 decode steps, at most N; decoding itself is as fast as before, and N = 1 changes nothing."""
    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", engine="sglang", isl=512, osl=400, length_spread=0.5,
              concurrency=8, num_requests=200, timeline_bins=1)
    base = serve(**kw).summary
    assert serve(**kw, recv_interval=1).summary["ttft_s"] == base["ttft_s"]
    step = base["tpot_s"]
    for n in (10, 30):
        s = serve(**kw, recv_interval=n).summary
        extra = (s["ttft_s"] - base["ttft_s"]) / step
        assert 0.25 * n < extra < n + 1, (n, extra)
        assert s["tpot_s"] == pytest.approx(step, rel=0.05)


def test_engine_none_is_gpu_time_only():
    common = dict(**SMALL, isl=256, osl=64, concurrency=32, num_requests=64)
    bare = serve(**common, engine="none").summary
    vllm = serve(**common, engine="vllm").summary
    assert vllm["tpot_s"] >= bare["tpot_s"]


def test_power_cap_below_the_busy_static_power_still_throttles():
    common = dict(**SMALL, isl=256, osl=64, concurrency=16, num_requests=48, energy_fit=False, dynamic_scale=1.0)
    free = serve(**common, static_w=400.0).summary
    capped = serve(**common, static_w=400.0, power_limit="300W").summary
    assert capped["avg_power_per_gpu_w"] <= 300.0 + 1e-6
    assert capped["tpot_s"] > free["tpot_s"]


def test_speculation_expected_tokens_and_bad_rates():
    from perfsim.serving.speculative import Speculation, speculation
    assert Speculation().tokens_per_step == 1.0
    assert speculation(2, "0.8,0.5").tokens_per_step == pytest.approx(1 + 0.8 + 0.8 * 0.5)
    assert speculation(3, 0.5).acceptance == (0.5, 0.5, 0.5)
    for k, rates, flag in ((1, "1.5", "spec-accept"), (2, "0.5,0.5,0.5", "spec-accept"), (99, None, "spec-tokens"),
                           (1, "x", "spec-accept")):
        with pytest.raises(InvalidInputError, match=flag):
            speculation(k, rates)


def test_speculative_decoding_speeds_up_small_batches_only_when_drafts_are_accepted():
    common = dict(model="deepseek-v3", hardware="hgx-h200", num_gpus=8, tp=8, ep=8, dtype="fp8", isl=512, osl=256,
                  concurrency=8, num_requests=16, engine="none")
    plain = serve(**common)
    good = serve(**common, spec_tokens=1, spec_accept=0.9)
    useless = serve(**common, spec_tokens=1, spec_accept=0.0)
    for res in (good, useless):
        _check_invariants(res)
    assert good.summary["tpot_s"] < plain.summary["tpot_s"]
    assert useless.summary["tpot_s"] > plain.summary["tpot_s"]   # the drafts cost time and buy nothing
    assert good.config["speculative"]["tokens_per_step"] == pytest.approx(1.9)


def test_verification_attention_does_every_query_s_dot_products_over_one_cache_read():
    from perfsim.serving.speculative import speculation
    dep = make_deployment("deepseek-v3", "hgx-h200", tp=8, ep=8, dtype="fp8")   # MLA: 128 heads on one latent
    sm = StepModel(dep, max_tokens=2048, max_seqs=64, max_context=4096, spec=speculation(2))
    for n, ctx in ((1, 512), (64, 3000)):
        one, three = sm._attn_dec(n, ctx)[0], sm._attn_verify(n, ctx)[0]
        assert one < three < 3 * one   # more work than one query, less than three passes over the cache
    plain = StepModel(dep, max_tokens=2048, max_seqs=64, max_context=4096)
    assert plain._attn_verify(64, 3000) == plain._attn_dec(64, 3000)


def test_cli_engine_and_speculation_flags(capsys):
    code, out, _ = _cli(["serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--isl", "128", "--osl", "16",
                         "-c", "4", "-N", "8", "--engine", "none", "--spec-tokens", "2", "--spec-accept", "0.7,0.4",
                         "--json"], capsys)
    assert code == 0
    cfg = json.loads(out)["config"]
    assert cfg["engine"] == "none" and cfg["speculative"]["acceptance"] == [0.7, 0.4]
    for flag, overlapped in (([], True), (["--no-async-scheduling"], False)):
        code, out, _ = _cli(["serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--isl", "128", "--osl",
                             "16", "-c", "4", "-N", "8", "--engine", "vllm", *flag, "--json"], capsys)
        assert code == 0 and json.loads(out)["config"]["host_overhead"]["overlapped"] is overlapped
    for argv, flag in ((["--engine", "tgi"], "engine"), (["--spec-tokens", "1", "--spec-accept", "2"], "spec-accept")):
        code, _, err = _cli(["serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "-c", "1", *argv], capsys)
        assert code == 2 and flag in err and "Traceback" not in err


@pytest.mark.parametrize("model", ["llama-3.1-8b", "qwen3-30b-a3b"])
def test_step_tables_interpolate_within_the_knee_bound(model):
    """A prefill read off tables up to 16384 tokens is within 8% (the chord bound of TABLE_POINTS at a roofline
    knee) of the same model tabulated to end exactly at that token count."""
    dep = make_deployment(model, "h100-sxm")
    wide = StepModel(dep, 16384, 16, 9300)
    for tokens in (300, 1500, 6000, 12000):
        exact = StepModel(dep, tokens, 16, 9300).prefill([tokens])[0]
        assert wide.prefill([tokens])[0] == pytest.approx(exact, rel=0.08), tokens


def test_hybrid_linear_attention_model_serves_with_its_states_reserved():
    from perfsim.cost.memory import recurrent_state_bytes
    from perfsim.serving.kvcache import capacity_blocks, kv_bytes_per_token, transfer_time
    dep = make_deployment("qwen3-next-80b-a3b", "dgx-h100", tp=4)
    few, many = capacity_blocks(dep, max_seqs=16), capacity_blocks(dep, max_seqs=256)
    per_seq = recurrent_state_bytes(dep.model, 1, tp=4)
    assert many["state_bytes"] == pytest.approx(256 * per_seq)
    # the states of 240 more sequences come out of the KV cache's share
    assert few["kv_bytes"] - many["kv_bytes"] == pytest.approx(240 * per_seq)
    assert kv_bytes_per_token(dep) == 12 * 2 * 1 * 256 * 2        # 12 attention layers, one KV head per rank
    # a disaggregated transfer moves the state as well as the KV
    link = dep.system.intra_link
    assert transfer_time(dep, dep, 1000) == pytest.approx(link.latency + (1000 * kv_bytes_per_token(dep) + per_seq)
                                                          / link.bandwidth)
    for model in ("qwen3-next-80b-a3b", "nemotron-nano-9b-v2"):    # Gated DeltaNet; Mamba-2
        res = serve(model, "dgx-h100", num_gpus=4, tp=4, isl=2048, osl=128, concurrency=32, num_requests=64)
        _check_invariants(res)
        assert res.summary["tpot_s"] > 0


def test_vllm_allocates_recurrent_states_from_the_kv_pool():
    """vLLM hands each admitted sequence its Mamba state out of the KV block pool (no reservation up front, no
    256-sequence cap); SGLang reserves states for its max_running_requests. Reserving 1024 Mamba states on an
    80 GB H100 would leave no KV cache at all."""
    import math

    from perfsim.serving.kvcache import capacity_blocks, kv_bytes_per_token, state_bytes_per_seq
    dep = make_deployment("nemotron-nano-9b-v2", "h100-sxm")
    pooled, reserved = capacity_blocks(dep, max_seqs=1024, states_in_pool=True), capacity_blocks(dep, max_seqs=1024)
    assert reserved["blocks"] == 0 and pooled["state_bytes"] == 0
    state_blocks = pooled["state_blocks_per_seq"]
    assert state_blocks == math.ceil(state_bytes_per_seq(dep) / (16 * kv_bytes_per_token(dep))) > 0

    def decoding_at_once(res) -> int:
        per = res.per_request
        events = sorted([(t, 1) for t in per["first_token_s"]] + [(t, -1) for t in per["finish_s"]])
        return max(np.cumsum([d for _, d in events]))

    common = dict(model="nemotron-nano-9b-v2", hardware="h100-sxm", isl=1024, osl=64, concurrency=1500,
                  num_requests=3000)
    vllm, sgl = serve(**common, engine="vllm"), serve(**common, engine="sglang")
    assert (vllm.config["max_num_seqs"], sgl.config["max_num_seqs"]) == (1024, 256)
    assert decoding_at_once(sgl) <= 256
    # each running sequence holds its context's blocks and its state's: memory, not a cap, bounds the batch
    assert 256 < decoding_at_once(vllm) <= pooled["blocks"] // (math.ceil((1024 + 64) / 16) + state_blocks)
    assert vllm.summary["throughput_tokens_per_s"] > sgl.summary["throughput_tokens_per_s"]


def test_sparse_attention_decodes_long_contexts_faster_than_dense_mla():
    # DeepSeek-V3.2 differs from V3 only by its sparse attention: at 64k context each decode step reads 2048
    # latents per sequence instead of all of them, and pays the indexer's pass over the FP8 index keys
    steps = {}
    for model in ("deepseek-v3", "deepseek-v3.2"):
        dep = make_deployment(model, "hgx-h200", tp=8, dtype="fp8")
        steps[model] = StepModel(dep, max_tokens=512, max_seqs=64, max_context=70_000)
    for n, context in ((8, 65536.0), (64, 32768.0)):
        assert steps["deepseek-v3.2"].decode(n, context)[0] < steps["deepseek-v3"].decode(n, context)[0]
    assert steps["deepseek-v3.2"].decode(8, 2048.0)[0] > steps["deepseek-v3"].decode(8, 2048.0)[0]  # short: no gain


def test_state_dtype_halves_the_recurrent_state_and_its_decode_traffic(capsys):
    from perfsim import predict
    from perfsim.cli import main
    from perfsim.serving.kvcache import state_bytes_per_seq
    common = dict(task="decode", batch=64, context=2048)
    fp32 = predict("nemotron-nano-12b-v2", "h100-sxm", **common)
    bf16 = predict("nemotron-nano-12b-v2", "h100-sxm", state_dtype="bf16", **common)
    state32, state16 = fp32.memory_breakdown["recurrent_state"], bf16.memory_breakdown["recurrent_state"]
    conv = 64 * 28 * (10240 + 2 * 8 * 128) * 3 * 2          # conv states stay bf16
    assert state16 - conv == pytest.approx((state32 - conv) / 2)
    assert bf16.latency_s < fp32.latency_s
    dep32 = make_deployment("qwen3-next-80b-a3b", "dgx-h100", tp=4)
    dep16 = make_deployment("qwen3-next-80b-a3b", "dgx-h100", tp=4, state_dtype="bf16")
    assert state_bytes_per_seq(dep16) < state_bytes_per_seq(dep32)
    with pytest.raises(InvalidInputError, match="state_dtype"):
        make_deployment("qwen3-next-80b-a3b", "dgx-h100", tp=4, state_dtype="fp8")
    code = main(["serve", "-m", "nemotron-nano-9b-v2", "-H", "h100-sxm", "--isl", "256", "--osl", "16", "-c", "4",
                 "-N", "8", "--state-dtype", "bf16", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["tpot_s"] > 0


def test_mlperf_offline_within_floor():
    """Published MLPerf Offline and Server throughputs, dense and MoE, on H200, B200 and MI325X: floors that a
    regression would break; benchmarks/serving_validation.py scores all 31 results."""
    from perfsim.serving.published import load_runs, predict_row
    floors = {"mlperf-v5.0-h200x8": 0.3, "mlperf-v5.0-b200x1": 0.3, "mlperf-v5.1-mi325x8": 0.6,
              "mlperf-v5.0-llama405b-h200x8": 0.3, "mlperf-v5.1-llama8b-b200x8": 0.3,
              "mlperf-v5.0-mixtral-h100x8": 0.6, "mlperf-v5.1-deepseek-r1-b200x8": 0.8,
              "mlperf-v5.0-server-h200x8": 0.3}
    rows = {r["id"]: predict_row(r) for r in load_runs() if r["id"] in floors}
    assert set(rows) == set(floors)
    for rid, floor in floors.items():
        assert abs(rows[rid].error) < floor, (rid, rows[rid].error)
    assert rows["mlperf-v5.0-b200x1"].predicted > rows["mlperf-v5.0-h200x8"].predicted / 8   # FP4 B200 > an H200
    # the Server scenario's latency limits cost throughput: never above the same system's Offline rate
    assert rows["mlperf-v5.0-server-h200x8"].predicted <= rows["mlperf-v5.0-h200x8"].predicted * 1.001


def test_inferencex_deepseek_r1_within_floor(tmp_path):
    """InferenceX's DeepSeek-R1 single-node rows (here those at concurrency 8 and 64, every GPU and engine group):
    floors a regression would break; TTFT is scored and known to be under-predicted (every group's median ratio
    below 1: a latency at the request's arrival that perfsim does not model). A malformed file is a one-line
    DataError."""
    from perfsim.errors import DataError
    from perfsim.serving import inferencex
    full = inferencex.load()
    assert len(full) == 601 and set(full.hardware) >= {"b200", "h200", "mi300x", "mi355x"}
    subset = tmp_path / "ix.csv"
    full[full.conc.isin([8, 64])].to_csv(subset, index=False)
    rows, skipped = inferencex.compare(subset)
    assert skipped and all("atom" in k or "not servable" in k for k in skipped)
    s = inferencex.summary(rows).set_index(["group", "metric"])
    assert s.loc[("all", "tpot_s"), "mape"] < 0.35, s
    assert s.loc[("all", "tokens_per_s_per_gpu"), "mape"] < 0.45, s
    assert s.loc[("all", "ttft_p50_s"), "mape"] < 0.95, s
    groups = {g for g, _ in s.index} - {"all"}
    assert len(groups) >= 10
    bad = tmp_path / "bad.csv"
    full.drop(columns=["mean_tpot"]).to_csv(bad, index=False)
    with pytest.raises(DataError, match="mean_tpot"):
        inferencex.load(bad)
    broken = full.head(3).copy()
    broken.loc[broken.index[1], "mean_ttft"] = -1.0
    broken.to_csv(bad, index=False)
    with pytest.raises(DataError, match="row 2"):
        inferencex.load(bad)


def test_inferencex_drafts_are_accepted_at_the_rate_the_runs_stream():
    """A run streams every `interval` decode steps, so mean ITL / mean TPOT is the tokens per chunk: 10 without
    drafts, 24 with three drafts (2.4 tokens a step: 1 + a + a^2 + a^3 = 2.4) -> a = 0.665."""
    import pandas as pd

    from perfsim.serving import inferencex
    base = {"hardware": "b200", "framework": "trt", "precision": "fp8", "decode_dp_attention": False,
            "mean_tpot": 0.01}
    frame = pd.DataFrame([{**base, "spec_method": "none", "mean_itl": 0.1},
                          {**base, "spec_method": "mtp", "mean_itl": 0.24},
                          {**base, "spec_method": "mtp", "mean_itl": 0.24, "decode_dp_attention": True}])
    rates = inferencex.mtp_acceptance(frame)
    assert rates[("trt", 3)] == pytest.approx(0.665, abs=0.002)
    assert rates[("trt", 1)] == 1.0   # 2.4 tokens a step cannot come from one draft: clipped at always accepted
    shipped = inferencex.mtp_acceptance(inferencex.load())
    assert all(0.5 < shipped[k] < 0.9 for k in (("trt", 1), ("trt", 3), ("sglang", 2)))


def test_published_latency_sweeps_within_floor(tmp_path):
    """Published sweeps (NVIDIA NIM: Llama 3.3 70B FP8 on 2 x H100, TensorRT-LLM; Vultr: Nemotron 3 Nano FP8 on 2 x
    B200, vLLM): floors a regression would break; NIM's saturated points need the deployment's KV capacity right
    (FP8 KV: about 100 sequences of 5500 tokens). A malformed sweep file is a one-line DataError."""
    from perfsim.errors import DataError
    from perfsim.serving import sweeps
    rows = sweeps.compare()
    assert len(rows) == 3 * (8 + 9)
    mape = sweeps.mape_by_metric(rows)
    assert mape["itl_s"] < 0.25 and mape["output_tokens_per_s"] < 0.2 and mape["ttft_s"] < 0.6, mape
    nim = {r.plan["concurrency"]: r for r in rows if r.id.startswith("nim") and r.metric == "output_tokens_per_s"}
    assert nim[250].predicted <= nim[100].predicted * 1.05   # saturated: more clients only queue
    assert abs(nim[100].error) < 0.15 and abs(nim[250].error) < 0.15
    bad = tmp_path / "sweeps.yaml"
    row = "id: x, source: s, model: llama-3.1-8b, hardware: h100-sxm, num_gpus: 1, isl: 8, osl: 8"
    bad.write_text(f"runs:\n  - {{{row}, start: burst, num_prompts: 8, points: {{1: [1.0, -2.0, 3.0]}}}}\n")
    with pytest.raises(DataError, match="points"):
        sweeps.compare(bad)
    bad.write_text(f"runs:\n  - {{{row}, start: whenever, num_prompts: 8, points: {{1: [1.0, 2.0, 3.0]}}}}\n")
    with pytest.raises(DataError, match="start"):
        sweeps.compare(bad)
    bad.write_text("runs:\n  - {id: x, source: s, model: llama-3.1-8b}\n")
    with pytest.raises(DataError, match="missing field.*hardware"):
        sweeps.compare(bad)


def test_mlperf_sample_sets_reproduce_the_benchmarks_stated_means():
    """The shipped per-sample lengths against figures published apart from them: Mixtral's and 405B's reference
    tokens per sample, and DeepSeek-R1's v5.1 target (90% of the reference, outputs capped at 20,000)."""
    from perfsim.serving.published import load_runs, sample_set
    rows = {r["model"]: r for r in load_runs() if "lengths" in r}
    mean_out = {m: sample_set(r, 1).output_len.mean() for m, r in rows.items()}
    assert mean_out["mixtral-8x7b"] == pytest.approx(144.84, abs=0.01)
    assert mean_out["llama-3.1-405b"] == pytest.approx(684.68, abs=0.01)
    assert 0.9 * mean_out["deepseek-v3"] == pytest.approx(3497.6047, abs=0.01)
    assert mean_out["llama-3.1-8b"] == 128


def test_aiconfigurator_sample_loads_and_sets_the_refs_deployments_apart(tmp_path):
    """aiconfigurator's silicon sample (NVIDIA's benchmark database) ships transcribed: 882 runs of 174
    deployments; the deployments silicon_refs rows come from are set apart. A malformed file is a one-line
    DataError."""
    from perfsim.errors import DataError
    from perfsim.serving import aic_sample
    sample = aic_sample.load()
    assert len(sample) == 882 and sample.config_id.nunique() == 174
    assert (sample.origin == aic_sample.ORIGIN).all() and (sample.ttft_s > 0).all() and (sample.tpot_s > 0).all()
    refs = pd.DataFrame({"origin": ["db-dump/2026-04-27", "source_file=x.csv"],
                         "id": ["dsr1_b200_sglang_fp8_agg_1024x1024_c4_cfg88", "x_cfg91"]})
    assert aic_sample.ref_configs(refs) == {88}
    held = aic_sample.held_out(sample, refs)
    assert 88 not in set(held.config_id) and len(held) == len(sample) - (sample.config_id == 88).sum()
    raw = pd.read_csv(aic_sample.DEFAULT_PATH, comment="#")
    bad = tmp_path / "bad.csv"
    raw.drop(columns=["silicon_tpot_ms"]).to_csv(bad, index=False)
    with pytest.raises(DataError, match="silicon_tpot_ms"):
        aic_sample.load(bad)
    broken = raw.head(3).copy()
    broken.loc[broken.index[1], "concurrency"] = 0
    broken.to_csv(bad, index=False)
    with pytest.raises(DataError, match="row 2: concurrency"):
        aic_sample.load(bad)


def test_benchmark_database_deepseek_runs_match_better_without_mtp():
    """Four DeepSeek deployments of the benchmark database outside silicon_refs (SGLang and TensorRT-LLM, agg and
    disagg, B200 and GB200), runs at <= 32 clients: simulated without MTP, as the database's rows are, TPOT sits
    within a generous floor and closer to measured than with DeepSeek's MTP at its published acceptance."""
    from perfsim.serving import aic_sample
    sample = aic_sample.load()
    rows = sample[sample.config_id.isin([88, 91, 229, 320]) & (sample.concurrency <= 32)]
    assert len(rows) >= 20
    plain = aic_sample.score(rows).rows
    mtp = aic_sample.score(rows.assign(origin="")).rows
    assert plain.tpot_ape.mean() < 0.3, plain[["id", "tpot_ape"]]
    assert plain.tpot_ape.mean() < mtp.tpot_ape.mean()
    assert (mtp.tpot_predicted_s < plain.tpot_predicted_s).mean() > 0.9   # MTP: more tokens per step


def test_disaggregation_handoff_delays_the_first_token_only():
    """A fixed handoff per request between prefill and decode: at low load the mean TTFT grows by it and TPOT
    does not move; it does not hold the link, so a loaded server's throughput barely moves. By default the fitted
    one; a negative or non-finite one is refused."""
    from perfsim.serving import latency
    kw = dict(num_gpus=2, disagg="1:1", isl=1024, osl=64, profile="none", num_requests=40, engine="none")
    lo = [serve("llama-3.1-8b", "h100-sxm", concurrency=1, disagg_handoff_s=h, **kw).summary for h in (0.0, 0.25)]
    assert lo[1]["ttft_s"] - lo[0]["ttft_s"] == pytest.approx(0.25, rel=1e-6)
    assert lo[1]["tpot_s"] == pytest.approx(lo[0]["tpot_s"], rel=1e-6)
    assert lo[1]["disagg_handoff_s"] == 0.25
    hi = [serve("llama-3.1-8b", "h100-sxm", concurrency=64, disagg_handoff_s=h, **kw).summary for h in (0.0, 0.01)]
    assert hi[1]["throughput_tokens_per_s"] > 0.9 * hi[0]["throughput_tokens_per_s"]
    fitted = serve("llama-3.1-8b", "h100-sxm", concurrency=1, **kw).summary["disagg_handoff_s"]
    assert fitted == latency.disagg_handoff_s() and 0.0 <= fitted < 1.0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(InvalidInputError, match="disagg-handoff"):
            serve("llama-3.1-8b", "h100-sxm", concurrency=1, disagg_handoff_s=bad, **kw)


def test_request_latency_adds_to_ttft_and_e2e_not_tpot():
    """An engine's request latency (the client-engine path outside its steps) delays every token the client sees:
    TTFT and end-to-end latency grow by it, TPOT and throughput do not. By default each engine's fitted one
    ('none': zero); a negative one is refused."""
    from perfsim.serving import latency
    kw = dict(num_gpus=1, isl=512, osl=32, profile="none", num_requests=24, concurrency=4, engine="none")
    base, late = (serve("llama-3.1-8b", "h100-sxm", request_latency_s=x, **kw).summary for x in (0.0, 0.08))
    assert late["ttft_s"] - base["ttft_s"] == pytest.approx(0.08, rel=1e-6)
    assert late["e2e_s"] - base["e2e_s"] == pytest.approx(0.08, rel=1e-6)
    assert late["tpot_s"] == pytest.approx(base["tpot_s"], rel=1e-9)
    assert late["throughput_tokens_per_s"] == pytest.approx(base["throughput_tokens_per_s"], rel=1e-9)
    assert serve("llama-3.1-8b", "h100-sxm", **kw).config["request_latency_s"] == 0.0
    sglang = serve("llama-3.1-8b", "h100-sxm", **{**kw, "engine": "sglang"}).config["request_latency_s"]
    assert sglang == latency.request_latency_s("sglang") and 0.0 <= sglang < 0.5
    with pytest.raises(InvalidInputError, match="request-latency"):
        serve("llama-3.1-8b", "h100-sxm", request_latency_s=-1.0, **kw)


def test_latency_offset_fit_is_a_least_absolute_relative_error_fit():
    from perfsim.serving.latency import fit_offset
    measured = np.array([0.3, 0.5, 0.4, 1.2, 0.25])
    assert fit_offset(measured, measured - 0.2) == pytest.approx(0.2)
    predicted = measured - 0.2
    predicted[3] = 5.0   # one wild row does not move it
    assert fit_offset(measured, predicted) == pytest.approx(0.2)
    assert fit_offset(measured, measured + 1.0) == 0.0   # never negative


def test_legacy_rows_recording_the_tp_x_ep_product_run_on_their_real_gpus():
    """Legacy benchmark-database rows record tp = moe_tp x moe_ep (tp 64 on one 8-GPU node): the deployment ran on
    moe_tp GPUs; attention data parallel likewise; rows that add up stay as recorded."""
    from perfsim.serving.validation import deflated_layout
    assert deflated_layout(64, 1, 8, 8) == (8, 1)
    assert deflated_layout(16, 1, 4, 4) == (4, 1)
    assert deflated_layout(1, 64, 8, 8) == (1, 8)
    assert deflated_layout(8, 1, 1, 8) == (8, 1)       # tp 8, experts over ep 8: as recorded
    assert deflated_layout(4, 4, 1, 16) == (4, 4)      # vLLM's dp x tp expert group: as recorded
