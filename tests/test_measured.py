"""Readers of the measured ground-truth data (perfsim.measured)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from perfsim import measured
from perfsim.errors import DataError, InvalidInputError, UnknownNameError


def _root_or_none():
    try:
        return measured.data_root()
    except DataError:
        return None


ROOT = _root_or_none()
needs_data = pytest.mark.skipif(ROOT is None, reason="measured data (shared/data/measured) not found")

HARDWARE_NAMES = {"h100-sxm", "a100-sxm-80gb", "a40", "b200", "a100-pcie-80gb", "h100-nvl",
                  "h200-sxm", "b300", "gb200", "gb300"}
FAMILY_COLUMNS = {
    "gemm": {"op", "m", "n", "k", "dtype"},
    "layer_ops": {"model", "op", "num_tokens", "tp", "n_head", "n_kv_head", "n_embd", "n_expanded_embd",
                  "vocab_size", "use_gated_mlp", "m", "n", "k", "elements", "dtype"},
    "elementwise": {"op", "m", "n", "elements", "dtype"},
    "context_attention": {"batch", "isl", "num_heads", "num_kv_heads", "head_dim", "window", "dtype", "kv_dtype"},
    "generation_attention": {"batch", "kv_len", "num_heads", "num_kv_heads", "head_dim", "window", "dtype",
                             "kv_dtype"},
    "moe": {"num_tokens", "hidden", "inter", "topk", "num_experts", "tp", "ep", "distribution", "dtype",
            "kernel_source"},
    "collective": {"op", "num_gpus", "size_bytes", "dtype", "devices_per_node", "crosses_nodes", "system",
                   "implementation"},
    "serving_energy": {"model_id", "gpu", "num_gpus", "tp", "ep", "dp", "max_num_seqs", "avg_batch_size",
                       "avg_output_len", "median_itl_s", "p90_itl_s", "energy_per_token_j", "avg_power_w",
                       "output_throughput_tokens_per_s", "weight_precision"},
    "serving": {"model", "system", "isl", "osl", "ttft_s", "tpot_s", "tp_size", "pp_size", "attention_dp_size",
                "moe_tp_size", "moe_ep_size", "prefill_tp_size", "decode_tp_size"},
}


def test_registry_names_and_metadata():
    expected = {
        "vidur-h100", "vidur-a100", "vidur-a40",
        "llmcompass-a100-matmul", "llmcompass-a100-softmax", "llmcompass-a100-layernorm", "llmcompass-a100-gelu",
        "llmcompass-a100-allreduce",
        "aic-h100-gemm", "aic-h100-context-attention", "aic-h100-generation-attention", "aic-h100-moe",
        "aic-h100-custom-allreduce", "aic-nccl",
        "vidur-net-a100_dgx-all_reduce", "vidur-net-a100_dgx-send_recv", "vidur-net-h100_dgx-all_reduce",
        "vidur-net-h100_dgx-send_recv", "vidur-net-a100_pairwise_nvlink-all_reduce",
        "vidur-net-a100_pairwise_nvlink-send_recv", "vidur-net-h100_pairwise_nvlink-all_reduce",
        "vidur-net-a40_pairwise_nvlink-send_recv",
        "mlenergy-lm-arena-chat", "aic-silicon-refs",
        "perfsim-h200-gemm", "perfsim-h200-context-attention", "perfsim-h200-generation-attention",
        "perfsim-h200-elementwise",
    }
    assert set(measured.DATASETS) == expected
    for name, ds in measured.DATASETS.items():
        assert ds.name == name
        assert ds.family in measured.FAMILIES
        assert ds.description and "\n" not in ds.description
        assert ds.source and ds.files and ds.hardware
        assert set(ds.hardware) <= HARDWARE_NAMES
    assert measured.names("gemm") == ["llmcompass-a100-matmul", "aic-h100-gemm", "perfsim-h200-gemm"]
    assert len(measured.describe().splitlines()) == len(expected)


@needs_data
def test_data_root_found():
    assert (ROOT / "SOURCES.md").is_file()


def test_data_root_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(measured.ENV_VAR, str(tmp_path))
    assert measured.data_root() == tmp_path
    monkeypatch.setenv(measured.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        measured.data_root()
    assert "\n" not in str(err.value) and "nowhere" in str(err.value)


@needs_data
@pytest.mark.parametrize("name", list(measured.DATASETS))
def test_dataset_loads(name):
    ds = measured.DATASETS[name]
    df = measured.load(name)
    assert len(df) > 0
    assert list(df.columns[:3]) == ["dataset", "hardware", "source"] and df.columns[-1] == "measured_s"
    assert (df["dataset"] == name).all()
    assert set(df["hardware"]) <= set(ds.hardware)
    assert (df["source"] == ds.source).all()
    s = df["measured_s"].to_numpy(dtype=float)
    assert np.isfinite(s).all() and (s > 0).all()
    assert FAMILY_COLUMNS[ds.family] <= set(df.columns), FAMILY_COLUMNS[ds.family] - set(df.columns)


@needs_data
def test_loads_are_cached_and_copies():
    a = measured.load("aic-h100-gemm")
    a["measured_s"] = -1.0
    b = measured.load("aic-h100-gemm")
    assert (b["measured_s"] > 0).all()


@needs_data
def test_vidur_h100_spot_values():
    df = measured.load("vidur-h100", model="meta-llama/Llama-2-7b-hf", num_tokens=4096, tp=1)
    assert len(df) == 10  # one row per op (duplicated points in the CSV are collapsed)
    qkv = df[df.op == "attn_pre_proj"].iloc[0]
    assert qkv.measured_s == pytest.approx(0.584e-3, rel=1e-6)  # SOURCES.md: 0.584 ms
    assert (qkv.m, qkv.n, qkv.k) == (4096, 12288, 4096)
    up = df[df.op == "mlp_up_proj"].iloc[0]
    assert (up.m, up.n, up.k) == (4096, 2 * 11008, 4096)  # gated: gate + up
    down = df[df.op == "mlp_down_proj"].iloc[0]
    assert (down.n, down.k) == (4096, 11008)
    rope = df[df.op == "attn_rope"].iloc[0]
    assert rope.elements == 4096 * 64 * 128
    act = df[df.op == "mlp_act"].iloc[0]
    assert act.elements == 4096 * 11008
    assert pd.isna(act.m) and pd.isna(qkv.elements)
    assert set(df.dtype) == {"fp16"}


@needs_data
def test_vidur_shapes_follow_tp_and_gqa():
    df = measured.load("vidur-h100", model="meta-llama/Llama-2-70b-hf", num_tokens=256, tp=8)
    by = df.set_index("op")
    # 64 q heads, 8 kv heads, head_dim 128, TP 8
    assert by.loc["attn_pre_proj", "n"] == (64 + 2 * 8) * 128 // 8
    assert by.loc["attn_post_proj", "k"] == 64 * 128 // 8 and by.loc["attn_post_proj", "n"] == 8192
    assert by.loc["mlp_down_proj", "k"] == 28672 // 8
    phi = measured.load("vidur-h100", model="microsoft/phi-2", num_tokens=4096)
    assert "post_attention_layernorm" not in set(phi.op)  # parallel attention + MLP, no second norm
    up = phi[phi.op == "mlp_up_proj"].iloc[0]
    assert up.n == 10240  # not gated


@needs_data
def test_vidur_models_and_gpus():
    assert set(measured.load("vidur-h100").model) == {
        "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-70b-hf", "codellama/CodeLlama-34b-Instruct-hf",
        "Qwen/Qwen-72B", "internlm/internlm-20b", "microsoft/phi-2"}
    a100 = measured.load("vidur-a100", model="meta-llama/Llama-2-7b-hf", num_tokens=4096, tp=1, op="attn_pre_proj")
    assert a100.measured_s.iloc[0] == pytest.approx(1.911e-3, rel=1e-6)  # SOURCES.md: A100 1.911 ms
    key = ["model", "num_tokens", "tp", "op"]
    assert not measured.load("vidur-a40").duplicated(key).any()


@needs_data
def test_aic_gemm_spot_value():
    df = measured.load("aic-h100-gemm", m=4096, n=12288, k=4096)
    by = df.set_index("dtype")["measured_s"]
    assert by["bf16"] == pytest.approx(0.515e-3, rel=0.01)  # SOURCES.md: 0.515 ms
    assert set(measured.load("aic-h100-gemm").dtype) == {"bf16", "fp8", "fp8_block"}
    assert by["fp8"] < by["bf16"]


@needs_data
def test_nccl_sizes_are_elements_times_dtype_bytes():
    df = measured.load("aic-nccl")
    raw = pd.read_parquet(ROOT / "aiconfigurator/nccl/h100_sxm_nccl_2.29.2.parquet")
    h100 = df[df.hardware == "h100-sxm"].reset_index(drop=True)
    assert len(h100) == len(raw)
    half = raw.nccl_dtype == "half"
    assert (h100.size_bytes[half.to_numpy()].to_numpy() == raw.message_size[half].to_numpy() * 2).all()
    assert (h100.size_bytes[(~half).to_numpy()].to_numpy() == raw.message_size[~half].to_numpy()).all()
    assert np.allclose(h100.measured_s.to_numpy(), raw.latency.to_numpy() * 1e-3)
    assert set(df.op) == {"all_reduce", "all_gather", "reduce_scatter", "all_to_all"}
    assert set(df.dtype) == {"fp16", "int8"}
    assert set(df.system) == {"dgx-h100", "dgx-a100-80gb", "dgx-b200"}
    assert not df.crosses_nodes.any() and set(df.implementation) == {"nccl"}
    ar = measured.load("aic-h100-custom-allreduce")
    assert (ar.size_bytes == ar.message_elements * 2).all() and set(ar.dtype) == {"bf16"}
    assert set(ar.implementation) == {"trtllm"}


@needs_data
def test_vidur_network_units_and_topology():
    df = measured.load("vidur-net-a100_dgx-all_reduce")
    assert df.size_bytes.min() == 2048 and df.size_bytes.max() == 64 * 2**20  # bytes, 2 KiB .. 64 MiB
    first = df[(df.num_gpus == 2) & (df.devices_per_node == 1) & (df.size_bytes == 2048)]
    assert first.measured_s.iloc[0] == pytest.approx(0.043e-3)
    assert (df.crosses_nodes == (df.devices_per_node < df.num_gpus)).all()
    assert df[df.num_gpus == 16].crosses_nodes.all()
    assert set(df.system) == {"dgx-a100-80gb"} and set(df.implementation) == {"pytorch"}
    sr = measured.load("vidur-net-h100_dgx-send_recv")
    assert set(sr.op) == {"send_recv"}


@needs_data
def test_llmcompass_units():
    mm = measured.load("llmcompass-a100-matmul", m=64)
    assert mm.measured_s.iloc[0] == pytest.approx(0.19e-3)
    sm = measured.load("llmcompass-a100-softmax", m=4096, n=32)
    assert sm.measured_s.iloc[0] == pytest.approx(4096 * 32 / 9.99556025250909e9)
    ge = measured.load("llmcompass-a100-gelu", m=1024)
    assert ge.n.iloc[0] == 1 and ge.elements.iloc[0] == 1024
    assert ge.measured_s.iloc[0] == pytest.approx(1024 / 0.021262214336633663e9)
    ar = measured.load("llmcompass-a100-allreduce", size_bytes=8)
    assert ar.measured_s.iloc[0] == pytest.approx(12.52e-6) and ar.num_gpus.iloc[0] == 4


@needs_data
def test_attention_and_moe():
    ctx = measured.load("aic-h100-context-attention")
    assert {"bf16", "fp8"} <= set(ctx.kv_dtype)
    gen = measured.load("aic-h100-generation-attention", batch=32, num_heads=64, num_kv_heads=64, head_dim=64,
                        window=0, kv_dtype="bf16", kv_len=1)
    assert gen.measured_s.iloc[0] == pytest.approx(0.0239307e-3, rel=1e-4)
    moe = measured.load("aic-h100-moe")
    assert set(moe.distribution) == {"balanced", "power_law_1.01", "power_law_1.2"}
    assert {"bf16", "fp8", "fp8_block"} <= set(moe.dtype)


@needs_data
def test_serving_sets():
    me = measured.load("mlenergy-lm-arena-chat")
    assert len(me) == 328 and set(me.gpu) == {"h100-sxm", "b200"}
    assert (me.hardware == me.gpu).all()
    assert np.allclose(me.measured_s, me.median_itl_s) and (me.median_itl_s < 1).all()  # seconds, not ms
    assert set(me.weight_precision) == {"bf16", "fp8"}
    sr = measured.load("aic-silicon-refs")
    assert len(sr) == 35
    assert np.allclose(sr.measured_s, sr.tpot_s) and (sr.tpot_s < 1).all()
    raw = pd.read_csv(ROOT / "aiconfigurator/silicon_refs.csv")
    assert np.allclose(sr.ttft_s, raw.silicon_ttft_ms * 1e-3)
    assert set(sr.hardware) <= HARDWARE_NAMES


@needs_data
def test_filters():
    df = measured.load("aic-h100-gemm", dtype=["fp8", "fp8_block"], m=lambda s: s >= 1024)
    assert set(df.dtype) == {"fp8", "fp8_block"} and (df.m >= 1024).all()
    with pytest.raises(InvalidInputError):
        measured.load("aic-h100-gemm", colour="red")


def test_unknown_name():
    with pytest.raises(UnknownNameError) as err:
        measured.load("no-such-dataset")
    assert "aic-h100-gemm" in str(err.value) and "\n" not in str(err.value)


@needs_data
@pytest.mark.parametrize("rel", [
    "aiconfigurator/h100_sxm/gemm_bf16_trtllm_1.3.0rc20.csv",
    "aiconfigurator/h100_sxm/context_attention_bf16_trtllm_1.3.0rc20.csv",
    "aiconfigurator/h100_sxm/generation_attention_bf16_trtllm_1.3.0rc20.csv",
    "aiconfigurator/h100_sxm/moe_bf16_trtllm_1.3.0rc20.csv",
    "aiconfigurator/h100_sxm/custom_allreduce_trtllm_1.3.0rc20.csv",
    "aiconfigurator/h100_sxm/generation_attention_perf.parquet",
    "aiconfigurator/nccl/nccl_perf_h100_b200_a100.csv",
    "aiconfigurator/nccl/b200_sxm_nccl_2.29.2.parquet",
    "llmcompass/a100/matmul.csv",
    "llmcompass/a100/layernorm.csv",
    "llmcompass/a100/gelu.csv",
    "vidur/compute/h100/microsoft/phi-2/mlp.csv",
    "vidur/network/h100_dgx/all_reduce.csv",
    "ml-energy/lm-arena-chat.json",
])
def test_load_by_path_detects_format(rel):
    df = measured.load(ROOT / rel)
    assert len(df) > 0 and np.isfinite(df.measured_s).all() and (df.measured_s > 0).all()
    assert df["dataset"].iloc[0] == f"file:{(ROOT / rel).name}"
    assert len(measured.load(str(ROOT / rel))) == len(df)


@needs_data
def test_derived_csv_matches_parquet():
    csv = measured.load(ROOT / "aiconfigurator/h100_sxm/gemm_bf16_trtllm_1.3.0rc20.csv")
    pq = measured.load("aic-h100-gemm", dtype="bf16")
    merged = csv.merge(pq, on=["m", "n", "k"], suffixes=("_csv", "_pq"))
    assert len(merged) == len(csv) == len(pq)
    assert np.allclose(merged.measured_s_csv, merged.measured_s_pq, rtol=1e-5)
    hw = measured.load(ROOT / "vidur/compute/a40/meta-llama/Llama-2-7b-hf/mlp.csv")
    assert set(hw.hardware) == {"a40"} and set(hw.model) == {"meta-llama/Llama-2-7b-hf"}


# ------------------------------------------------------------------------------- broken files

def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_garbage_file_is_data_error(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(bytes(range(256)) * 8 + b"\x00\xff\xfe garbage \x89PNG")
    with pytest.raises(DataError) as err:
        measured.load(path)
    assert str(path) in _one_line(err)


def test_garbage_parquet_in_reader_is_data_error(tmp_path):
    from perfsim.measured import aiconfigurator
    path = tmp_path / "gemm_perf.parquet"
    path.write_bytes(b"PAR1" + b"\x13\x37" * 500)
    with pytest.raises(DataError) as err:
        aiconfigurator.gemm(path, "x")
    text = _one_line(err)
    assert "parquet" in text and "expected columns gemm_dtype, m, n, k, latency" in text


def test_missing_file_is_data_error(tmp_path):
    with pytest.raises(DataError) as err:
        measured.load(tmp_path / "absent.csv")
    assert "file not found" in _one_line(err)
    from perfsim.measured import vidur
    with pytest.raises(DataError) as err:
        vidur.network(tmp_path / "absent.csv", "x")
    assert "file not found" in _one_line(err)


def test_csv_missing_column_is_named(tmp_path):
    path = tmp_path / "gemm.csv"
    path.write_text("m,n,latency_ms\n1,32,0.0025\n2,32,0.0026\n")
    with pytest.raises(DataError) as err:
        measured.load(path)
    text = _one_line(err)
    assert "missing column k" in text and "expected columns m, n, k, latency_ms" in text


@pytest.mark.parametrize("m", ["-1", "1e308"])
def test_csv_shape_out_of_range_is_named(tmp_path, m):
    path = tmp_path / "gemm.csv"
    path.write_text(f"m,n,k,latency_ms\n{m},32,32,0.0025\n2,32,32,0.0026\n")
    with pytest.raises(DataError) as err:
        measured.load(path)
    assert "column m has 1 value(s) outside 0 to 2^48" in _one_line(err)


def test_vidur_csv_missing_column_is_named(tmp_path):
    from perfsim.measured import vidur
    path = tmp_path / "mlp.csv"
    cols = [c for c in vidur.COMPUTE_COLUMNS if c != "time_stats.mlp_act.median"]
    path.write_text(",".join(cols) + "\n" + ",".join(["1"] * len(cols)) + "\n")
    with pytest.raises(DataError) as err:
        vidur.compute(path, "x", "h100-sxm", model="m")
    assert "missing column time_stats.mlp_act.median" in _one_line(err)


def test_non_numeric_or_nonpositive_time_is_data_error(tmp_path):
    path = tmp_path / "gemm.csv"
    path.write_text("m,n,k,latency_ms\n1,32,32,abc\n")
    with pytest.raises(DataError) as err:
        measured.load(path)
    assert "latency_ms" in _one_line(err)
    path.write_text("m,n,k,latency_ms\n1,32,32,0\n")
    with pytest.raises(DataError) as err:
        measured.load(path)
    assert "finite positive" in _one_line(err)


def test_small_files_of_each_format(tmp_path):
    gemm = tmp_path / "g.csv"
    gemm.write_text("m,n,k,latency_ms\n16,4096,4096,0.02\n")
    df = measured.load(gemm)
    assert df.measured_s.iloc[0] == pytest.approx(2e-5) and df.dtype.iloc[0] == "bf16"
    mm = tmp_path / "matmul.csv"
    mm.write_text("64, 12288, 12288, 0.1900ms, 101.7124Tflops\n")
    assert measured.load(mm).measured_s.iloc[0] == pytest.approx(1.9e-4)
    sm = tmp_path / "my_softmax.csv"
    sm.write_text("4096, 32, 10.0\n")
    df = measured.load(sm)
    assert df.op.iloc[0] == "softmax" and df.measured_s.iloc[0] == pytest.approx(4096 * 32 / 10e9)
    ambiguous = tmp_path / "rows.csv"
    ambiguous.write_text("4096, 32, 10.0\n")
    with pytest.raises(DataError):
        measured.load(ambiguous)
    nccl = tmp_path / "n.csv"
    nccl.write_text("system,nccl_version,device,op_name,kernel_source,nccl_dtype,num_gpus,message_size_elements,"
                    "latency_ms\nh100_sxm,2.29.2,NVIDIA H100 80GB HBM3,alltoall,NCCL,half,8,1024,0.01\n")
    df = measured.load(nccl)
    assert df.op.iloc[0] == "all_to_all" and df.size_bytes.iloc[0] == 2048
    assert df.system.iloc[0] == "dgx-h100" and df.hardware.iloc[0] == "h100-sxm"
    assert math.isclose(df.measured_s.iloc[0], 1e-5)


@needs_data
def test_aiconfigurator_recipes_and_other_gpus_load(tmp_path):
    """A kernel table from another GPU in a recipe perfsim has no measurement of (MXFP4 weights x MXFP8
    activations, INT4 weight-only) loads, names its GPU from the device string or the system folder, and is
    costed at the recipe's math rate and weight bytes."""
    from perfsim.calibrate.rows import predict_rows
    from perfsim.cost.params import CostParams
    from perfsim.hardware import load_device

    raw = pd.read_parquet(ROOT / "aiconfigurator/h100_sxm/moe_perf.parquet")
    raw = raw[(raw.moe_dtype == "w4a16_mxfp4") & (raw.moe_ep_size == 1) & (raw.distribution == "balanced")
              & (raw.num_experts == 32)]
    rows = []
    for recipe in ("w4a8_mxfp4_mxfp8", "int4_wo", "bfloat16"):
        rows.append(raw.assign(moe_dtype=recipe, device="NVIDIA B200"))
    table = pd.concat(rows + [raw.assign(moe_dtype="fp8", device="NVIDIA B999")])
    folder = tmp_path / "b200_sxm"
    folder.mkdir()
    table.to_parquet(folder / "moe_perf.parquet")
    df = measured.load(folder / "moe_perf.parquet")
    assert set(df.hardware) == {"b200"}     # an unknown device string falls back to the system folder
    assert set(df.dtype) == {"w4a8_mxfp4_mxfp8", "int4_wo", "bf16", "fp8"}
    big = df[df.num_tokens == df.num_tokens.max()]
    t = dict(zip(big.dtype, predict_rows(big, "moe", load_device("b200"), CostParams()), strict=True))
    assert all(np.isfinite(v) and v > 0 for v in t.values())
    assert t["w4a8_mxfp4_mxfp8"] < t["bf16"]     # FP8 math beats BF16 math on a compute-bound batch
    small = df[df.num_tokens == 1]
    s = dict(zip(small.dtype, predict_rows(small, "moe", load_device("b200"), CostParams()), strict=True))
    assert s["int4_wo"] < s["fp8"] < s["bf16"]    # one token reads the weights: fewer bytes, less time


