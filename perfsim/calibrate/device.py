"""`perfsim calibrate --device cpu|cuda`: measure this machine, describe it, fit a profile for it.

    calibrate_device("cpu", Path("out"))   # {"hardware", "profile", "measurements", "report", ...}

writes
    out/measurements/<kind>_<family>.csv   raw kernel times in the tidy formats of perfsim.measured (one family each)
    out/measurements/<kind>_bandwidth.csv, <kind>_overhead.csv   streaming/copy bandwidth and call overhead
    out/measurements/provenance.json       host, library versions, date, plan, skipped cases
    out/hardware.yaml                      a perfsim device spec: measured peaks, bandwidths, launch overhead
    out/profile.yaml                       CostParams fitted on every other shape, scored on the rest

The split is deterministic: within each (family, dtype, op) group, rows sorted by size alternate between
the fit half and the held-out half, so both halves span the whole size range.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from perfsim.calibrate import bench_cpu, bench_cuda, bench_power
from perfsim.calibrate.fit import fit
from perfsim.calibrate.profile import Profile, save_profile
from perfsim.calibrate.rows import predict_rows
from perfsim.cost.params import CostParams
from perfsim.errors import DataError, InvalidInputError, SpecError, one_line
from perfsim.hardware import Device, hardware_names
from perfsim.specfiles import read_mapping, validation_message

Progress = Callable[[str, float], None]

HEAD = ["dataset", "hardware", "source"]
TARGET = "measured_s"
# family -> columns between the identity columns and measured_s (as perfsim.measured readers produce them)
TIDY_COLUMNS = {
    "gemm": ["op", "m", "n", "k", "dtype", "kernel_source"],
    "elementwise": ["op", "m", "n", "elements", "dtype"],
    "context_attention": ["batch", "isl", "num_heads", "num_kv_heads", "head_dim", "window", "dtype", "kv_dtype"],
    "generation_attention": ["batch", "kv_len", "num_heads", "num_kv_heads", "head_dim", "window", "dtype",
                             "kv_dtype"],
}
# size of a row, to order rows before alternating them between the fit and held-out halves
SIZE = {
    "gemm": lambda df: df.m * df.n * df.k,
    "elementwise": lambda df: df.elements,
    "context_attention": lambda df: df.batch * df.isl * df.isl * df.num_heads * df.head_dim,
    "generation_attention": lambda df: df.batch * (df.kv_len + 1) * df.num_kv_heads * df.head_dim,
}
GROUP = {"gemm": ["dtype"], "elementwise": ["op", "dtype"], "context_attention": ["dtype"],
         "generation_attention": ["dtype"]}
FIT_ORDER = ("gemm", "elementwise", "context_attention", "generation_attention")
SPLIT = "every other shape held out (rows sorted by size within each dtype/op alternate fit, held-out)"
KINDS = ("cpu", "cuda")


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------------- frames

def tidy_frame(rows: list[dict], family: str, hardware: str, dataset: str, source: str) -> pd.DataFrame:
    """Rows of one family (dicts holding at least its columns and measured_s) -> a tidy frame."""
    cols = TIDY_COLUMNS[family]
    frame = pd.DataFrame([{c: r[c] for c in (*cols, TARGET)} for r in rows], columns=[*cols, TARGET])
    frame.insert(0, "source", source)
    frame.insert(0, "hardware", hardware)
    frame.insert(0, "dataset", dataset)
    frame[TARGET] = frame[TARGET].astype(float)
    return frame.reset_index(drop=True)


def extra_frame(rows: list[dict], hardware: str, dataset: str, source: str) -> pd.DataFrame:
    """Bandwidth / overhead rows (no perfsim.measured family): identity columns first, measured_s last."""
    frame = pd.DataFrame(rows)
    if TARGET in frame:
        frame = frame[[c for c in frame.columns if c != TARGET] + [TARGET]]
    frame.insert(0, "source", source)
    frame.insert(0, "hardware", hardware)
    frame.insert(0, "dataset", dataset)
    return frame


def split_every_other(df: pd.DataFrame, family: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit, held_out): within each group, rows sorted by size (then by their columns) alternate."""
    keys = TIDY_COLUMNS[family]
    order = df.assign(_size=SIZE[family](df)).sort_values(["_size", *keys], kind="stable")
    rank = order.groupby(GROUP[family], sort=False).cumcount()
    fit_idx = rank.index[(rank % 2 == 0).to_numpy()]
    held_idx = rank.index[(rank % 2 == 1).to_numpy()]
    return df.loc[sorted(fit_idx)].reset_index(drop=True), df.loc[sorted(held_idx)].reset_index(drop=True)


