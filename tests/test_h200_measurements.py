"""perfsim's own H200 calibration run (perfsim/measured/shipped/h200-2026-11-29): provenance, physics against
the shipped h200-sxm spec, the energy fit of bench_power, and how well H100-fitted parameters transfer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from perfsim import measured
from perfsim.calibrate import bench_power
from perfsim.calibrate.profile import shipped_profile
from perfsim.calibrate.rows import predict_rows
from perfsim.cost.params import CostParams, ElementwiseParams
from perfsim.hardware import load_device
from perfsim.measured.registry import H200_RUN, SHIPPED

RUN = SHIPPED / H200_RUN
H200_SETS = [n for n in measured.names() if n.startswith("perfsim-h200-")]


def test_the_run_ships_with_its_provenance():
    prov = json.loads((RUN / "provenance.json").read_text())
    assert prov["gpu"]["name"] == "NVIDIA H200" and prov["gpu"]["compute_capability"] == "9.0"
    assert prov["gpu"]["driver_version"] and prov["versions"]["torch"] and prov["versions"]["cuda"]
    assert prov["date_utc"].startswith("2026-11-29") and prov["plan"]["quick"] is False
    assert set(prov["files"]) <= {p.name for p in RUN.iterdir()}
    assert len(H200_SETS) == 4
    for name in H200_SETS:
        df = measured.load(name)
        assert len(df) >= 28 and (df.hardware == "h200-sxm").all() and (df.measured_s > 0).all()


def test_no_measured_kernel_beats_the_datasheet_roofline():
    """The spec's peaks bound the silicon: every GEMM takes at least max(FLOPs / peak, bytes / HBM bandwidth),
    and no copy streams faster than the datasheet HBM bandwidth."""
    dev = load_device("h200-sxm")
    g = measured.load("perfsim-h200-gemm")
    elem = g.dtype.map({"bf16": 2, "fp16": 2, "fp32": 4, "fp8": 1}).to_numpy(float)
    flops = 2.0 * g.m * g.n * g.k
    peak = np.array([dev.peak_flops(d) for d in g.dtype])
    nbytes = elem * (g.m * g.k + g.k * g.n) + 2.0 * g.m * g.n
    roof = np.maximum(flops / peak, nbytes / dev.memory_bw_Bps)
    assert (g.measured_s.to_numpy() >= roof).all()
    copies = pd.read_csv(RUN / "cuda_bandwidth.csv")
    streaming = copies[copies.array_bytes > 4 * dev.last_level_cache.capacity]
    assert len(streaming) and (streaming.bandwidth_Bps < dev.memory_bw_Bps).all()


def _mape(name: str, device: str, params: CostParams) -> float:
    ds = measured.DATASETS[name]
    df = measured.load(name)
    pred = predict_rows(df, ds.family, load_device(device), params)
    return float(np.mean(np.abs(pred / df.measured_s.to_numpy() - 1.0)) * 100.0)


@pytest.mark.parametrize("name,floor", [("perfsim-h200-gemm", 30.0), ("perfsim-h200-generation-attention", 30.0)])
def test_h100_parameters_transfer_to_the_h200(name, floor):
    """Nothing is fitted on these rows: the H100 profile, applied through the h200-sxm spec, predicts them
    (GEMM 18.6%, decode 17.9% when written); and the H200's own spec predicts them better than the H100's,
    so the spec's peaks and bandwidths, not the fitted constants, carry the GPU."""
    params = shipped_profile("h100-sxm").params
    on_h200 = _mape(name, "h200-sxm", params)
    assert on_h200 < floor
    assert on_h200 < _mape(name, "h100-sxm", params) - 5.0


def test_unfitted_elementwise_kinds_take_their_nearest_fitted_kind():
    act = ElementwiseParams(cycles_per_element=0.3)
    norm = ElementwiseParams(cycles_per_element=0.5)
    params = CostParams(elementwise={"activation": act, "norm": norm})
    assert params.elementwise_for("gelu") == act
    assert params.elementwise_for("layernorm") == norm and params.elementwise_for("softmax") == norm
    assert params.elementwise_for("rotary") == ElementwiseParams()  # nothing alike fitted: the default
    assert CostParams(elementwise={"gelu": norm, "activation": act}).elementwise_for("gelu") == norm


