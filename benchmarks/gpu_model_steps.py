"""Measure whole-model prefill and decode steps of a Llama-style dense model on one NVIDIA GPU (needs torch).

    python benchmarks/gpu_model_steps.py --model llama-3.1-8b --out steps.csv

Builds the model from its perfsim workload YAML with random bf16 weights, made of the same ops as perfsim's
graph: embedding; per layer an RMSNorm, the fused QKV GEMM, RoPE on q and k, the KV-cache append, SDPA
(causal for prefill; one query over the cache for decode), the output projection, a residual add, an RMSNorm,
the fused gate/up GEMM, SiLU-and-multiply, the down projection, a residual add; a final RMSNorm and the LM
head. A step is captured in a CUDA graph, so host launch overhead is not timed, and replayed: the median of
batches of replays, timed with CUDA events; with --power-s, the board's average power and energy per step
over that long a run of replays (NVML energy counter). Writes one CSV row per (task, batch, tokens) with its provenance
beside it (<out>.json). Run `perfsim predict` on the same rows to compare (tests/test_h200_measurements.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from perfsim.calibrate.bench_cuda import time_cuda

DECODE = ((1, 512), (1, 8192), (8, 2048), (32, 2048), (32, 8192), (128, 512), (128, 2048))  # (batch, context)
PREFILL = ((1, 512), (1, 2048), (1, 8192), (4, 2048))                                          # (batch, seq)


def build(torch, cfg: dict):
    """Random bf16 weights per layer, and a step function step(x_ids, k_cache, v_cache, pos, causal)."""
    F = torch.nn.functional
    h, nh, nkv, d = cfg["hidden"], cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]
    inter, vocab, layers = cfg["intermediate"], cfg["vocab"], cfg["layers"]
    dev, bf = "cuda", torch.bfloat16

    def w(*shape):
        return (torch.randn(*shape, device=dev, dtype=bf) * 0.02)
    emb = w(vocab, h)
    lm_head = w(h, vocab)
    blocks = [{"qkv": w(h, (nh + 2 * nkv) * d), "o": w(nh * d, h), "gate_up": w(h, 2 * inter), "down": w(inter, h),
               "n1": torch.ones(h, device=dev, dtype=bf), "n2": torch.ones(h, device=dev, dtype=bf)}
              for _ in range(layers)]
    final_norm = torch.ones(h, device=dev, dtype=bf)
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, device=dev, dtype=torch.float32) / d))

    def rope(x, cos, sin):  # x: (B, T, H, d), rotate-half form
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def step(ids, k_cache, v_cache, start: int, causal: bool):
        B, T = ids.shape
        pos = torch.arange(start, start + T, device=dev, dtype=torch.float32)
        ang = torch.outer(pos, inv_freq)
        cos, sin = ang.cos().to(bf)[None, :, None, :], ang.sin().to(bf)[None, :, None, :]
        x = F.embedding(ids, emb)
        for i, blk in enumerate(blocks):
            a = F.rms_norm(x, (h,), blk["n1"])
            qkv = a @ blk["qkv"]
            q, k, v = qkv.split((nh * d, nkv * d, nkv * d), dim=-1)
            q = rope(q.view(B, T, nh, d), cos, sin)
            k = rope(k.view(B, T, nkv, d), cos, sin)
            k_cache[i][:, :, start:start + T] = k.transpose(1, 2)
            v_cache[i][:, :, start:start + T] = v.view(B, T, nkv, d).transpose(1, 2)
            kk, vv = k_cache[i][:, :, : start + T], v_cache[i][:, :, : start + T]
            o = F.scaled_dot_product_attention(q.transpose(1, 2), kk, vv, is_causal=causal, enable_gqa=True)
            x = x + o.transpose(1, 2).reshape(B, T, nh * d) @ blk["o"]
            m = F.rms_norm(x, (h,), blk["n2"])
            g, u = (m @ blk["gate_up"]).chunk(2, dim=-1)
            x = x + (F.silu(g) * u) @ blk["down"]
        return F.rms_norm(x[:, -1], (h,), final_norm) @ lm_head

    return step


def time_graph(torch, fn, repeats: int = 5, min_time: float = 0.05):
    """Median seconds per replay of fn captured in a CUDA graph (eager, if capture fails), how it ran, and
    the replay callable."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    how = "cuda graph"
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        run = graph.replay
    except Exception as exc:
        how, run = f"eager ({type(exc).__name__} in capture)", fn
    return time_cuda(torch, run, min_time, repeats, warmup=1), how, run