# ---------------------------------------------------------------------------------------- scoring

def ape(pred: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(pred, float) - np.asarray(measured, float)) / np.asarray(measured, float) * 100.0


def score(pred: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    err = ape(pred, measured)
    if len(err) == 0:
        return {"mape_pct": float("nan"), "p90_ape_pct": float("nan"), "median_ape_pct": float("nan"), "rows": 0.0}
    return {"mape_pct": float(np.mean(err)), "p90_ape_pct": float(np.percentile(err, 90)),
            "median_ape_pct": float(np.median(err)), "rows": float(len(err))}


def fit_and_score(frames: dict[str, pd.DataFrame], device: Device, start: CostParams | None = None,
                  progress: Progress | None = None) -> tuple[CostParams, dict[str, dict[str, float]]]:
    """Fit each family on its fit half (in FIT_ORDER, each starting from the last), then score every family's
    held-out half with the final parameters. Scores: '<family>' and '<family>:<dtype or op>' entries with
    held-out MAPE / p90 APE (percent), plus the fit half's MAPE and the unfitted (start) MAPE for reference."""
    params = start or CostParams()
    base = params
    halves = {fam: split_every_other(df, fam) for fam, df in frames.items() if len(df) >= 2}
    families = [f for f in FIT_ORDER if f in halves]
    for i, fam in enumerate(families):
        if progress is not None:
            progress(f"fitting {fam}", 0.95 + 0.04 * i / max(1, len(families)))
        params = fit(halves[fam][0], fam, device, params)
    scores: dict[str, dict[str, float]] = {}
    for fam in families:
        fit_half, held = halves[fam]
        pred = predict_rows(held, fam, device, params)
        entry = score(pred, held[TARGET].to_numpy(float))
        entry["fit_mape_pct"] = score(predict_rows(fit_half, fam, device, params),
                                      fit_half[TARGET].to_numpy(float))["mape_pct"]
        entry["fit_rows"] = float(len(fit_half))
        entry["unfitted_mape_pct"] = score(predict_rows(held, fam, device, base), held[TARGET].to_numpy(float))[
            "mape_pct"]
        scores[fam] = entry
        sub = "op" if fam == "elementwise" else "dtype"
        for value, idx in held.groupby(sub).indices.items():
            scores[f"{fam}:{value}"] = score(pred[idx], held[TARGET].to_numpy(float)[idx])
    return params, scores


# ------------------------------------------------------------------------------------------ writing

def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return _write_text(path, frame.to_csv(index=False, float_format="%.9g"))


def write_json(data: dict, path: Path) -> Path:
    return _write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_hardware(spec: dict, path: Path) -> Device:
    """Write a hardware YAML and read it back through the Device schema (one-line SpecError if invalid)."""
    _write_text(path, "# written by perfsim calibrate; measured values say so in their source\n"
                + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=120))
    try:
        return Device.model_validate(read_mapping(path))
    except ValidationError as exc:
        raise SpecError(validation_message(str(path), exc)) from None


def device_name(base: str) -> str:
    """A hardware name that does not shadow a shipped spec."""
    try:
        shipped = set(hardware_names())
    except SpecError:
        shipped = set()
    return f"{base}-local" if base in shipped else base


