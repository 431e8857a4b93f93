import pytest
from hypothesis import settings

from perfsim.model import ModelSpec

# Every property test draws one fixed set of examples (a seed per test), so a run passes or fails reproducibly
settings.register_profile("deterministic", derandomize=True)
settings.load_profile("deterministic")


@pytest.fixture
def tiny_model() -> ModelSpec:
    """A 2-layer model small enough to count FLOPs by hand."""
    return ModelSpec(name="tiny", source="hand-made test model", hidden_size=64, num_layers=2, num_heads=4,
                     num_kv_heads=4, intermediate_size=128, vocab_size=100, max_seq_len=64)
