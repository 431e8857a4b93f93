"""More shipped models (Llama 3.2, Qwen2.5, Qwen3, Gemma 3 4B, Mistral NeMo / Large 2, gpt-oss-20b, Qwen3-Coder,
DeepSeek-R1-Distill-Llama-70B, Phi-3.5-MoE): parameter counts against published figures, cross-checks against the
Hugging Face configs in tests/fixtures/hf, and CLI smoke runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfsim.cli import main
from perfsim.hf_config import from_hf_config
from perfsim.model import load_model, model_names

FIXTURES = Path(__file__).parent / "fixtures" / "hf"
B = 1e9

NEW_MODELS = [
    "llama-3.2-1b", "llama-3.2-3b", "qwen2.5-7b", "qwen2.5-32b", "qwen2.5-72b", "qwen3-4b", "gemma-3-4b-it",
    "mistral-nemo-12b", "mistral-large-2", "gpt-oss-20b", "qwen3-coder-480b-a35b", "deepseek-r1-distill-llama-70b",
    "phi-3.5-moe",
]


def close(ours: float, published: float, rel: float) -> bool:
    return abs(ours - published) <= rel * published




def test_new_models_are_shipped():
    names = model_names()
    for name in NEW_MODELS:
        assert name in names
        m = load_model(name)
        assert m.name == name and m.family and m.source


@pytest.mark.parametrize("name,published,rel", [
    # Qwen model cards, "Number of Parameters (Non-Embedding)"; Qwen's figure leaves out the token table and the
    # LM head when they are untied (Qwen2.5), the one shared table when tied (Qwen3-4B)
    ("qwen2.5-7b", 6.53 * B, 0.01),
    ("qwen2.5-72b", 70.0 * B, 0.01),
    ("qwen3-4b", 3.6 * B, 0.05 / 3.6),
])
def test_qwen_non_embedding_figures(name, published, rel):
    m = load_model(name)
    tables = (1 if m.tie_embeddings else 2) * m.vocab_size * m.hidden_size
    assert close(m.params_total - tables, published, rel)


def test_gemma_3_4b():
    # Gemma 3 Technical Report, Table 1: 3,209M non-embedding parameters in the 4B language model
    m = load_model("gemma-3-4b-it")
    assert close(m.params_total - m.vocab_size * m.hidden_size, 3209e6, rel=0.5 / 3209)
    assert (m.sliding_window, m.sliding_layers) == (1024, 29)      # 5 local layers per global one, 34 layers
    assert m.sandwich_norm and m.qk_norm and m.tie_embeddings and m.dim_head == 256


def test_gpt_oss_20b():
    # OpenAI 2025, "gpt-oss-120b & gpt-oss-20b Model Card", Table 1: 20.91B total, 3.61B active per token, the
    # active figure without the embedding table (as for gpt-oss-120b)
    m = load_model("gpt-oss-20b")
    assert close(m.params_total, 20.91 * B, rel=0.001)
    assert close(m.params_non_embedding, 3.61 * B, rel=0.005)
    assert m.sliding_window == 128 and m.sliding_layers == 12
    assert m.attention_sinks and m.moe.num_experts == 32 and m.moe.top_k == 4


def test_gpt_oss_20b_matches_the_120b_fixture_with_the_20b_changes(tmp_path):
    # openai/gpt-oss-20b's config.json is gpt-oss-120b's with 24 layers (and 24 layer_types) and 32 local experts
    cfg = json.loads((FIXTURES / "GptOssForCausalLM" / "config.json").read_text())
    cfg.update(num_hidden_layers=24, num_local_experts=32, layer_types=cfg["layer_types"][:24])
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    hf, shipped = from_hf_config(tmp_path), load_model("gpt-oss-20b")
    ignore = {"name", "source", "family"}
    assert hf.model_dump(exclude=ignore) == shipped.model_dump(exclude=ignore)


def test_qwen2_5_7b_matches_the_instruct_fixture():
    # the fixture is Qwen2.5-7B-Instruct's config.json: the base model's shapes, a 32768-token context
    hf, shipped = load_model(FIXTURES / "Qwen2ForCausalLM" / "config.json"), load_model("qwen2.5-7b")
    ignore = {"name", "source", "family", "max_seq_len"}
    assert hf.model_dump(exclude=ignore) == shipped.model_dump(exclude=ignore)
    assert shipped.qkv_bias and not shipped.out_bias and shipped.sliding_window is None


def test_distill_is_llama_70b_shaped():
    a, b = load_model("deepseek-r1-distill-llama-70b"), load_model("llama-3.1-70b")
    assert a.family == b.family == "llama" and a.params_total == b.params_total


def test_phi_3_5_moe_layernorm_and_biases():
    m = load_model("phi-3.5-moe")
    assert m.norm == "layernorm" and m.qkv_bias and m.out_bias and not m.moe.router_bias
    assert m.num_moe_layers == 32 and m.num_dense_layers == 0


@pytest.mark.parametrize("name", ["llama-3.2-1b", "gemma-3-4b-it", "gpt-oss-20b", "phi-3.5-moe"])
def test_cli_predict_decode(name, capsys):
    code = main(["predict", "-m", name, "-H", "h100-sxm", "--task", "decode", "--batch", "8", "--context", "2048",
                 "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    assert result["model"] == name and result["latency_s"] > 0
