"""Serving metrics from a finished simulation: latency percentiles, throughput, goodput, utilization, energy.

TTFT = first token - arrival; TPOT = (finish - first token) / (output tokens - 1), the time per output token
after the first (requests of one output token have none); E2E = finish - arrival. Throughput counts output
tokens over the run (first arrival to last completion). Goodput (DistServe) counts only the requests that met
every SLO given. Inter-token latency (ITL) percentiles weight each step by the sequences it decoded.
"""

from __future__ import annotations

import numpy as np

from perfsim.errors import check_number

PERCENTILES = (50, 90, 99)


def stats(name: str, values: np.ndarray) -> dict:
    v = values[np.isfinite(values)]
    out = {f"{name}_s": float(v.mean()) if v.size else float("nan")}
    for p in PERCENTILES:
        out[f"{name}_p{p}_s"] = float(np.percentile(v, p)) if v.size else float("nan")
    return out


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if values.size == 0 or weights.sum() <= 0:
        return float("nan")
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    return float(v[min(np.searchsorted(cum, q / 100.0 * cum[-1]), v.size - 1)])


def latency(arrival: np.ndarray, first: np.ndarray, finish: np.ndarray, osl: np.ndarray) -> tuple[dict, dict]:
    """Summary stats and the per-request arrays (ttft, tpot, e2e)."""
    ttft = first - arrival
    e2e = finish - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(osl > 1, (finish - first) / np.maximum(osl - 1, 1), np.nan)
    out = {}
    out.update(stats("ttft", ttft))
    out.update(stats("tpot", tpot))
    out.update(stats("e2e", e2e))
    return out, {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e}


def saturated_throughput(first: np.ndarray, finish: np.ndarray, osl: np.ndarray) -> float:
    """Output tokens per second while the server is saturated: from the first completion (the batch has turned
    over) to the last first token (the queue has drained), each request's tokens spread evenly between its first
    token and its finish. A long offline run (MLPerf Offline: at least 600 s) is this rate; a short simulated one
    would otherwise be dominated by its ramp and its drain."""
    t0, t1 = float(finish.min()), float(first.max())
    if not t1 > t0:
        return float("nan")

    def made_by(t: float) -> float:
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.clip((t - first) / (finish - first), 0.0, 1.0)
        frac = np.where(finish > first, frac, (finish <= t).astype(float))
        return float((np.where(first <= t, 1.0, 0.0) + (osl - 1) * frac).sum())

    return (made_by(t1) - made_by(t0)) / (t1 - t0)


def check_slos(**slos: float | None) -> None:
    """Each SLO given (seconds) must be a positive number; the keyword names the flag (slo_ttft -> slo-ttft)."""
    for name, value in slos.items():
        if value is not None:
            check_number(name.replace("_", "-"), value, "seconds")


def goodput(per: dict, osl: np.ndarray, makespan: float, slo_ttft: float | None, slo_tpot: float | None,
            slo_e2e: float | None = None) -> dict:
    ok = np.ones(osl.size, dtype=bool)
    if slo_ttft is not None:
        ok &= per["ttft_s"] <= slo_ttft
    if slo_tpot is not None:
        ok &= ~(per["tpot_s"] > slo_tpot)  # NaN TPOT (one output token) passes
    if slo_e2e is not None:
        ok &= per["e2e_s"] <= slo_e2e
    span = makespan if makespan > 0 else float("nan")
    return {"slo_ttft_s": slo_ttft, "slo_tpot_s": slo_tpot, "slo_e2e_s": slo_e2e,
            "slo_attainment": float(ok.mean()) if ok.size else float("nan"),
            "goodput_requests_per_s": float(ok.sum() / span), "goodput_tokens_per_s": float(osl[ok].sum() / span)}


def itl(records: list[np.ndarray]) -> dict:
    """Inter-token latency percentiles: each record row (t0, step_s, k, n_decode, _, _, stall) is k steps of
    step_s each decoding n sequences; the first of them also waited `stall` behind prefill-only steps."""
    rec = np.concatenate([r for r in records if r.size]) if any(r.size for r in records) else np.zeros((0, 7))
    rec = rec[rec[:, 3] > 0]
    if rec.size == 0:
        return {"itl_mean_s": float("nan"), **{f"itl_p{p}_s": float("nan") for p in PERCENTILES}}
    vals = np.concatenate([rec[:, 1] + rec[:, 6], rec[:, 1]])
    w = np.concatenate([rec[:, 3], (rec[:, 2] - 1) * rec[:, 3]])
    mean = float((vals * w).sum() / w.sum()) if w.sum() > 0 else float("nan")
    return {"itl_mean_s": mean, **{f"itl_p{p}_s": weighted_percentile(vals, w, p) for p in PERCENTILES}}


def _cumulative(rec: np.ndarray, weight: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Integral over [0, edge] of a step function that is `weight` during each record's busy span."""
    if rec.size == 0:
        return np.zeros_like(edges)
    start, dur = rec[:, 0], rec[:, 1] * rec[:, 2]
    cum = np.concatenate([[0.0], np.cumsum(weight * dur)])
    j = np.searchsorted(start, edges, side="right")  # records starting at or before the edge
    prev = np.maximum(j - 1, 0)
    partial = np.where(j > 0, np.clip(edges - start[prev], 0.0, dur[prev]) * weight[prev], 0.0)
    return cum[np.maximum(j - 1, 0)] * (j > 0) + partial


def timeline(records: list[np.ndarray], capacities: list[int], makespan: float, bins: int = 20) -> list[dict]:
    """Per time bin: busy fraction of the engines, sequences decoding, KV cache fill (mean over engines)."""
    if makespan <= 0 or not records:
        return []
    edges = np.linspace(0.0, makespan, bins + 1)
    busy = np.zeros(bins)
    seqs = np.zeros(bins)
    kv = np.zeros(bins)
    for rec, cap in zip(records, capacities, strict=False):
        if rec.size == 0:
            continue
        for acc, w in ((busy, np.ones(len(rec))), (seqs, rec[:, 3]), (kv, rec[:, 5] / max(cap, 1))):
            acc += np.diff(_cumulative(rec, w, edges))
    width = np.diff(edges) * len(records)
    return [{"t_start_s": float(edges[i]), "t_end_s": float(edges[i + 1]), "busy_fraction": float(busy[i] / width[i]),
             "decoding_seqs": float(seqs[i] / np.diff(edges)[i]), "kv_fill": float(kv[i] / width[i])}
            for i in range(bins)]
