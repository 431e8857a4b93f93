"""Decode-attention kernel choice: which kernels run for a KV-cache format on a GPU generation."""

import numpy as np

from perfsim.cost.attention import xqa_fuses_rope
from perfsim.cost.calibrated import kernel_time
from perfsim.cost.params import CostParams, DecodeParams
from perfsim.hardware import load_device
from perfsim.ops import Attention


def test_only_hopper_fp8_xqa_applies_rope_itself():
    d = np.array([64, 128, 256])
    assert xqa_fuses_rope("sm90", "fp8", d, 128).tolist() == [False, True, True]   # span must fit the head
    assert not xqa_fuses_rope("sm90", "fp8", 128, 72)                             # and be 16-element steps
    assert not xqa_fuses_rope("sm90", "bf16", d, 64).any()
    assert not xqa_fuses_rope("sm100", "fp8", d, 64).any()
    assert not xqa_fuses_rope("sm80", "fp8", d, 64).any()


def _decode(**kw):
    return Attention(batch=8, q_len=1, kv_len=64, num_heads=32, num_kv_heads=8, head_dim=128, **kw)


def test_unfused_decode_pays_the_preprocessing_kernel():
    params = CostParams(decode={"fp8": DecodeParams(preprocess_s=3e-6)})
    h100, a100 = load_device("h100-sxm"), load_device("a100-sxm-80gb")
    plain = h100.model_copy(update={"compute": h100.compute.model_copy(update={"architecture": ""})})
    fused, _ = kernel_time(_decode(kv_dtype="fp8"), h100, params)
    unfused, _ = kernel_time(_decode(kv_dtype="fp8"), plain, params)
    assert np.isclose(unfused - fused, 3e-6)
    # MLA decode rotates outside the attention kernel, on any GPU
    mla = Attention(batch=8, q_len=1, kv_len=64, num_heads=16, num_kv_heads=1, head_dim=576, v_head_dim=512,
                    kv_dtype="fp8", kv_shared_by_heads=True)
    assert np.isclose(kernel_time(mla, plain, params)[0], kernel_time(mla, h100, params)[0])
    assert kernel_time(_decode(kv_dtype="fp8"), a100, params)[1] >= 3e-6
