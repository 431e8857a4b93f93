"""Score the serving simulator against published closed-loop latency sweeps (NVIDIA NIM, Vultr's vLLM cookbook).

Rows live in tests/data/published_latency_sweeps.yaml: a deployment (model, system, GPUs, layout, dtype, engine),
fixed input and output lengths, and per client concurrency the published mean TTFT, mean inter-token latency (ITL)
and output throughput. Each point is simulated as a closed loop at its concurrency, as the run's client drove it:
`start: staggered`, the clients spread over one request's latency (serve's ramp 'auto': the steady state a client
reports once its measurement windows settle), `prompts_per_client` requests each; or `start: burst`, every client
at once, `num_prompts` requests in all (a count, or a map from concurrency to count with a `default`), as
`vllm bench serve --max-concurrency` runs. Nothing is fitted.
"""

from __future__ import annotations

from pathlib import Path

from perfsim.errors import DataError
from perfsim.published_runs import DATA_DIR, Comparison, load_runs

DEFAULT_PATH = DATA_DIR / "published_latency_sweeps.yaml"
MIN_REQUESTS = 40
STARTS = {"staggered": "auto", "burst": 0.0}   # a run's start: serve's ramp
# published column -> (metric, serve summary key, scale to the summary's unit)
METRICS = (("ttft_s", "ttft_s", 1e-3), ("itl_s", "tpot_s", 1e-3),
           ("output_tokens_per_s", "throughput_tokens_per_s", 1.0))
REQUIRED = ("id", "source", "model", "hardware", "num_gpus", "isl", "osl", "start", "points")
LAYOUT_KEYS = ("tp", "ep", "pp", "attn_dp", "dtype", "kv_dtype", "engine", "max_num_seqs", "max_num_batched_tokens",
               "gpu_memory_utilization")


def _points(run: dict) -> list[tuple[int, list[float]]]:
    try:
        pts = [(int(c), [float(v) for v in vals]) for c, vals in run["points"].items()]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{run.get('id', '?')}: points must map a concurrency to [TTFT ms, ITL ms, tokens/s] "
                        f"({exc})") from None
    if any(c < 1 or len(v) != len(METRICS) or min(v) <= 0 for c, v in pts):
        raise DataError(f"{run['id']}: points must map a concurrency >= 1 to three positive figures "
                        "[TTFT ms, ITL ms, tokens/s]")
    return sorted(pts)


def _requests(run: dict, conc: int) -> int:
    """Requests the client issued at concurrency `conc`."""
    if "prompts_per_client" in run:
        return max(int(run["prompts_per_client"]) * conc, MIN_REQUESTS)
    n = run.get("num_prompts")
    try:
        return int(n.get(conc, n["default"]) if isinstance(n, dict) else n)
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{run['id']}: give prompts_per_client, or num_prompts as a count or a map from "
                        f"concurrency to count with a default (got {n!r})") from None


def compare(path: str | Path | None = None, profile="auto", progress=None) -> list[Comparison]:
    """One Comparison per run, concurrency and metric (ttft_s, itl_s, output_tokens_per_s)."""
    from perfsim.serving.simulate import serve
    out = []
    for run in load_runs(path or DEFAULT_PATH, "latency-sweep"):
        missing = [k for k in REQUIRED if k not in run]
        if missing:
            raise DataError(f"{run.get('id', '?')}: missing field(s) {', '.join(missing)}; a sweep names "
                            f"{', '.join(REQUIRED)}")
        layout = {k: run[k] for k in LAYOUT_KEYS if k in run}
        if run["start"] not in STARTS:
            raise DataError(f"{run.get('id', '?')}: start must be one of {', '.join(STARTS)}, got "
                            f"{run.get('start')!r}")
        for conc, published in _points(run):
            if progress:
                progress(f"{run['id']} c{conc}")
            s = serve(run["model"], run["hardware"], num_gpus=run["num_gpus"], isl=run["isl"], osl=run["osl"],
                      concurrency=conc, num_requests=_requests(run, conc), ramp=STARTS[run["start"]],
                      profile=profile, timeline_bins=1, **layout).summary
            for (metric, key, scale), value in zip(METRICS, published, strict=True):
                out.append(Comparison(f"{run['id']} c{conc}", run["source"], metric, value * scale, s[key],
                                      {"concurrency": conc, **layout}, run.get("assumed", []), run["model"]))
    return out


def mape_by_metric(rows: list[Comparison]) -> dict[str, float]:
    """Mean |error| of each metric over its points."""
    out = {}
    for metric, _, _ in METRICS:
        errs = [abs(r.error) for r in rows if r.metric == metric]
        if errs:
            out[metric] = sum(errs) / len(errs)
    return out
