"""Score the serving simulator against published serving throughputs (MLPerf Inference Llama-2-70B Offline).

Rows live in tests/data/published_serving_runs.yaml, each with its source and the settings it had to assume.
An Offline run issues every sample at once, so each row is a closed loop that keeps every engine's batch full
(concurrency = engines x batch limit) over the data set's mean lengths; the batch limit is searched like the
training validation's micro-batch (the fastest of SEARCH_MAX_SEQS). Nothing is fitted to these rows.
"""

from __future__ import annotations

from pathlib import Path

from perfsim.errors import DataError
from perfsim.published_runs import DATA_DIR, Comparison
from perfsim.published_runs import load_runs as _load_runs

DEFAULT_PATH = DATA_DIR / "published_serving_runs.yaml"
SEARCH_MAX_SEQS = (256, 512, 1024, 2048)


def load_runs(path: str | Path | None = None) -> list[dict]:
    return _load_runs(path or DEFAULT_PATH, "serving")


def predict_row(row: dict, profile="auto") -> Comparison:
    from perfsim.serving.simulate import serve
    if row["metric"] != "offline_tokens_per_s":
        raise DataError(f"{row['id']}: unknown metric {row['metric']!r}; accepted: offline_tokens_per_s")
    engines = row["num_gpus"] // row["tp"]
    best = None
    for seqs in SEARCH_MAX_SEQS:
        s = serve(row["model"], row["hardware"], num_gpus=row["num_gpus"], tp=row["tp"], dtype=row["dtype"],
                  kv_dtype=row.get("kv_dtype"), isl=row["isl"], osl=row["osl"], concurrency=engines * seqs,
                  max_num_seqs=seqs, num_requests=max(engines * seqs * 4, 4096), length_spread=row["length_spread"],
                  engine=row["engine"], profile=profile, timeline_bins=1).summary
        if best is None or s["throughput_tokens_per_s"] > best[0]:
            best = (s["throughput_tokens_per_s"], seqs)
    return Comparison(id=row["id"], source=row["source"], metric=row["metric"], published=float(row["value"]),
                      predicted=float(best[0]), plan={"tp": row["tp"], "max_num_seqs": best[1]},
                      assumed=row.get("assumed", []))


def compare(path: str | Path | None = None, profile="auto", prefix: str | None = None) -> list[Comparison]:
    return [predict_row(r, profile) for r in load_runs(path) if prefix is None or r["id"].startswith(prefix)]
