"""Score the serving simulator against aiconfigurator's silicon sample: runs of NVIDIA's benchmark database.

Rows live in tests/data/aiconfigurator_silicon_sample.csv (see its header): 882 measured TTFT/TPOT points of 174
deployments (TensorRT-LLM, SGLang, vLLM; H100, H200, B200, B300, GB200, GB300; aggregated, and disaggregated under
NVIDIA Dynamo; DeepSeek-R1, Kimi-K2.5, MiniMax-M2.5, Qwen3.5-397B), each swept over client
concurrency. aiconfigurator curates its silicon_refs.csv from this database, one concurrency point per deployment,
so the deployments behind silicon_refs rows are set apart (`held_out`) and what is learnt here comes from the
others: that the database decodes DeepSeek without MTP (`mtp_comparison`), each engine's request latency and the
disaggregation handoff (`fit_latencies`, perfsim/serving/latency_fit.yaml). Each row is simulated as a silicon_refs row
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


# ------------------------------------------------------------------------- latency fits
# Rows that fit the latencies: at most this many clients (queues short, so a fixed latency per request adds to the
# mean TTFT as it is)
LOW_CONCURRENCY = 16
ENGINES = ("sglang", "trtllm", "vllm")


def low_concurrency(held: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The held-out rows of `mode` ('agg', 'disagg') at <= LOW_CONCURRENCY clients."""
    return held[(held["mode"] == mode) & (held["concurrency"] <= LOW_CONCURRENCY)].reset_index(drop=True)


def _ttft_mape(rows: pd.DataFrame, extra_s: float) -> float:
    return float((abs(rows["ttft_predicted_s"] + extra_s - rows["ttft_measured_s"]) / rows["ttft_measured_s"]).mean())


def cross_check(rows: pd.DataFrame, seed: int = 0) -> list[dict]:
    """Fit the offset on the deployments of a random half of `rows` (simulated without it), score the TTFT MAPE of
    the other half with and without it; both ways round."""
    from perfsim.serving.latency import fit_offset
    configs = rows["id"].str.extract(r"_cfg(\d+)$")[0].astype(int)
    unique = configs.drop_duplicates().sample(frac=1.0, random_state=seed).to_numpy()
    out = []
    for fit_on in (set(unique[: len(unique) // 2]), set(unique[len(unique) // 2:])):
        train, test = rows[configs.isin(fit_on)], rows[~configs.isin(fit_on)]
        c = fit_offset(train["ttft_measured_s"], train["ttft_predicted_s"])
        out.append({"seconds": c, "test_rows": len(test), "ttft_mape_without": _ttft_mape(test, 0.0),
                    "ttft_mape_with": _ttft_mape(test, c)})
    return out


def _fitted(rows: pd.DataFrame, what: str) -> dict:
    from perfsim.serving.latency import fit_offset
    seconds = fit_offset(rows["ttft_measured_s"], rows["ttft_predicted_s"])
    checks = "; ".join(f"{1e3 * v['seconds']:.0f} ms fitted on half the deployments scores TTFT MAPE "
                       f"{100 * v['ttft_mape_with']:.1f}% (without: {100 * v['ttft_mape_without']:.1f}%) on the "
                       f"other {v['test_rows']} rows" for v in cross_check(rows))
    configs = rows["id"].str.extract(r"_cfg(\d+)$")[0].nunique()
    return {"seconds": round(seconds, 4), "rows": len(rows),
            "source": f"{SOURCE}: {what}, {len(rows)} runs at <= {LOW_CONCURRENCY} clients of {configs} deployments "
                      f"outside silicon_refs.csv, least absolute relative TTFT error; {checks}"}


def fit_latencies(held: pd.DataFrame, profile="auto") -> tuple[dict, dict]:
    """({engine: fit}, handoff fit): each engine's request latency on its aggregated runs, then the
    disaggregation handoff on the disaggregated runs simulated with those latencies."""
    agg, disagg = low_concurrency(held, "agg"), low_concurrency(held, "disagg")
    request, parts = {}, []
    for engine in ENGINES:
        rows = agg[agg["backend"] == engine]
        if len(rows):
            bare = score(rows, profile, overrides={"request_latency_s": 0.0}).rows
            request[engine] = _fitted(bare, f"{engine}'s aggregated runs")
    for engine, rows in disagg.groupby("backend"):
        latency = request.get(engine, {"seconds": 0.0})["seconds"]
        parts.append(score(rows, profile, overrides={"request_latency_s": latency, "disagg_handoff_s": 0.0}).rows)
    handoff = _fitted(pd.concat(parts), "the disaggregated runs (NVIDIA Dynamo with TensorRT-LLM, SGLang, vLLM) "
                                        "with each engine's request latency in place")
    return request, handoff


def write_latency_fit(request: dict, handoff: dict, path=None) -> None:
    """Store the fits in perfsim/serving/latency_fit.yaml."""
    from perfsim.serving.latency import write_fit
    write_fit(request, handoff, "Per-request latencies outside the engine's steps (perfsim/serving/latency.py), "
                                "fitted by perfsim.serving.aic_sample.fit_latencies "
                                "(benchmarks/serving_validation.py --write-fit).", path)


# ------------------------------------------------------------------------- scoring
def score(frame: pd.DataFrame, profile="auto", progress=None, overrides: dict | None = None):
    """validate_silicon over sample rows (a ServingReport)."""
    from perfsim.serving.validation import validate_silicon
    return validate_silicon(frame=frame, profile=profile, progress=progress, overrides=overrides)


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
