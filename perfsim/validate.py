"""Validation: predict every row of the measured data sets and report error per data set and op.

Protocol (stated in every report): rows are split by a seeded random fold into a fit half and a
test half. "uncalibrated" is the efficiency model with its prior parameters; "calibrated" is the
same model with parameters fitted on the fit half of that data set, scored on the test half only.
"transfer" (non-H100 data sets) uses parameters fitted on the fit halves of the H100 data sets only,
applied through the target GPU's own specs, and is scored on the target's test half.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from perfsim import measured
from perfsim.calibrate.fit import fit, fit_many
from perfsim.calibrate.profile import TRANSFER as TRANSFER_SOURCE
from perfsim.calibrate.profile import shipped_profile
from perfsim.calibrate.rows import PREDICTORS, predict_rows
from perfsim.cost.calibrated import transferred_device
from perfsim.cost.params import CostParams
from perfsim.errors import DataError, UnknownNameError
from perfsim.hardware import load_device

SPLIT = "random 50/50 row fold (seed 0): parameters fitted on one half, errors reported on the other"


def ape(predicted: np.ndarray, measured_s: np.ndarray) -> np.ndarray:
    """Absolute percentage error |p - m| / m."""
    return np.abs(predicted / measured_s - 1.0)


@dataclass
class Score:
    dataset: str
    group: str
    hardware: str
    n_test: int
    mape_uncalibrated: float
    p90_uncalibrated: float
    mape_calibrated: float
    p90_calibrated: float
    mape_transfer: float | None = None
    p90_transfer: float | None = None


@dataclass
class Report:
    split: str
    scores: list[Score] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"split": self.split, "scores": [asdict(s) for s in self.scores], "skipped": self.skipped}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(s) for s in self.scores])


def fold(n: int, seed: int = 0) -> np.ndarray:
    """True for rows in the fit half."""
    return np.random.default_rng(seed).random(n) < 0.5


def _group_column(df: pd.DataFrame, family: str) -> str | None:
    if family in ("layer_ops", "collective"):
        return "op" if df.op.nunique() > 1 else None
    if "dtype" in df and df.dtype.nunique() > 1:
        return "dtype"
    if family == "moe" and "distribution" in df:
        return "distribution"
    return None


def validated_datasets() -> list[str]:
    from perfsim.serving.validation import SERVING_DATASETS
    return [n for n in measured.names() if measured.DATASETS[n].family in PREDICTORS or n in SERVING_DATASETS]


def transfer_params(max_rows: int = 6000, seed: int = 0) -> CostParams:
    """Parameters fitted on the fit halves of every H100 data set (nothing from other GPUs)."""
    tables = []
    for name in validated_datasets():
        ds = measured.DATASETS[name]
        if ds.hardware[0] == TRANSFER_SOURCE and ds.family in PREDICTORS:
            df = measured.load(name)
            tables.append((df[fold(len(df), seed)], ds.family))
    return fit_many(tables, load_device(TRANSFER_SOURCE), max_rows=max_rows, seed=seed)


def score_dataset(name: str, transfer: CostParams | None = None, max_rows: int = 6000, seed: int = 0,
                  max_test_rows: int | None = None) -> list[Score]:
    ds = measured.DATASETS[name]
    df = measured.load(name)
    if len(ds.hardware) > 1:  # one set measured on several GPUs: each GPU is fitted and scored on its own
        return [score for hw, part in df.groupby("hardware")
                for score in score_frame(f"{name}[{hw}]", part, ds.family, load_device(hw), transfer, max_rows,
                                         seed, max_test_rows)]
    return score_frame(name, df, ds.family, load_device(ds.hardware[0]), transfer, max_rows, seed, max_test_rows)


def score_frame(name: str, df: pd.DataFrame, family: str, device, transfer: CostParams | None = None,
                max_rows: int = 6000, seed: int = 0, max_test_rows: int | None = None) -> list[Score]:
    """Fit on one half of `df`, score both the prior and the fitted model (and `transfer`) on the other."""
    ds_family = family
    in_fit = fold(len(df), seed)
    test = df[~in_fit]
    if max_test_rows and len(test) > max_test_rows:
        test = test.sample(max_test_rows, random_state=seed)
    calibrated = fit(df[in_fit], ds_family, device, CostParams(), max_rows=max_rows, seed=seed)
    y = test.measured_s.to_numpy(float)
    errors = {"uncalibrated": ape(predict_rows(test, ds_family, device, CostParams()), y),
              "calibrated": ape(predict_rows(test, ds_family, device, calibrated), y)}
    if transfer is not None and device.name != TRANSFER_SOURCE:
        seen = transferred_device(device, load_device(TRANSFER_SOURCE))   # at its achievable matmul share
        errors["transfer"] = ape(predict_rows(test, ds_family, seen, transfer), y)
    groups = {"all": np.ones(len(test), bool)}
    col = _group_column(test, ds_family)
    if col:
        groups.update({str(k): (test[col] == k).to_numpy() for k in sorted(test[col].dropna().unique())})
    scores = []
    for group, mask in groups.items():
        e = {k: v[mask] for k, v in errors.items()}
        t = e.get("transfer")
        scores.append(Score(dataset=name, group=group, hardware=device.name, n_test=int(mask.sum()),
                            mape_uncalibrated=float(e["uncalibrated"].mean()),
                            p90_uncalibrated=float(np.percentile(e["uncalibrated"], 90)),
                            mape_calibrated=float(e["calibrated"].mean()),
                            p90_calibrated=float(np.percentile(e["calibrated"], 90)),
                            mape_transfer=float(t.mean()) if t is not None else None,
                            p90_transfer=float(np.percentile(t, 90)) if t is not None else None))
    return scores


def score_file(path: str, frame: pd.DataFrame, device, max_rows: int = 6000, seed: int = 0) -> list[Score]:
    """Score a measured file's rows as score_frame does, its op family guessed from its columns; on a GPU other
    than the H100 the shipped H100 profile is the transfer model (what `predict` uses for a GPU without one).
    A file of serving runs in a serving data set's format is simulated as that set is (its rows name their GPUs;
    `device` is not used)."""
    from perfsim.calibrate.from_tables import family_of
    from perfsim.serving.validation import serving_dataset_of, validate_scores
    serving = serving_dataset_of(frame)
    if serving is not None:
        return validate_scores(serving, seed=seed, frame=frame, label=path)
    family = family_of(path, frame)
    if family not in PREDICTORS:
        raise DataError(f"{path}: no operator model for its columns (family {family}); accepted families: "
                        f"{', '.join(PREDICTORS)}")
    transfer = shipped_profile(TRANSFER_SOURCE).params if device.name != TRANSFER_SOURCE else None
    return score_frame(path, frame, family, device, transfer, max_rows, seed)


def validate(datasets: list[str] | None = None, progress: Callable[[str], None] | None = None,
             max_rows: int = 6000, max_test_rows: int | None = None, seed: int = 0) -> Report:
    """Score the cost model on measured data sets (default: every one that has an operator model)."""
    names = datasets or validated_datasets()
    for name in names:
        if name not in measured.DATASETS:
            raise UnknownNameError(f"dataset: unknown name {name!r}; accepted: {', '.join(validated_datasets())}")
    report = Report(split=SPLIT)
    from perfsim.serving.validation import SERVING_DATASETS, validate_scores
    needs_transfer = any(measured.DATASETS[n].hardware[0] != TRANSFER_SOURCE for n in names
                         if n not in SERVING_DATASETS)
    transfer = None
    if needs_transfer:
        if progress:
            progress("fitting transfer parameters on H100 data")
        transfer = transfer_params(max_rows=max_rows, seed=seed)
    for name in names:
        if name in SERVING_DATASETS:  # end-to-end serving runs: simulated, not fitted per row
            if progress:
                progress(name)
            report.scores.extend(validate_scores(name, seed=seed, progress=progress))
            continue
        if measured.DATASETS[name].family not in PREDICTORS:
            report.skipped[name] = f"no operator model for family {measured.DATASETS[name].family!r} yet"
            continue
        if progress:
            progress(name)
        report.scores.extend(score_dataset(name, transfer, max_rows=max_rows, seed=seed,
                                           max_test_rows=max_test_rows))
    return report


def model_steps(profile: str = "auto") -> pd.DataFrame:
    """Whole-model prefill and decode steps measured on an H200 (benchmarks/gpu_model_steps.py: time, board
    power, energy per step), each with perfsim's prediction under `profile` ('auto' or 'none'): predicted_s,
    predicted_power_w, predicted_energy_j. Nothing is fitted on them; rows beyond a model's maximum
    sequence length, which perfsim refuses, are left out."""
    from perfsim.errors import InvalidInputError
    from perfsim.measured.registry import H200_RUN, SHIPPED
    from perfsim.predict import predict
    files = sorted((SHIPPED / H200_RUN).glob("steps_*.csv"))
    out = []
    for r in pd.concat([pd.read_csv(f) for f in files], ignore_index=True).itertuples():
        tokens = {"context": r.tokens} if r.task == "decode" else {"seq": r.tokens}
        try:
            est = predict(r.model, "h200-sxm", task=r.task, batch=r.batch, dtype=r.dtype, profile=profile, **tokens)
        except InvalidInputError:
            continue
        out.append({"model": r.model, "task": r.task, "batch": r.batch, "tokens": r.tokens,
                    "measured_s": r.measured_s, "predicted_s": est.latency_s, "power_w": r.power_w,
                    "predicted_power_w": est.avg_power_w, "energy_j": r.energy_per_step_j,
                    "predicted_energy_j": est.energy_j})
    return pd.DataFrame(out)
