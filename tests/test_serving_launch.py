"""Launch commands of simulated deployments (perfsim.serving.launch) and `perfsim plan --task serve --launch`."""

import json
import shlex

import pytest

from perfsim.cli import main
from perfsim.errors import InvalidInputError
from perfsim.hardware import load_device
from perfsim.serving.launch import launch_commands
from perfsim.serving.scheduler import engine_batching, sglang_chunked_prefill

AGG = {"hardware": "dgx-h100", "num_gpus": 8, "tp": 4, "ep": 1, "attn_dp": None, "max_num_seqs": 96}
DISAGG = {"hardware": "dgx-b200", "num_gpus": 24, "tp": 1, "ep": 8, "attn_dp": 8, "disagg": "8:16",
          "prefill": {"tp": 1, "ep": 8, "attn_dp": 8, "hardware": "dgx-b200"},
          "decode": {"tp": 1, "ep": 8, "attn_dp": 8, "hardware": "dgx-b200", "max_num_seqs": 48}}


def _flags(command: str) -> dict:
    """--flag value pairs of a command line (a flag without a value maps to True)."""
    words = shlex.split(command)
    out = {}
    for i, w in enumerate(words):
        if w.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else None
            out[w] = nxt if nxt is not None and not nxt.startswith("--") else True
    return out


def test_aggregated_vllm_pins_the_simulated_layout_batch_and_budget():
    (one,) = launch_commands("llama-3.1-70b", AGG, "vllm")
    f = _flags(one.command)
    assert one.command.startswith("vllm serve meta-llama/")
    assert (one.role, one.instances, one.gpus) == ("replica", 2, 4)
    assert f["--tensor-parallel-size"] == "4" and f["--max-num-seqs"] == "96"
    assert f["--max-num-batched-tokens"] == str(engine_batching("vllm", load_device("h100-sxm"))[1])
    assert "--quantization" not in f and "--enable-expert-parallel" not in f   # a BF16 run of a BF16 release


def test_sglang_counts_the_whole_server_under_dp_attention():
    """--tp is every GPU of the server, --dp the attention groups; the batch and chunk limits are the server's
    (SGLang divides them by --dp), so per-rank 48 sequences read 8 x 48."""
    prefill, decode = launch_commands("deepseek-v3", DISAGG, "sglang")
    b200 = load_device("b200")
    for item in (prefill, decode):
        f = _flags(item.command)
        assert (f["--tp"], f["--dp"], f["--ep-size"]) == ("8", "8", "8") and f["--enable-dp-attention"] is True
        assert f["--chunked-prefill-size"] == str(sglang_chunked_prefill(b200))
        assert f["--disaggregation-mode"] == item.role
    assert _flags(decode.command)["--max-running-requests"] == str(8 * 48)
    assert (prefill.instances, decode.instances) == (1, 2)
    assert any("router" in n for n in prefill.notes)


def test_trtllm_reads_its_llm_api_options_from_a_file():
    prefill, decode = launch_commands("deepseek-v3", DISAGG, "trtllm")
    for item in (prefill, decode):
        f = _flags(item.command)
        assert f["--tp_size"] == "8" and f["--ep_size"] == "8"
        assert f["--extra_llm_api_options"] == item.config_file == f"{item.role}.yaml"
        assert "enable_attention_dp: true" in item.config and "cache_transceiver_config:" in item.config
    assert _flags(decode.command)["--max_batch_size"] == "48"          # per attention-DP rank
    assert "--max_batch_size" not in _flags(prefill.command)          # the engine's default, as simulated


def test_checkpoints_follow_the_served_format():
    # FP8 of a BF16-only release: vLLM and SGLang quantize on load, TensorRT-LLM needs an exported checkpoint
    assert _flags(launch_commands("llama-3.1-70b", AGG, "vllm", "fp8")[0].command)["--quantization"] == "fp8"
    trt = launch_commands("llama-3.1-70b", AGG, "trtllm", "fp8")[0]
    assert trt.command.split()[1] == "$CHECKPOINT" and "Model Optimizer" in trt.notes[0]
    assert "dtype: fp8" in trt.config                                  # its FP8 export carries KV scales
    # NVFP4: no listed release is one
    fp4 = launch_commands("deepseek-v3", DISAGG, "vllm", "fp4")[0]
    assert "$CHECKPOINT" in fp4.command and "NVFP4" in fp4.notes[0]
    # the repository asked for, when it is in the served format
    fp8 = launch_commands("Qwen/Qwen3-32B-FP8", AGG, "vllm")[0]
    assert fp8.command.split()[2] == "Qwen/Qwen3-32B-FP8" and "--quantization" not in fp8.command
    assert launch_commands("meta-llama/Llama-3.1-70B", AGG, "vllm")[0].command.split()[2] == "meta-llama/Llama-3.1-70B"
    # FP16: a 16-bit release run in half precision
    half = launch_commands("llama-3.1-70b", AGG, "sglang", "fp16")[0]
    assert half.command.split()[4].startswith("meta-llama/") and _flags(half.command)["--dtype"] == "float16"


