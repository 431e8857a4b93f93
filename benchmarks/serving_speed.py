"""Speed of the serving simulator (run: python benchmarks/serving_speed.py).

Simulates 100,000 requests in several scenarios and prints the wall time of each: the step-time tables
are built once per deployment (a few hundred cost-model calls), then the event loop interpolates them; runs
of identical decode steps are fast-forwarded as one event. Target: 100,000 requests in under 10 s.
"""

from __future__ import annotations

import argparse
import json
import time

from perfsim.serving import serve

SCENARIOS = [  # (label, kwargs)
    ("Llama-3.1-70B, 2 x TP4 on DGX H100, Poisson 8 req/s, 1024 in / 256 out, chunked prefill",
     dict(model="llama-3.1-70b", hardware="dgx-h100", num_gpus=8, tp=4, isl=1024, osl=256, rate=8.0)),
    ("Llama-3.1-70B, 2 x TP4 on DGX H100, closed loop 64, 1024 in / 256 out",
     dict(model="llama-3.1-70b", hardware="dgx-h100", num_gpus=8, tp=4, isl=1024, osl=256, concurrency=64)),
    ("Llama-3.1-8B, 8 x TP1 on DGX H100, Poisson 40 req/s, lengths +-50%, vLLM V0 continuous batching",
     dict(model="llama-3.1-8b", hardware="dgx-h100", num_gpus=8, tp=1, isl=512, osl=256, rate=40.0,
          length_spread=0.5, policy="continuous")),
    ("Llama-3.1-70B, disaggregated 4:4 on DGX H100, Poisson 4 req/s, 2048 in / 256 out",
     dict(model="llama-3.1-70b", hardware="dgx-h100", num_gpus=8, tp=4, isl=2048, osl=256, rate=4.0, disagg="4:4")),
    ("DeepSeek-V3 fp8, attention DP 8 / EP 8 on HGX H200, closed loop 256, 1024 in / 1024 out",
     dict(model="deepseek-v3", hardware="hgx-h200", num_gpus=8, tp=1, ep=8, dtype="fp8", isl=1024, osl=1024,
          concurrency=256)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests per scenario")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    rows = []
    for label, kwargs in SCENARIOS:
        serve(**{**kwargs, "num_requests": 200})     # build (and cache) the step-time tables
        start = time.perf_counter()
        res = serve(**kwargs, num_requests=args.requests)
        wall = time.perf_counter() - start
        s = res.summary
        rows.append({"scenario": label, "requests": args.requests, "wall_s": wall,
                     "requests_per_s_simulated": args.requests / wall, "simulated_s": s["makespan_s"],
                     "ttft_p50_s": s["ttft_p50_s"], "tpot_p50_s": s["tpot_p50_s"],
                     "throughput_tokens_per_s": s["throughput_tokens_per_s"]})
        print(f"{wall:6.2f} s  {args.requests:,} requests ({args.requests / wall:,.0f}/s)  {label}", flush=True)
        print(f"          simulated {s['makespan_s']:,.0f} s of serving: TTFT p50 {1e3 * s['ttft_p50_s']:.1f} ms, "
              f"TPOT p50 {1e3 * s['tpot_p50_s']:.2f} ms, {s['throughput_tokens_per_s']:,.0f} tokens/s", flush=True)
    worst = max(r["wall_s"] for r in rows)
    print(f"\nslowest scenario: {worst:.2f} s for {args.requests:,} requests (target < 10 s): "
          f"{'MET' if worst < 10 else 'MISSED'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
