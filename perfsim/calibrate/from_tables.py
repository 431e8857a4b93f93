"""`perfsim calibrate --from`: fit a device's parameters to measured tables and write a profile."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from perfsim import measured
from perfsim.calibrate.fit import fit_many
from perfsim.calibrate.profile import Profile, save_profile
from perfsim.calibrate.rows import PREDICTORS, predict_rows
from perfsim.errors import DataError
from perfsim.hardware import Device
from perfsim.validate import SPLIT, ape, fold


def calibrate_from_tables(sources: list[str], device: Device, out: str | Path | None = None,
                          progress: Callable[[str], None] | None = None, max_rows: int = 6000,
                          seed: int = 0) -> Profile:
    """Fit parameters on the fit half of each table (names or paths), score the other half, refit on all
    rows for the profile that ships, and write it atomically to `out` when given."""
    frames = []
    for src in sources:
        df = measured.load(src)
        family = family_of(src, df)
        if family not in PREDICTORS:
            raise DataError(f"{src}: family {family!r} has no operator model to calibrate; "
                            f"accepted: {', '.join(PREDICTORS)}")
        frames.append((str(src), family, df))
    if progress:
        progress(f"fitting {len(frames)} tables jointly on their fit halves")
    folds = [fold(len(df), seed) for _, _, df in frames]
    trial = fit_many([(df[f], family) for (_, family, df), f in zip(frames, folds, strict=True)], device,
                     max_rows=max_rows, seed=seed)
    held_out: dict[str, dict[str, float]] = {}
    for (src, family, df), in_fit in zip(frames, folds, strict=True):
        err = ape(predict_rows(df[~in_fit], family, device, trial), df[~in_fit].measured_s.to_numpy(float))
        held_out[src] = {"mape": float(err.mean()), "p90": float(np.percentile(err, 90)), "rows": int((~in_fit).sum())}
    if progress:
        progress("refitting on all rows")
    params = fit_many([(df, family) for _, family, df in frames], device, trial, max_rows=max_rows, seed=seed)
    profile = Profile(device=device.name, fitted_on=[s for s, _, _ in frames],
                      split=f"scores: {SPLIT}; shipped parameters refitted on all rows", scores=held_out,
                      created=datetime.now(UTC).strftime("%Y-%m-%d"), params=params)
    if out is not None:
        save_profile(profile, out)
    return profile


def family_of(src: str, df) -> str:
    """The op family of a named data set, or guessed from a file's columns."""
    if src in measured.DATASETS:
        return measured.DATASETS[src].family
    cols = set(df.columns)
    if "op_kind" in cols:
        return "layer_ops"
    if {"m", "n", "k"} <= cols:
        return "gemm"
    if "kv_lora_rank" in cols:
        return "context_mla" if "isl" in cols else "generation_mla"
    if "isl" in cols:
        return "context_attention"
    if "kv_len" in cols:
        return "generation_attention"
    if "num_experts" in cols:
        return "moe"
    if "elements" in cols:
        return "elementwise"
    if {"op", "num_gpus", "size_bytes"} <= cols:
        return "collective"
    return "unknown"
