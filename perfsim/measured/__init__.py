"""Readers of the measured ground-truth data (shared/data/measured) into tidy pandas DataFrames.

    from perfsim import measured
    measured.DATASETS                      # name -> Dataset(name, description, family, hardware, source, ...)
    df = measured.load("aic-h100-gemm", dtype="bf16")
    df = measured.load("path/to/gemm_perf.parquet")      # the format is detected from the columns

Every frame has the columns `dataset`, `hardware` (perfsim name), `source` (short citation) first and
`measured_s` (seconds) last; the columns between depend on the op family (see FAMILIES and README of
each reader module: vidur, aiconfigurator, llmcompass, mlenergy). Problems raise perfsim.errors.DataError.
"""

from perfsim.measured._common import ENV_VAR, data_root
from perfsim.measured.registry import DATASETS, FAMILIES, Dataset, clear_cache, describe, load, load_path, names

__all__ = ["DATASETS", "ENV_VAR", "FAMILIES", "Dataset", "clear_cache", "data_root", "describe", "load",
           "load_path", "names"]