def _nan_free(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {k: {m: (round(v, 4) if np.isfinite(v) else -1.0) for m, v in d.items()} for k, d in scores.items()}


# ------------------------------------------------------------------------------------------- driver

def _source(kind: str, prov: dict, date: str) -> str:
    if kind == "cpu":
        blas = prov.get("numpy_config", {}).get("blas", {})
        return (f"perfsim calibrate {date} (numpy {prov.get('numpy')}, "
                f"{blas.get('name', 'BLAS')} {blas.get('version', '')})").replace(" )", ")")
    v = prov.get("versions", {})
    return f"perfsim calibrate {date} (torch {v.get('torch')}, CUDA {v.get('cuda')})"


def _warnings(prov: dict, skipped: dict) -> list[str]:
    out = []
    note = prov.get("threads", {}).get("note")
    if note:
        out.append(note)
    if skipped:
        out.append("some cases were skipped: " + ", ".join(f"{k} ({v})" for k, v in skipped.items()))
    return out


def _start_params(family_launch: dict[str, float], gemm_dtypes, elementwise: bool) -> CostParams:
    """Defaults, with each family's launch time started at the measured call overhead."""
    data = CostParams().model_dump()
    if "gemm" in family_launch:
        base = CostParams().gemm_for("default").model_dump()
        data["gemm"] = {d: {**base, "launch_s": family_launch["gemm"]} for d in gemm_dtypes}
    if elementwise and "elementwise" in family_launch:
        data["elementwise"] = {"default": {**data["elementwise"]["default"], "launch_s": family_launch["elementwise"]}}
    return CostParams.model_validate(data)


def _energy(power_rows: list[dict], spec: dict, date: str, skipped: dict) -> dict | None:
    """Fit the energy coefficients from the power rows into spec['energy']; None (noted) if they cannot be."""
    if not power_rows:
        return None
    try:
        fitted = bench_power.fit_energy(power_rows)
    except ValueError as exc:
        skipped[f"energy: {exc}"] = 1
        return None
    spec["energy"] = bench_power.energy_section(fitted, spec["memory"][-1]["name"], date)
    spec["power"] = {**spec["power"], "idle": f"{fitted['idle_w']:.0f} W",
                     "source": f"{spec['power']['source']}; idle: NVML energy counter over an idle interval"}
    checks = [{"what": f"{r['dtype']} GEMM {r['flops_per_s'] / 1e12:.0f} TFLOP/s {r['bytes_per_s'] / 1e12:.2f} TB/s",
               "measured_w": round(r["power_w"], 1), "predicted_w": round(bench_power.predict_power(fitted, r), 1)}
              for r in power_rows if r["workload"] == "check"]
    return {"idle_w": fitted["idle_w"], **spec["energy"], "held_out_checks": checks}


def calibrate_device(kind: str, out_dir: Path, progress: Progress | None = None, quick: bool = False) -> dict:
    """Measure this machine's CPU ('cpu', numpy) or first NVIDIA GPU ('cuda', torch), write its hardware spec,
    raw measurements and a fitted profile under out_dir, and return their paths with the held-out scores.

    Returns {"hardware": Path, "profile": Path, "measurements": [Path, ...] (tidy family CSVs),
             "other_measurements": [Path, ...] (bandwidth, overhead, provenance), "device": name,
             "report": {"device", "kind", "quick", "date", "wall_s", "measure_s", "peak_flops" (FLOP/s by dtype),
                        "bandwidth_Bps" (by memory level), "launch_s", "rows" (by family), "scores" (as in
                        profile.scores: held-out mape_pct, p90_ape_pct, median_ape_pct per family and per
                        dtype/op), "skipped" (cases cut by the time budget), "warnings" (busy machine, skips)}}.
    Raises InvalidInputError (one line) for an unknown kind, or 'cuda' without torch and a CUDA GPU.
    """
    if kind not in KINDS:
        raise InvalidInputError(f"device: unknown kind {kind!r}; accepted: {', '.join(KINDS)}")
    if kind == "cuda":
        bench_cuda.torch_cuda()  # one-line InvalidInputError without torch or a GPU, before any work
    out_dir = Path(out_dir).expanduser()
    meas_dir = out_dir / "measurements"
    try:
        meas_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"out_dir: cannot create {meas_dir} ({exc.strerror or exc})") from None
    started = _now()
    date = started.strftime("%Y-%m-%d")

    if kind == "cpu":
        meas = bench_cpu.run_cpu(quick, progress)
        try:
            summary = bench_cpu.summarize(meas)
            name = device_name(bench_cpu.slug(meas.info.get("model", "")))
            spec = bench_cpu.hardware_spec(name, meas, summary, date)
        except ValueError as exc:
            raise DataError(one_line(f"calibrate cpu: {exc}")) from None
        rows = {"gemm": meas.gemm, "elementwise": meas.elementwise}
        launch = {"gemm": summary.get("matmul_overhead_s") or 2e-6, "elementwise": summary.get("call_overhead_s")
                  or 1e-6}
        peaks = summary["peak_flops"]
        bandwidth = {"ddr": summary["ddr_bandwidth_Bps"], "llc": summary["llc_bandwidth_Bps"],
                     "ddr_1thread": summary["ddr_bandwidth_1thread_Bps"]}
        launch_s = summary.get("call_overhead_s")
        energy = None
    else:
        meas = bench_cuda.run_cuda(quick, progress)
        try:
            summary = bench_cuda.summarize(meas.gemm, meas.bandwidth, meas.overhead, meas.props.get("l2_cache_size"))
            name = device_name(bench_cuda.slug(meas.props.get("name", "gpu")))
            spec = bench_cuda.hardware_spec(name, meas.props, meas.smi, summary, date)
        except ValueError as exc:
            raise DataError(one_line(f"calibrate cuda: {exc}")) from None
        rows = {"gemm": meas.gemm, "elementwise": meas.elementwise, "context_attention": meas.context_attention,
                "generation_attention": meas.generation_attention}
        launch = {"gemm": summary.get("launch_s") or 5e-6, "elementwise": summary.get("launch_s") or 5e-6}
        peaks = summary["peak_flops"]
        bandwidth = {"hbm": summary["main_bandwidth_Bps"], "l2": summary["l2_bandwidth_Bps"]}
        launch_s = summary.get("launch_s")
        energy = _energy(meas.power, spec, date, meas.skipped)

    hw_path = out_dir / "hardware.yaml"
    device = write_hardware(spec, hw_path)
    prov = dict(meas.provenance)
    source = _source(kind, prov, date)
    frames = {fam: tidy_frame(r, fam, name, f"calibrate-{name}-{fam}", source) for fam, r in rows.items() if r}
    paths = [write_csv(df, meas_dir / f"{kind}_{fam}.csv") for fam, df in frames.items()]
    other = [write_csv(extra_frame(meas.bandwidth, name, f"calibrate-{name}-bandwidth", source),
                       meas_dir / f"{kind}_bandwidth.csv"),
             write_csv(extra_frame(meas.overhead, name, f"calibrate-{name}-overhead", source),
                       meas_dir / f"{kind}_overhead.csv")]
    if getattr(meas, "power", None):
        other.append(write_csv(extra_frame(meas.power, name, f"calibrate-{name}-power", source),
                               meas_dir / f"{kind}_power.csv"))

    gemm_dtypes = sorted(frames["gemm"].dtype.unique()) if "gemm" in frames else []
    start = _start_params(launch, gemm_dtypes, "elementwise" in frames)
    params, scores = fit_and_score(frames, device, start, progress)
    scores = _nan_free(scores)
    profile = Profile(device=name, fitted_on=[f"{p.name} (fit half)" for p in paths], split=SPLIT, scores=scores,
                      created=started.strftime("%Y-%m-%dT%H:%M:%SZ"), params=params)
    profile_path = save_profile(profile, out_dir / "profile.yaml")

    report = {
        "device": name, "kind": kind, "quick": quick, "date": date,
        "wall_s": round((_now() - started).total_seconds(), 2),
        "measure_s": round(meas.wall_s, 2),
        "peak_flops": peaks, "bandwidth_Bps": bandwidth, "launch_s": launch_s, "energy": energy,
        "rows": {fam: len(df) for fam, df in frames.items()},
        "scores": scores, "skipped": meas.skipped, "warnings": _warnings(prov, meas.skipped),
    }
    prov.update({"device_name": name, "summary": summary, "skipped": meas.skipped, "measure_wall_s": meas.wall_s,
                 "files": [p.name for p in paths + other]})
    other.append(write_json(prov, meas_dir / "provenance.json"))
    if progress is not None:
        progress("done", 1.0)
    return {"hardware": hw_path, "profile": profile_path, "measurements": paths, "other_measurements": other,
            "device": name, "report": report}