@needs_data
@pytest.mark.parametrize("table", ["gemm", "moe", "context_attention", "generation_attention", "custom_allreduce"])
def test_collector_txt_tables_read_like_the_parquet(tmp_path, table):
    """aiconfigurator keeps most of its systems' tables as the collector writes them: CSV text in the parquet's
    columns (systems/data/<system>/<backend>/<version>/<op>_perf.txt). They read as the parquet does."""
    raw = pd.read_parquet(ROOT / f"aiconfigurator/h100_sxm/{table}_perf.parquet").iloc[::97]
    folder = tmp_path / "h100_sxm"
    folder.mkdir()
    raw.to_parquet(folder / f"{table}_perf.parquet")
    raw.to_csv(folder / f"{table}_perf.txt", index=False)
    from_txt = measured.load(folder / f"{table}_perf.txt").drop(columns=["dataset"])
    from_parquet = measured.load(folder / f"{table}_perf.parquet").drop(columns=["dataset"])
    pd.testing.assert_frame_equal(from_txt.reset_index(drop=True), from_parquet.reset_index(drop=True),
                                  check_dtype=False)


@needs_data
def test_collector_nccl_txt_takes_its_system_from_the_folder(tmp_path):
    raw = pd.read_parquet(ROOT / "aiconfigurator/nccl/b200_sxm_nccl_2.29.2.parquet")
    folder = tmp_path / "b200_sxm" / "nccl" / "2.27.3"
    folder.mkdir(parents=True)
    raw.to_csv(folder / "nccl_perf.txt", index=False)
    df = measured.load(folder / "nccl_perf.txt")
    assert set(df.hardware) == {"b200"} and set(df.system) == {"dgx-b200"} and len(df) == len(raw)


