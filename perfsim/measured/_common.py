"""Shared helpers of the measured-data readers: locating the data, reading files, one-line errors."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from perfsim.dtypes import RECIPES
from perfsim.errors import DataError, one_line

ENV_VAR = "PERFSIM_MEASURED_DIR"
_RELATIVE = Path("shared") / "data" / "measured"

MAX_COUNT = 2.0**48   # above any shape, count or byte size a kernel table holds (the largest: 1.7e10 bytes)

# Identity columns every tidy frame starts with, and the target it ends with.
HEAD = ["dataset", "hardware", "source"]
TARGET = "measured_s"

# Framework dtype spellings -> perfsim dtype names (perfsim.dtypes), plus the quantization recipes
# aiconfigurator distinguishes (fp8_block, w4a16_mxfp4, ...: perfsim.dtypes.RECIPES), kept as they are.
DTYPE_NAMES = {
    "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "half": "fp16", "fp16": "fp16",
    "float32": "fp32", "float": "fp32", "fp32": "fp32", "fp8": "fp8", "int8": "int8", "fp4": "fp4",
    **{recipe: recipe for recipe in RECIPES}, "nvfp4": "fp4",
}
DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "int8": 1, "fp8": 1}

# Device strings (aiconfigurator `device` column) -> perfsim hardware names.
DEVICE_HARDWARE = {
    "NVIDIA H100 80GB HBM3": "h100-sxm",
    "NVIDIA A100-SXM4-80GB": "a100-sxm-80gb",
    "NVIDIA A100-SXM4-40GB": "a100-sxm-40gb",
    "NVIDIA B200": "b200",
    "NVIDIA H200": "h200-sxm",
    "NVIDIA GB200": "gb200",
    "NVIDIA H20": "h20",
    "NVIDIA L40S": "l40s",
}
# aiconfigurator system names -> perfsim hardware (device) names and system names.
# h200/b300/gb200/gb300 only appear in silicon_refs.csv; their perfsim names are a guess
# following the h100-sxm / b200 pattern.
SYSTEM_HARDWARE = {
    "h100_sxm": "h100-sxm", "h200_sxm": "h200-sxm", "a100_sxm": "a100-sxm-80gb",
    "b200_sxm": "b200", "b300_sxm": "b300", "gb200": "gb200", "gb300": "gb300", "gb200_sxm": "gb200",
    "l40s": "l40s", "h20": "h20",
}
SYSTEM_NAMES = {"h100_sxm": "dgx-h100", "a100_sxm": "dgx-a100-80gb", "b200_sxm": "dgx-b200"}


def data_root() -> Path:
    """The folder holding the measured data (`shared/data/measured`).

    $PERFSIM_MEASURED_DIR if set; else the first `shared/data/measured` found walking up from the
    current directory, then from this package's directory (the repository is cloned beside `shared/`).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise DataError(f"{ENV_VAR}={env}: not a directory")
        return root
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / _RELATIVE
            if candidate.is_dir():
                return candidate
    raise DataError(
        f"measured data not found: no {_RELATIVE} above {starts[0]} or {starts[1]}; set {ENV_VAR}"
    )


def fail(path: Path | str, what: str, expected: Iterable[str] = ()) -> DataError:
    """A one-line DataError: '<path>: <what>; expected columns a, b, c'."""
    expected = list(expected)
    text = f"{path}: {what}"
    if expected:
        text += f"; expected columns {', '.join(expected)}"
    return DataError(one_line(text))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _check_file(path: Path, expected: Sequence[str]) -> None:
    if not path.is_file():
        raise fail(path, "file not found", expected)
    if path.stat().st_size == 0:
        raise fail(path, "empty file", expected)


def read_parquet(path: Path, expected: Sequence[str]) -> pd.DataFrame:
    _check_file(path, expected)
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise fail(path, f"not a readable parquet file ({_first_line(exc)})", expected) from None
    require(frame, path, expected)
    return frame