# ----------------------------------------------------------------------------------------- energy

def _synthetic(idle=100.0, e_byte=50e-12, e_flop=0.5e-12):
    def row(workload, dtype, f, b):
        return {"workload": workload, "dtype": dtype, "flops_per_s": f, "bytes_per_s": b,
                "power_w": idle + e_byte * b + e_flop * f}
    return [row("idle", "", 0.0, 0.0), row("copy", "", 0.0, 4e12), row("gemm", "bf16", 7e14, 2e11),
            row("check", "bf16", 3e14, 3e12)]


def test_fit_energy_recovers_known_coefficients_and_leaves_checks_out():
    rows = _synthetic()
    fitted = bench_power.fit_energy(rows)
    assert fitted["idle_w"] == pytest.approx(100.0)
    assert fitted["pj_per_byte"] == pytest.approx(50.0) and fitted["pj_per_flop"] == {"bf16": pytest.approx(0.5)}
    rows[-1]["power_w"] *= 3.0  # a check row must not move the fit
    assert bench_power.fit_energy(rows) == fitted
    assert bench_power.predict_power(fitted, rows[2]) == pytest.approx(rows[2]["power_w"])


def test_fit_energy_needs_idle_and_copy():
    with pytest.raises(ValueError, match="idle and a copy"):
        bench_power.fit_energy([r for r in _synthetic() if r["workload"] != "copy"])
    rows = _synthetic()
    rows[1]["power_w"] = rows[0]["power_w"]
    with pytest.raises(ValueError, match="no more than idle"):
        bench_power.fit_energy(rows)


def test_measured_energy_model_predicts_the_held_out_h200_gemms():
    """Fitted on idle, copy and the 8192^3 GEMMs; the two held-out GEMMs (m = 64, 512), capped at the board
    limit as perfsim.cost.energy caps power, land within 5% (about 1% when written)."""
    rows = pd.read_csv(RUN / "cuda_power.csv").fillna({"dtype": ""}).to_dict("records")
    fitted = bench_power.fit_energy(rows)
    checks = [r for r in rows if r["workload"] == "check"]
    assert len(checks) == 2
    for r in checks:
        predicted = min(bench_power.predict_power(fitted, r), r["power_limit_w"])
        assert abs(predicted / r["power_w"] - 1.0) < 0.05
    spec = load_device("h200-sxm").energy
    assert spec.pj_per_flop["bf16"] == pytest.approx(fitted["pj_per_flop"]["bf16"], rel=0.01)
    assert spec.pj_per_byte["hbm"] == pytest.approx(fitted["pj_per_byte"], rel=0.01)


# ------------------------------------------------------------------------------ whole-model steps

def test_whole_model_steps_on_the_h200():
    """Llama-3.1-8B, Llama-2-13B and CodeLlama-34B prefill and decode steps measured on an H200 (CUDA graphs),
    predicted with nothing fitted on them (MAPE when written: time 6.9% decode, 6.9% prefill, the prefills
    power-bound at the 700 W cap; energy per step 7.5% and 7.5%). No measured step beats the pure roofline,
    and no prediction draws more than the board's limit."""
    from perfsim.validate import model_steps
    fitted, roofline = model_steps("auto"), model_steps("none")
    assert len(fitted) >= 25 and set(fitted.model) == {"llama-3.1-8b", "llama-2-13b", "codellama-34b"}
    ape = (fitted.predicted_s / fitted.measured_s - 1.0).abs()
    assert ape[fitted.task == "decode"].mean() < 0.12
    assert ape[fitted.task == "prefill"].mean() < 0.25
    energy = (fitted.predicted_energy_j / fitted.energy_j - 1.0).abs()
    assert energy[fitted.task == "decode"].mean() < 0.15 and energy[fitted.task == "prefill"].mean() < 0.25
    assert (roofline.predicted_s < roofline.measured_s).all()
    assert (fitted.predicted_power_w <= 700.0 + 1e-6).all()