def _mla_table(folder, generation: bool, legacy: bool = False):
    """A table in the layout of aiconfigurator's collector/trtllm/collect_mla.py output (values made up)."""
    rows = [dict(framework="TRTLLM", version="1.0", device="NVIDIA H100 80GB HBM3",
                 op_name="mla_generation" if generation else "mla_context", kernel_source="default",
                 mla_dtype="float16", kv_cache_dtype="float16", num_heads=128 // tp, batch_size=b,
                 isl=1 if generation else s, tp_size=tp, step=s if generation else 0, latency=0.05 * b * s / 1024)
            for b in (1, 8) for s in (128, 2048) for tp in (1, 8)]
    frame = pd.DataFrame(rows)
    if legacy:
        frame = frame.drop(columns=["num_heads"])
    path = folder / f"{'generation' if generation else 'context'}_mla_perf.txt"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_mla_tables_load(tmp_path, legacy):
    ctx = measured.load(_mla_table(tmp_path, False, legacy))
    gen = measured.load(_mla_table(tmp_path, True, legacy))
    assert set(ctx.num_heads) == set(gen.num_heads) == {128, 16}    # per GPU: 128 heads over tp 1 or 8
    assert sorted(set(gen.kv_len)) == [129, 2049]                   # step cached latents plus the new token
    assert sorted(set(ctx.isl)) == [128, 2048] and set(ctx.hardware) == {"h100-sxm"}
    assert (ctx.kv_lora_rank == 512).all() and (gen.qk_rope_head_dim == 64).all()
    from perfsim.calibrate.from_tables import family_of
    assert family_of("x", ctx) == "context_mla" and family_of("x", gen) == "generation_mla"


