"""Score the serving simulator against aiconfigurator's silicon sample: runs of NVIDIA's benchmark database.

Rows live in tests/data/aiconfigurator_silicon_sample.csv (see its header): 882 measured TTFT/TPOT points of 174
deployments (TensorRT-LLM, SGLang, vLLM, mostly behind NVIDIA Dynamo; H100, H200, B200, B300, GB200, GB300;
aggregated and disaggregated; DeepSeek-R1, Kimi-K2.5, MiniMax-M2.5, Qwen3.5-397B), each swept over client
concurrency. aiconfigurator curates its silicon_refs.csv from this database, one concurrency point per deployment,
so the deployments behind silicon_refs rows are set apart (`held_out`) and what is learnt here comes from the
others: that the database decodes DeepSeek without MTP (`mtp_comparison`) and the disaggregation handoff
(`fit_handoff`, perfsim/serving/handoff_fit.yaml). Each row is simulated as a silicon_refs row
(perfsim.serving.validation.silicon_row).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from perfsim.errors import DataError
from perfsim.published_runs import DATA_DIR

DEFAULT_PATH = DATA_DIR / "aiconfigurator_silicon_sample.csv"
SOURCE = "ai-dynamo/aiconfigurator@42bd4cf (silicon_sample.csv: benchmark database dump 2026-04-27)"
DATASET = "aic-silicon-sample"
PROVENANCE = ("config_id", "concurrency", "measured", "workflow_run_id", "image")
SILICON = ("backend", "backend_version", "model_path", "system", "precision", "mode", "isl", "osl",
           "gemm_quant_mode", "moe_quant_mode", "batch_size", "tp_size", "pp_size", "attention_dp_size",
           "moe_tp_size", "moe_ep_size", "silicon_ttft_ms", "silicon_tpot_ms")
ORIGIN = "db-dump/2026-04-27"


def load(path: str | Path | None = None) -> pd.DataFrame:
    """The rows as a silicon_refs frame (perfsim.measured.aiconfigurator.silicon_frame); a one-line DataError
    naming what is missing or malformed."""
    from perfsim.measured.aiconfigurator import silicon_frame
    path = Path(path or DEFAULT_PATH)
    if not path.is_file():
        raise DataError(f"{path}: aiconfigurator sample not found (the file ships with the repository's tests)")
    try:
        raw = pd.read_csv(path, comment="#", dtype={"image": str, "backend_version": str})
    except Exception as exc:  # ParserError, UnicodeDecodeError, EmptyDataError ...
        raise DataError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in (*PROVENANCE, *SILICON) if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the sample needs "
                        f"{', '.join((*PROVENANCE, *SILICON))}")
    for col in ("config_id", "concurrency"):
        values = pd.to_numeric(raw[col], errors="coerce")
        if not (values > 0).all():
            i = int((~(values > 0)).to_numpy().argmax())
            raise DataError(f"{path}: row {i + 1}: {col} must be a positive integer, got {raw[col].iloc[i]!r}")
    raw["id"] = [f"{r.system}_{r.backend}_{r.precision}_{r.mode}_{r.isl}x{r.osl}_c{r.concurrency}_cfg{r.config_id}"
                 for r in raw.itertuples()]
    raw["silicon_data_source"] = [
        f"{ORIGIN}; config_id={r.config_id}; silicon_concurrency={r.concurrency}; measured={r.measured}; "
        f"workflow_run_id={r.workflow_run_id}; {r.image if isinstance(r.image, str) else ''}"
        for r in raw.itertuples()]
    frame = silicon_frame(raw, path, DATASET, source=SOURCE)
    frame["config_id"] = pd.to_numeric(raw["config_id"]).astype(int).to_numpy()
    return frame


def ref_configs(refs: pd.DataFrame) -> set[int]:
    """Benchmark-database deployments that silicon_refs rows were taken from (their provenance's config_id)."""
    ids = set()
    for origin, text in zip(refs["origin"], refs["id"], strict=True):
        hit = re.search(r"_cfg(\d+)$", str(text))
        if str(origin).startswith("db-dump/") and hit:
            ids.add(int(hit.group(1)))
    return ids


def held_out(sample: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """The sample without the deployments silicon_refs rows come from."""
    return sample[~sample["config_id"].isin(ref_configs(refs))].reset_index(drop=True)


# ------------------------------------------------------------------------- disaggregation handoff fit
# Rows that fit the handoff: disaggregated, at most this many clients (queues short, so a fixed latency per request
# adds to the mean TTFT as it is)
LOW_CONCURRENCY = 16


def handoff_rows(held: pd.DataFrame) -> pd.DataFrame:
    """The held-out rows the handoff is fitted on: disaggregated, at low concurrency."""
    return held[(held["mode"] == "disagg") & (held["concurrency"] <= LOW_CONCURRENCY)].reset_index(drop=True)


def fit_handoff(rows: pd.DataFrame) -> float:
    """The handoff H (s) that minimises the TTFT MAPE of predicted + H over rows simulated without one (a
    least-absolute-relative-error fit: the median of measured - predicted, each weighted by 1 / measured)."""
    gap = (rows["ttft_measured_s"] - rows["ttft_predicted_s"]).to_numpy()
    weight = 1.0 / rows["ttft_measured_s"].to_numpy()
    order = gap.argsort()
    cumulative = weight[order].cumsum()
    return max(0.0, float(gap[order][cumulative.searchsorted(cumulative[-1] / 2)]))


def _ttft_mape(rows: pd.DataFrame, extra_s: float) -> float:
    return float((abs(rows["ttft_predicted_s"] + extra_s - rows["ttft_measured_s"]) / rows["ttft_measured_s"]).mean())


def handoff_cross_check(rows: pd.DataFrame, seed: int = 0) -> dict:
    """Fit on the deployments of a random half of `rows` (simulated without a handoff), score the TTFT MAPE of the
    other half with and without it; both ways round."""
    configs = rows["id"].str.extract(r"_cfg(\d+)$")[0].astype(int)
    unique = configs.drop_duplicates().sample(frac=1.0, random_state=seed).to_numpy()
    halves = [set(unique[: len(unique) // 2]), set(unique[len(unique) // 2:])]
    out = {}
    for i, fit_on in enumerate(halves):
        train, test = rows[configs.isin(fit_on)], rows[~configs.isin(fit_on)]
        h = fit_handoff(train)
        out[f"half_{i}"] = {"handoff_s": h, "test_rows": len(test), "ttft_mape_without": _ttft_mape(test, 0.0),
                            "ttft_mape_with": _ttft_mape(test, h)}
    return out


def write_handoff_fit(handoff_s: float, rows: pd.DataFrame, cross: dict, path=None) -> None:
    """Store the fitted handoff with its source (perfsim/serving/handoff_fit.yaml)."""
    from perfsim.serving import kvcache
    from perfsim.serving.validation import _write_yaml
    configs = rows["id"].str.extract(r"_cfg(\d+)$")[0].nunique()
    checks = "; ".join(f"{v['handoff_s'] * 1e3:.0f} ms fitted on one half of the deployments scores TTFT MAPE "
                       f"{100 * v['ttft_mape_with']:.1f}% (without: {100 * v['ttft_mape_without']:.1f}%) on the "
                       f"other {v['test_rows']} rows" for v in cross.values())
    doc = {"about": "Fixed latency per request between a prompt's prefill and its decode in disaggregated serving "
                    "(perfsim/serving/kvcache.py), fitted by perfsim.serving.aic_sample.fit_handoff "
                    "(benchmarks/serving_validation.py --write-fit).",
           "handoff_s": round(float(handoff_s), 4),
           "source": f"{SOURCE}: the {len(rows)} disaggregated runs at <= {LOW_CONCURRENCY} clients of {configs} "
                     f"deployments outside silicon_refs.csv (NVIDIA Dynamo with TensorRT-LLM, SGLang and vLLM), "
                     f"least absolute relative TTFT error; {checks}"}
    _write_yaml(doc, path or kvcache.HANDOFF_FIT_FILE)
    kvcache.fitted_handoff_s.cache_clear()


# ------------------------------------------------------------------------- scoring
def score(frame: pd.DataFrame, profile="auto", progress=None):
    """validate_silicon over sample rows (a ServingReport)."""
    from perfsim.serving.validation import validate_silicon
    return validate_silicon(frame=frame, profile=profile, progress=progress)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """TTFT and TPOT MAPE and median predicted / measured ratio per system, engine and mode."""
    rows = rows.assign(ttft_ratio=rows.ttft_predicted_s / rows.ttft_measured_s,
                       tpot_ratio=rows.tpot_predicted_s / rows.tpot_measured_s)
    return rows.groupby(["system", "backend", "mode"]).agg(
        rows=("ttft_ape", "size"), ttft_mape=("ttft_ape", "mean"), ttft_ratio=("ttft_ratio", "median"),
        tpot_mape=("tpot_ape", "mean"), tpot_ratio=("tpot_ratio", "median"))


def mtp_comparison(held: pd.DataFrame, profile="auto") -> dict:
    """TPOT MAPE and median ratio of the held-out DeepSeek rows simulated as the database ran them (no MTP;
    perfsim.serving.validation.NO_MTP_ORIGINS) and with DeepSeek's MTP module at its published acceptance."""
    rows = held[held["model"].str.contains("DeepSeek", case=False)]
    out = {}
    for label, frame in (("without_mtp", rows), ("with_mtp", rows.assign(origin=""))):
        r = score(frame, profile).rows
        out[label] = {"rows": len(r), "tpot_mape": float(r.tpot_ape.mean()),
                      "tpot_ratio": float((r.tpot_predicted_s / r.tpot_measured_s).median())}
    return out
