"""TensorRT-LLM's published throughput tables: trtllm-bench's settings, KV admission that never preempts, and the
simulated throughputs against the published ones (benchmarks/serving_validation.py prints every result)."""

import pytest

from perfsim.model import load_model
from perfsim.serving.simulate import serve
from perfsim.serving.trtllm_bench import bench_limits, checkpoint_elements, compare, is_moe, load_runs


def test_bench_limits_follow_trtllm_bench_heuristic():
    """Llama 3.1 8B FP8 on one H100 (79.65 GiB as the driver reports it), FP8 KV (64 KiB per token: 2 x 32 layers x
    8 heads x 128 x 1 B): the KV cache holds 0.95 x (79.65 GiB - 7.48 GiB of weights) / (64 KiB x 2176 tokens) = 516
    requests of 128 + 2048 tokens, rounded up to 640 sequences (to 128s between 256 and 1024); 516 x (1 + 128/2048)
    = 548 tokens, raised to the 2048 floor. At 20000 + 2000 tokens 51 requests fit: 64 sequences (the floor), and the
    budget must hold the whole prompt plus the batch (chunked prefill off): 20000 + 64."""
    assert bench_limits("llama-3.1-8b", "h100-sxm", 1, 1, 128, 2048, "fp8", "fp8") == (640, 2048)
    assert bench_limits("llama-3.1-8b", "h100-sxm", 1, 1, 20000, 2000, "fp8", "fp8") == (64, 20064)


def test_nvfp4_checkpoint_counts_packed_elements():
    """trtllm-bench sizes the weights from the safetensors element count: Hugging Face lists
    nvidia/Llama-3.3-70B-Instruct-NVFP4 at 41B parameters (two FP4 weights per element, one FP8 scale per 16)."""
    m = load_model("llama-3.1-70b")
    assert checkpoint_elements(m, "fp4") == pytest.approx(41e9, rel=0.03)
    assert checkpoint_elements(m, "fp8") == m.params_total


def _offline(admission):
    return serve("llama-3.1-8b", "h100-sxm", dtype="fp8", kv_dtype="fp8", isl=128, osl=2048, concurrency=None,
                 num_requests=1500, rate=1e6, max_num_seqs=1024, engine="trtllm", admission=admission)


def test_reserve_admission_never_preempts_and_is_trtllm_default():
    """TensorRT-LLM's GUARANTEED_NO_EVICT admits a request only when its whole sequence fits: no preemption, and
    on a cache that the 1024-sequence limit overfills it runs faster than vLLM-style admit-then-preempt."""
    reserve, preempt = _offline(None), _offline("preempt")
    assert reserve.config["admission"] == "reserve"
    assert reserve.summary["preemptions"] == 0 and reserve.summary["kv_peak_fraction"] <= 1.0
    assert preempt.summary["preemptions"] > 0
    assert reserve.summary["throughput_tokens_per_s"] > preempt.summary["throughput_tokens_per_s"]
    vllm = serve("llama-3.1-8b", "h100-sxm", isl=128, osl=16, concurrency=4, num_requests=8)
    assert vllm.config["admission"] == "preempt"


def test_admission_rejects_unknown():
    from perfsim.errors import InvalidInputError
    with pytest.raises(InvalidInputError, match="admission"):
        serve("llama-3.1-8b", "h100-sxm", isl=128, osl=16, concurrency=2, num_requests=4, admission="lifo")


def test_published_tables_within_floor():
    """All 328 published results (nothing fitted): benchmarks/serving_validation.py reports 19.7% mean error
    (dense 10.2%, MoE 27.3%); the floors catch a regression."""
    rows = compare()
    assert len(rows) == len(load_runs()) == 328
    dense = [r for r in rows if not is_moe(r)]
    mape = sum(abs(r.error) for r in rows) / len(rows)
    assert mape < 0.27, mape
    assert sum(abs(r.error) for r in dense) / len(dense) < 0.15


def test_cli_admission_and_kv_free_fraction(capsys):
    """`perfsim serve --admission --kv-free-fraction`: the choice lands in the config; a smaller free share holds
    fewer KV tokens; a bad value is a one-line exit-2 error."""
    import json

    from perfsim.cli import main
    base = ["serve", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--isl", "256", "--osl", "16", "-c", "4", "-N", "8",
            "--engine", "trtllm", "--json"]
    outs = []
    for frac in ("0.9", "0.5"):
        assert main(base + ["--admission", "preempt", "--kv-free-fraction", frac]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0]["config"]["admission"] == "preempt" and outs[0]["config"]["kv_free_fraction"] == 0.9
    tokens = [o["config"]["pools"][0]["kv_tokens_per_engine"] for o in outs]
    assert tokens[1] < tokens[0]
    assert main(base + ["--kv-free-fraction", "1.5"]) == 2
    assert "kv-free-fraction" in capsys.readouterr().err