def read_csv(path: Path, expected: Sequence[str], **kwargs) -> pd.DataFrame:
    _check_file(path, expected)
    try:
        frame = pd.read_csv(path, **kwargs)
    except Exception as exc:  # ParserError, UnicodeDecodeError, EmptyDataError ...
        raise fail(path, f"not a readable CSV file ({_first_line(exc)})", expected) from None
    require(frame, path, expected)
    return frame


def require(frame: pd.DataFrame, path: Path | str, expected: Sequence[str]) -> None:
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        noun = "column" if len(missing) == 1 else "columns"
        raise fail(path, f"missing {noun} {', '.join(missing)}", expected)
    if len(frame) == 0:
        raise fail(path, "no data rows", expected)


def numeric(frame: pd.DataFrame, path: Path | str, columns: Iterable[str], expected: Sequence[str] = (),
            positive: bool = False) -> None:
    """Convert `columns` to numbers in place; any value that is not a finite number (with `positive`: a finite
    number > 0) is an error."""
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        array = values.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(array)
        if bad.any():
            raise fail(path, f"column {col} has {int(bad.sum())} non-numeric value(s), "
                             f"e.g. {_plain(frame[col][bad].iloc[0])!r}", expected)
        if positive and (array <= 0).any():
            raise fail(path, f"column {col} has {int((array <= 0).sum())} value(s) <= 0, "
                             f"e.g. {_plain(frame[col][array <= 0].iloc[0])!r}; each must be > 0", expected)
        frame[col] = values


def _plain(value):
    """A numpy scalar as the Python value it holds, for messages (-1, not np.int64(-1))."""
    return value.item() if isinstance(value, np.generic) else value


def as_int(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    for col in columns:
        frame[col] = frame[col].astype("int64")


def dtype_name(values: pd.Series, path: Path | str) -> pd.Series:
    mapped = values.map(lambda v: DTYPE_NAMES.get(str(v)))
    if mapped.isna().any():
        unknown = sorted({str(v) for v in values[mapped.isna()]})
        raise fail(path, f"unknown dtype value(s) {', '.join(unknown)}; known: {', '.join(DTYPE_NAMES)}")
    return mapped.astype(str)


def hardware_from_path(path: Path, table: dict[str, str], default: str = "unknown") -> str:
    """The perfsim hardware name for the first folder of `path` that `table` knows."""
    for part in reversed(path.resolve().parts[:-1]):
        if part in table:
            return table[part]
    return default


def finish(frame: pd.DataFrame, path: Path | str, dataset: str, hardware: str | pd.Series | None,
           source: str, columns: Sequence[str]) -> pd.DataFrame:
    """Put the identity columns first, `measured_s` last, and check the target is finite and > 0."""
    frame = frame.copy()
    frame["dataset"] = dataset
    if hardware is not None:
        frame["hardware"] = hardware
    frame["source"] = source
    out = frame[[*HEAD, *columns, TARGET]].reset_index(drop=True)
    for col in columns:   # shapes, counts and sizes: whole numbers no table has below 0 or near 2^48
        if pd.api.types.is_integer_dtype(out[col]):
            values = out[col].to_numpy(dtype=float, na_value=np.nan)   # NA: not applicable to the row's op
            bad = ~np.isnan(values) & ~((values >= 0) & (values <= MAX_COUNT))
            if bad.any():
                raise fail(path, f"column {col} has {int(bad.sum())} value(s) outside 0 to 2^48, "
                                 f"e.g. {_plain(out[col][bad].iloc[0])!r}")
    target = out[TARGET].to_numpy(dtype=float)
    bad = ~(np.isfinite(target) & (target > 0))
    if bad.any():
        raise fail(path, f"{int(bad.sum())} row(s) with a time that is not a finite positive number")
    out[TARGET] = target
    return out


def dedupe(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Keep the first of rows measured twice for the same key (vidur re-measures a few points)."""
    return frame.drop_duplicates(subset=list(keys), keep="first")