def board_power(torch, run, seconds: float) -> dict:
    """Average board power (W) and energy per call (J) over `seconds` of back-to-back calls (NVML energy
    counter, after a one-second settle); empty without NVML."""
    from perfsim.calibrate.bench_power import nvml_handle, sustain
    nvml, handle = nvml_handle()
    if nvml is None:
        return {}
    r = sustain(torch, nvml, handle, run, seconds)
    return {"power_w": r["joules"] / r["seconds"], "energy_per_step_j": r["joules"] / r["calls"],
            "median_sm_clock_mhz": r["median_sm_clock_mhz"]}


def model_config(name: str) -> dict:
    from perfsim.model import load_model
    m = load_model(name)
    if m.is_moe or m.mla or m.mlp != "gated" or m.attention_kind not in ("mha", "gqa") or m.sliding_window:
        raise SystemExit(f"model: {name} is not a dense gated-MLP model with full attention")
    return {"hidden": m.hidden_size, "num_heads": m.num_heads, "num_kv_heads": m.num_kv_heads,
            "head_dim": m.dim_head, "intermediate": m.intermediate_size, "vocab": m.vocab_size,
            "layers": m.num_layers, "rope_theta": 500000.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=240.0)
    ap.add_argument("--power-s", type=float, default=0.0, help="also read board power over this many seconds")
    args = ap.parse_args()
    import torch
    torch.manual_seed(0)
    cfg = model_config(args.model)
    step = build(torch, cfg)
    t0 = time.perf_counter()
    rows = []
    cases = [("decode", b, c) for b, c in DECODE] + [("prefill", b, s) for b, s in PREFILL]
    nkv, d, layers = cfg["num_kv_heads"], cfg["head_dim"], cfg["layers"]
    for task, batch, tokens in cases:
        if time.perf_counter() - t0 > args.budget_s:
            print(f"skipped {task} b={batch} t={tokens}: budget", file=sys.stderr)
            continue
        total = tokens + 1 if task == "decode" else tokens
        kc = vc = None
        try:
            kc = [torch.zeros(batch, nkv, total, d, device="cuda", dtype=torch.bfloat16) for _ in range(layers)]
            vc = [torch.randn(batch, nkv, total, d, device="cuda", dtype=torch.bfloat16) for _ in range(layers)]
            for t in kc:
                t.normal_()
            if task == "decode":
                ids = torch.randint(0, cfg["vocab"], (batch, 1), device="cuda")
                sec, how, run = time_graph(torch, lambda ids=ids, kc=kc, vc=vc, s=tokens: step(ids, kc, vc, s, False))
            else:
                ids = torch.randint(0, cfg["vocab"], (batch, tokens), device="cuda")
                sec, how, run = time_graph(torch, lambda ids=ids, kc=kc, vc=vc: step(ids, kc, vc, 0, True))
            power = board_power(torch, run, args.power_s) if args.power_s > 0 else {}
        except Exception as exc:
            print(f"failed {task} b={batch} t={tokens}: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
            continue
        finally:
            kc = vc = run = None
            torch.cuda.empty_cache()
        row = {"model": args.model, "task": task, "batch": batch, "tokens": tokens, "dtype": "bf16",
               "timer": how, **power, "measured_s": sec}
        rows.append(row)
        print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["model"])
        wr.writeheader()
        wr.writerows(rows)
    p = torch.cuda.get_device_properties(0)
    prov = {"tool": "benchmarks/gpu_model_steps.py", "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "gpu": p.name, "torch": torch.__version__, "cuda": torch.version.cuda, "model": cfg,
            "tokens": "decode: context already cached (one new token per sequence); prefill: sequence length",
            "weights": "random bf16, one set per layer (nothing shared, so every GEMM reads its weights)"}
    args.out.with_suffix(".json").write_text(json.dumps(prov, indent=1) + "\n")


if __name__ == "__main__":
    main()
