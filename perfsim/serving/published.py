"""Score the serving simulator against published serving throughputs (MLPerf Inference Offline).

Rows live in tests/data/published_serving_runs.yaml, each with its source and the settings it had to assume.
An Offline run issues every sample at once. A row with a `lengths` file replays the benchmark's samples (input
and reference output tokens of each) as an offline batch; a row without one is a closed loop that keeps every
engine's batch full (concurrency = engines x batch limit) over the data set's mean lengths. The batch limit is
the submission's where its configuration states it, else searched like the training validation's micro-batch
(the fastest of SEARCH_MAX_SEQS). Nothing is fitted to these rows.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from perfsim.errors import DataError
from perfsim.published_runs import DATA_DIR, Comparison
from perfsim.published_runs import load_runs as _load_runs
from perfsim.serving.arrivals import Workload, trace

DEFAULT_PATH = DATA_DIR / "published_serving_runs.yaml"
SEARCH_MAX_SEQS = (256, 512, 1024, 2048)
SATURATION = 4   # an offline sample set holds at least this many times the server's batch places


def load_runs(path: str | Path | None = None) -> list[dict]:
    return _load_runs(path or DEFAULT_PATH, "serving")


def sample_set(row: dict, slots: int) -> Workload:
    """A row's benchmark samples as an offline batch: the lengths file, with the output tokens set to `osl` where
    the file's are not token counts and capped at `max_osl` (the benchmark's generation limit), drawn in a
    shuffled order: the `num_samples` queries the run issued where the submission states them, else as often as
    it takes to fill the server's `slots` (batch places) SATURATION times over."""
    w = trace(DATA_DIR / row["lengths"])
    out = np.full_like(w.output_len, row["osl"]) if "osl" in row else w.output_len
    out = np.minimum(out, row.get("max_osl", out.max()))
    n = row.get("num_samples", max(w.num_requests, SATURATION * slots))
    order = np.random.default_rng(0).permutation(np.resize(np.arange(w.num_requests), n))
    return replace(w, input_len=w.input_len[order], output_len=out[order], arrival_s=np.zeros(n))


def predict_row(row: dict, profile="auto") -> Comparison:
    from perfsim.serving.simulate import serve
    if row["metric"] != "offline_tokens_per_s":
        raise DataError(f"{row['id']}: unknown metric {row['metric']!r}; accepted: offline_tokens_per_s")
    layout = {k: row[k] for k in ("tp", "pp", "ep", "attn_dp") if k in row}
    ranks = row["num_gpus"] // (row["tp"] * row.get("pp", 1))   # batch holders: engines or attention-DP ranks
    best = None
    for seqs in ([row["max_num_seqs"]] if "max_num_seqs" in row else SEARCH_MAX_SEQS):
        load = dict(trace=sample_set(row, ranks * seqs)) if "lengths" in row else dict(
            isl=row["isl"], osl=row["osl"], length_spread=row["length_spread"], concurrency=ranks * seqs,
            num_requests=max(ranks * seqs * 4, 4096))
        s = serve(row["model"], row["hardware"], num_gpus=row["num_gpus"], dtype=row["dtype"],
                  kv_dtype=row.get("kv_dtype"), max_num_seqs=seqs, policy=row.get("policy"),
                  max_num_batched_tokens=row.get("max_num_batched_tokens"), engine=row["engine"], profile=profile,
                  timeline_bins=1, **layout, **load).summary
        rate = s["throughput_tokens_per_s"] if "num_samples" in row else s["saturated_tokens_per_s"]
        if best is None or rate > best[0]:
            best = (rate, seqs)
    return Comparison(id=row["id"], source=row["source"], metric=row["metric"], published=float(row["value"]),
                      predicted=float(best[0]), plan={**layout, "max_num_seqs": best[1]},
                      assumed=row.get("assumed", []), model=row["model"])


def compare(path: str | Path | None = None, profile="auto", prefix: str | None = None) -> list[Comparison]:
    return [predict_row(r, profile) for r in load_runs(path) if prefix is None or r["id"].startswith(prefix)]


def by_model(comparisons: list[Comparison]) -> dict[str, list[Comparison]]:
    groups: dict[str, list[Comparison]] = {}
    for c in comparisons:
        groups.setdefault(c.model, []).append(c)
    return groups