def test_launch_refuses_what_it_cannot_write():
    with pytest.raises(InvalidInputError, match="engine"):
        launch_commands("llama-3.1-70b", AGG, "none")
    with pytest.raises(InvalidInputError, match="num_gpus"):
        launch_commands("llama-3.1-70b", {**AGG, "num_gpus": 6}, "vllm")


def test_every_planned_deployment_says_how_to_run_it():
    """Each plan's launch accounts for all its GPUs and pins the batch limit the simulation ran with."""
    from perfsim.serving.plan import plan_serving
    res = plan_serving("llama-3.1-8b", "dgx-h100", isl=1024, osl=128, rate=6, slo_ttft=1.0, slo_tpot=0.05,
                       num_requests=120, engine="sglang", top=5)
    assert res.plans
    for p in res.plans:
        assert sum(x["instances"] * x["gpus"] for x in p.launch) == p.num_gpus
        seqs = p.settings.get("max_num_seqs") or p.settings.get("decode", {}).get("max_num_seqs")
        assert any(_flags(x["command"]).get("--max-running-requests") == str(seqs) for x in p.launch)
    none = plan_serving("llama-3.1-8b", "dgx-h100", isl=1024, osl=128, rate=6, num_requests=120, engine="none",
                        top=1, disagg=False)
    assert none.plans[0].launch == []


def test_plan_cli_prints_the_best_deployments_commands(capsys):
    args = ["plan", "--task", "serve", "--model", "llama-3.1-8b", "--hardware", "dgx-h100", "--rate", "4",
            "--isl", "512", "--osl", "64", "--slo-tpot", "0.05"]
    assert main(args + ["--launch"]) == 0
    out = capsys.readouterr().out
    assert "How to run #1 with vllm:" in out and "vllm serve meta-llama/" in out
    assert main(args + ["--json"]) == 0
    plans = json.loads(capsys.readouterr().out)
    assert all(p["launch"] and p["launch"][0]["command"].startswith("vllm serve") for p in plans)
    assert main(["plan", "--task", "train", "--model", "llama-3.1-8b", "-H", "dgx-h100", "-n", "8", "--launch"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "launch" in err


def test_serve_cli_prints_the_simulated_deployment_as_resolved(capsys):
    """serve --launch describes what was simulated: attention DP resolved from --ep over --tp, the token budget
    asked for, and the pools of a disaggregated run; JSON carries it as 'launch'."""
    base = ["serve", "-m", "deepseek-v3", "-H", "dgx-b200", "-n", "16", "--tp", "1", "--ep", "8", "--disagg", "8:8",
            "--concurrency", "4", "--num-requests", "8", "--engine", "trtllm", "--max-num-batched-tokens", "3000"]
    assert main(base + ["--launch", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    prefill, decode = doc["launch"]
    assert [(x["role"], x["instances"], x["gpus"]) for x in doc["launch"]] == [("prefill", 1, 8), ("decode", 1, 8)]
    for item in (prefill, decode):
        f = _flags(item["command"])
        assert f["--max_num_tokens"] == "3000" and f["--tp_size"] == "8"
        assert "enable_attention_dp: true" in item["config"]
    assert main(base + ["--json"]) == 0
    assert "launch" not in json.loads(capsys.readouterr().out)       # the contract without --launch is unchanged
    assert main(["serve", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--concurrency", "4", "--engine", "none",
                 "--launch"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and "launch" in out.err


def test_a_plans_commands_are_those_of_the_run_it_simulated():
    """Every candidate's launch commands are those of its simulated run as resolved (the engine's defaults made
    explicit), aggregated and disaggregated alike."""
    from perfsim.serving import serve
    from perfsim.serving.launch import settings_of
    from perfsim.serving.plan import plan_serving
    res = plan_serving("qwen3-30b-a3b", "dgx-h100", isl=1024, osl=128, rate=4, slo_tpot=0.05, num_requests=80,
                       engine="trtllm", top=3)
    modes = {}
    for p in res.candidates:
        modes.setdefault(p.mode, p)
    assert {"aggregated", "disaggregated"} <= set(modes)
    for p in modes.values():
        settings = {k: v for k, v in p.settings.items() if v is not None}
        run = serve("qwen3-30b-a3b", isl=1024, osl=128, rate=4, num_requests=40, engine="trtllm", **settings)
        again = [x.to_dict() for x in launch_commands("qwen3-30b-a3b", settings_of(run.config), "trtllm")]
        assert again == p.launch
        assert all("--max_batch_size" in x["command"] for x in p.launch)   # defaults made explicit
