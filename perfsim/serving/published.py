"""Score the serving simulator against published serving throughputs (MLPerf Inference Offline and Server).

Rows live in tests/data/published_serving_runs.yaml, each with its source and the settings it had to assume.
A row's requests are the benchmark's own samples where it has a `lengths` file (input and reference output
tokens of each), else uniform lengths around the data set's means. Offline issues every sample at once and is
scored over the whole run where the row states the queries its run issued, else at the simulated server's
saturated rate. Server sends Poisson arrivals and is scored at the highest rate whose p99 TTFT and p99 TPOT
meet the benchmark's limits. The batch limit is the submission's where its configuration states it, else
searched like the training validation's micro-batch (the fastest of SEARCH_MAX_SEQS). A row's `engine_version`
decides whether the engine's host overhead overlaps the GPU's steps (perfsim.serving.host.schedules_async; without
one, the engine's current releases). Nothing is fitted.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from perfsim.errors import DataError
from perfsim.published_runs import DATA_DIR, Comparison
from perfsim.published_runs import load_runs as _load_runs
from perfsim.serving.arrivals import Workload, lengths, trace
from perfsim.serving.host import schedules_async
from perfsim.serving.sweep import max_rate

DEFAULT_PATH = DATA_DIR / "published_serving_runs.yaml"
SEARCH_MAX_SEQS = (256, 512, 1024, 2048)
SATURATION = 4   # an offline sample set holds at least this many times the server's batch places
METRICS = ("offline_tokens_per_s", "server_tokens_per_s")
SERVER_BISECTIONS = 7   # the Server rate search halves its bracket this many times (to 1/128 of the Offline rate)


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


def _samples(row: dict, slots: int, seed: int = 0) -> Workload:
    """The row's requests: its benchmark samples, or uniform lengths around its means (the `num_samples` its run
    issued, else as many as fill `slots` SATURATION times over)."""
    if "lengths" in row:
        return sample_set(row, slots)
    n = row.get("num_samples", max(SATURATION * slots, 4096))
    rng = np.random.default_rng(seed)
    return Workload(lengths(n, row["isl"], row["length_spread"], rng, "isl"),
                    lengths(n, row["osl"], row["length_spread"], rng, "osl"), np.zeros(n), kind="offline")


def _simulate(row: dict, seqs: int, load: Workload, profile) -> dict:
    from perfsim.serving.simulate import serve
    layout = {k: row[k] for k in ("tp", "pp", "ep", "attn_dp") if k in row}
    return serve(row["model"], row["hardware"], num_gpus=row["num_gpus"], dtype=row["dtype"],
                 kv_dtype=row.get("kv_dtype"), max_num_seqs=seqs, policy=row.get("policy"),
                 admission=row.get("admission"), kv_free_fraction=row.get("kv_free_fraction"),
                 max_num_batched_tokens=row.get("max_num_batched_tokens"), engine=row["engine"], profile=profile,
                 async_scheduling=schedules_async(row["engine"], row.get("engine_version")),
                 timeline_bins=1, trace=load, **layout).summary


def offline_rate(row: dict, seqs: int, profile="auto") -> float:
    """Generated tokens/s of the Offline scenario: every sample at once; over the whole run where the row states
    the queries it issued, else at the saturated rate."""
    s = _simulate(row, seqs, _samples(row, _ranks(row) * seqs), profile)
    return s["throughput_tokens_per_s"] if "num_samples" in row else s["saturated_tokens_per_s"]


def server_rate(row: dict, seqs: int, profile="auto") -> float:
    """Generated tokens/s of the Server scenario: the highest Poisson arrival rate at which the p99 TTFT and the
    p99 TPOT stay within the benchmark's limits (bisection below the Offline rate), times the mean output."""
    base = _samples(row, _ranks(row) * seqs)
    mean_out = float(base.output_len.mean())
    hi = offline_rate(row, seqs, profile) / mean_out           # requests/s no server can exceed
    gaps = np.random.default_rng(1).exponential(1.0, base.num_requests)

    def meets(rate: float) -> bool:
        s = _simulate(row, seqs, replace(base, arrival_s=np.cumsum(gaps) / rate, kind="poisson"), profile)
        return s["ttft_p99_s"] <= row["ttft_p99_limit_s"] and s["tpot_p99_s"] <= row["tpot_p99_limit_s"]

    return max_rate(meets, hi, SERVER_BISECTIONS) * mean_out


def _ranks(row: dict) -> int:
    return row["num_gpus"] // (row["tp"] * row.get("pp", 1))   # batch holders: engines or attention-DP ranks


def predict_row(row: dict, profile="auto") -> Comparison:
    if row["metric"] not in METRICS:
        raise DataError(f"{row['id']}: unknown metric {row['metric']!r}; accepted: {', '.join(METRICS)}")
    rate = offline_rate if row["metric"] == "offline_tokens_per_s" else server_rate
    best = max((rate(row, seqs, profile), seqs)
               for seqs in ([row["max_num_seqs"]] if "max_num_seqs" in row else SEARCH_MAX_SEQS))
    layout = {k: row[k] for k in ("tp", "pp", "ep", "attn_dp") if k in row}
    return Comparison(id=row["id"], source=row["source"], metric=row["metric"], published=float(row["value"]),
                      predicted=float(best[0]), plan={**layout, "max_num_seqs": best[1]},
                      assumed=row.get("assumed", []), model=row["model"])


def compare(path: str | Path | None = None, profile="auto", prefix: str | None = None) -> list[Comparison]:
    return [predict_row(r, profile) for r in load_runs(path) if prefix is None or r["id"].startswith(prefix)]


def by_model(comparisons: list[Comparison]) -> dict[tuple[str, str], list[Comparison]]:
    """Comparisons grouped by (model, metric)."""
    groups: dict[tuple[str, str], list[Comparison]] = {}
    for c in comparisons:
        groups.setdefault((c.model, c.metric), []).append(c)
    return groups
