"""Per-request latencies outside an engine's steps, fitted on measured serving runs.

  request latency  L_e  the path between client and engine outside the engine's steps (the HTTP server,
                        tokenisation and detokenisation, the hand-off between the server's processes), per engine:
                        each token reaches the client L_e later than the simulated engine produced it, so TTFT and
                        end-to-end latency grow by L_e and TPOT does not. The simulated schedule is left as it ran
                        (a closed loop's clients re-issue as the engine finishes), which keeps a fixed-length
                        closed loop's requests in the waves a benchmark client's burst starts them in.
  disagg handoff   H    in disaggregated serving, between a prompt's prefill and its decode (routing the request
                        to a decode worker, the KV transfer's handshake, the decode side's admission), beside the
                        transfer itself and without holding its link.

Both are fitted (perfsim.serving.aic_sample; benchmarks/serving_validation.py --write-fit) on the low-concurrency
runs of aiconfigurator's silicon sample outside silicon_refs, each as the offset that minimises the mean TTFT's
absolute relative error (fit_offset): L_e on each engine's aggregated runs, then H on the disaggregated runs with
L_e in place. latency_fit.yaml stores them with their sources; an engine or a split with no fit has none.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

FIT_FILE = Path(__file__).resolve().parent / "latency_fit.yaml"


@lru_cache(maxsize=1)
def _fit() -> dict:
    import yaml
    return (yaml.safe_load(FIT_FILE.read_text()) or {}) if FIT_FILE.exists() else {}


def reload() -> None:
    """Forget the loaded fit (after latency_fit.yaml was rewritten)."""
    _fit.cache_clear()


def request_latency_s(engine: str | None) -> float:
    """The fitted request latency of `engine` (0 for 'none' or an engine without a fit)."""
    entry = (_fit().get("request") or {}).get((engine or "none").lower())
    return float(entry["seconds"]) if entry else 0.0


def disagg_handoff_s() -> float:
    """The fitted disaggregation handoff per request (0 without a fit)."""
    entry = _fit().get("disagg_handoff")
    return float(entry["seconds"]) if entry else 0.0




def fit_offset(measured, predicted) -> float:
    """The offset c >= 0 minimising sum |predicted + c - measured| / measured (a weighted median of the gaps)."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    gap = measured - predicted
    weight = 1.0 / measured
    order = gap.argsort()
    cumulative = weight[order].cumsum()
    return max(0.0, float(gap[order][cumulative.searchsorted(cumulative[-1] / 2)]))


def write_fit(request: dict, handoff: dict, about: str, path=None) -> None:
    """Store {engine: {seconds, source}} and {seconds, source} in latency_fit.yaml."""
    from perfsim.serving.validation import _write_yaml
    _write_yaml({"about": about, "request": request, "disagg_handoff": handoff}, path or FIT_FILE)
    reload()
