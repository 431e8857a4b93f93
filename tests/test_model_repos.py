"""Hugging Face repository ids name shipped specs (ModelSpec.hf_repos), in their checkpoint's format."""

from collections import Counter

import pytest

from perfsim.cli import main
from perfsim.model import load_model, model_for_repo, model_names
from perfsim.specfiles import read_mapping, shipped_names

# The model ids of the measured serving tables (aiconfigurator silicon_refs.csv, ML.ENERGY lm-arena-chat.json) and
# the shipped specs of their architectures; the -FP8 repositories hold FP8 checkpoints.
MEASURED_IDS = {
    "deepseek-ai/DeepSeek-R1": ("deepseek-v3", "fp8"), "deepseek-ai/DeepSeek-V3": ("deepseek-v3", "fp8"),
    "deepseek-ai/DeepSeek-V3.1": ("deepseek-v3", "fp8"), "deepseek-ai/DeepSeek-R1-0528": ("deepseek-v3", "fp8"),
    "Qwen/Qwen3-32B": ("qwen3-32b", "bf16"), "Qwen/Qwen3-8B": ("qwen3-8b", "bf16"),
    "Qwen/Qwen3-14B": ("qwen3-14b", "bf16"), "google/gemma-3-12b-it": ("gemma-3-12b-it", "bf16"),
    "google/gemma-3-27b-it": ("gemma-3-27b-it", "bf16"),
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": ("llama-4-scout", "bf16"),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": ("llama-4-maverick", "fp8"),
    "Qwen/Qwen3-235B-A22B-FP8": ("qwen3-235b-a22b", "fp8"),
    "Qwen/Qwen3-235B-A22B-Instruct-2507": ("qwen3-235b-a22b", "bf16"),
    "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": ("qwen3-235b-a22b", "fp8"),
    "Qwen/Qwen3-30B-A3B-Instruct-2507": ("qwen3-30b-a3b", "bf16"),
    "meta-llama/Llama-3.1-8B-Instruct": ("llama-3.1-8b", "bf16"),
    "meta-llama/Llama-3.1-70B-Instruct": ("llama-3.1-70b", "bf16"),
    "meta-llama/Llama-3.3-70B-Instruct": ("llama-3.1-70b", "bf16"),
    "meta-llama/Llama-3.1-405B-Instruct": ("llama-3.1-405b", "bf16"),
    "meta-llama/Llama-3.1-405B-Instruct-FP8": ("llama-3.1-405b", "fp8"),
    "moonshotai/Kimi-K2.5": ("kimi-k2.5", "bf16"), "MiniMaxAI/MiniMax-M2.5": ("minimax-m2.5", "fp8"),
    "Qwen/Qwen3.5-397B-A17B": ("qwen3.5-397b-a17b", "bf16"),
    "nvidia/NVIDIA-Nemotron-Nano-12B-v2": ("nemotron-nano-12b-v2", "bf16"),
    "nvidia/NVIDIA-Nemotron-Nano-9B-v2": ("nemotron-nano-9b-v2", "bf16"),
    "openai/gpt-oss-120b": ("gpt-oss-120b", "bf16"),
}


@pytest.mark.parametrize("repo", sorted(MEASURED_IDS))
def test_measured_model_ids_name_their_spec(repo):
    name, dtype = MEASURED_IDS[repo]
    m = load_model(repo)
    assert (m.name, m.checkpoint_dtype, m.run_dtype("decode")) == (name, dtype, dtype)
    assert load_model(repo.lower()).name == name    # Hugging Face ids are case-insensitive


def test_every_repo_names_one_spec_and_each_spec_covers_its_source():
    claims = Counter(repo.lower() for path in shipped_names("workloads").values()
                     for repo in (read_mapping(path).get("hf_repos") or {}))
    assert claims and max(claims.values()) == 1
    for name in model_names():
        m = load_model(name)
        for repo, dtype in m.hf_repos.items():
            spec = model_for_repo(repo)
            assert spec.name == name and dtype in ("bf16", "fp8", "fp8_block")
            assert spec.checkpoint_block_scaled == (dtype == "fp8_block")
        if "Hugging Face " in m.source and m.hf_repos:
            assert any(repo in m.source for repo in m.hf_repos)


def test_an_unknown_repo_is_a_one_line_error(capsys):
    code = main(["predict", "-m", "nobody/NoSuchModel-7B", "-H", "h100-sxm", "--context", "8"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nobody/NoSuchModel-7B" in err and "model" in err