def test_mla_table_rows_cost_like_the_model_graph(tmp_path):
    """A table row is costed as the same kernel of a DeepSeek-V3 graph at that shape (tp 8: 16 heads per GPU)."""
    from perfsim import graph as graphs
    from perfsim.calibrate.profile import shipped_profile
    from perfsim.calibrate.rows import predict_rows
    from perfsim.cost.calibrated import kernel_time
    from perfsim.hardware import load_device
    from perfsim.ops import Attention
    device, params = load_device("h100-sxm"), shipped_profile("h100-sxm").params
    for generation, family in ((False, "context_mla"), (True, "generation_mla")):
        df = measured.load(_mla_table(tmp_path, generation))
        row = df[(df.batch == 8) & (df.num_heads == 16)].iloc[[-1]]
        seq = int(row.kv_len.iloc[0] - 1) if generation else int(row.isl.iloc[0])
        g = graphs.build("deepseek-v3", "decode" if generation else "prefill", 8,
                         **({"context": seq} if generation else {"seq": seq}), tp=8)
        op = next(d["op"] for _, d in g.nodes(data=True) if isinstance(d["op"], Attention))
        expected = kernel_time(op, device, params)[0]
        assert predict_rows(row, family, device, params)[0] == pytest.approx(expected, rel=1e-9)


def test_mla_tables_validate(tmp_path):
    from perfsim.hardware import load_device
    from perfsim.validate import score_file
    for generation in (False, True):
        path = _mla_table(tmp_path, generation)
        scores = score_file(str(path), measured.load(path), load_device("b200"), max_rows=200)
        assert scores and all(np.isfinite(s.mape_calibrated) and s.mape_transfer is not None for s in scores)
