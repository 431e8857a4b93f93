"""Measure an NVIDIA GPU through torch: GEMM per dtype, SDPA prefill/decode attention, elementwise ops,
device copy bandwidth and launch overhead, timed with CUDA events after warm-up.

torch is optional: it is imported inside the functions that touch the GPU only. Everything that does not
need a GPU (case lists, provenance assembly, nvidia-smi parsing, the hardware spec, summaries) is a pure
function of plain data, testable without torch. perfsim.calibrate.device turns the rows into tidy frames.
"""

from __future__ import annotations

import math
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

Progress = Callable[[str, float], None]

NEEDS = "device: cuda needs torch with a CUDA GPU; install perfsim[gpu]"
ATTENTION_DTYPES = ("bf16", "fp16")
ELEMENTWISE_OPS = ("add", "gelu", "softmax", "layernorm")
SMI_FIELDS = ("name", "driver_version", "clocks.max.sm", "power.limit", "power.draw", "memory.total")
PLACEHOLDER_POWER = {"tdp": "300 W", "idle": "50 W",
                     "source": "unknown: placeholder 300 W / 50 W (nvidia-smi not available); edit with your GPU's "
                               "TDP"}


@dataclass(frozen=True)
class CudaPlan:
    quick: bool = False
    min_time: float = 0.010         # seconds of timed GPU work per case (over all repeats)
    repeats: int = 5
    warmup: int = 3
    budget_s: float = 300.0         # whole sweep; cases past the deadline are skipped

    @classmethod
    def make(cls, quick: bool = False) -> CudaPlan:
        return cls(quick=True, min_time=0.004, repeats=3, warmup=2, budget_s=60.0) if quick else cls()


# ------------------------------------------------------------------------------------------ cases

def gemm_cases(quick: bool = False) -> list[tuple[int, int, int, str]]:
    """(m, n, k, dtype): token counts m through LLM-like n x k weights, plus odd sizes; fp32 (no TF32) only
    on a few large shapes to state its peak. fp8 shapes have n and k multiples of 16 (cuBLASLt)."""
    if quick:
        ms = (1, 16, 128, 1024, 4096)
        nks = ((4096, 4096), (1024, 4096), (14336, 4096))
        odd = ((100, 5120, 3456),)
    else:
        ms = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
        nks = ((4096, 4096), (1024, 4096), (6144, 4096), (4096, 14336), (14336, 4096), (28672, 4096),
               (8192, 8192), (4096, 1024))
        odd = ((3, 5120, 3456), (100, 5120, 3456), (777, 5120, 3456), (3000, 5120, 3456), (1000, 1000, 1000),
               (2048, 2048, 2048), (16384, 4096, 4096))
    cases = []
    for dtype in ("bf16", "fp16", "fp8"):
        for n, k in nks:
            cases += [(m, n, k, dtype) for m in ms]
        cases += [(m, n, k, dtype) for m, n, k in odd if dtype != "fp8" or (n % 16 == 0 and k % 16 == 0)]
    fp32 = ((1024, 4096, 4096), (4096, 4096, 4096)) if quick else \
        ((256, 4096, 4096), (1024, 4096, 4096), (4096, 4096, 4096), (8192, 8192, 8192))
    cases += [(m, n, k, "fp32") for m, n, k in fp32]
    return cases


HEAD_CONFIGS = ((32, 8, 128), (32, 32, 128), (64, 8, 128), (16, 16, 64))  # (num_heads, num_kv_heads, head_dim)


def context_cases(quick: bool = False) -> list[dict]:
    """Causal prefill: batch x isl tokens per case, at most 16 Ki tokens (8 Ki quick)."""
    heads = HEAD_CONFIGS[:2] if quick else HEAD_CONFIGS
    isls = (128, 512, 2048, 8192) if quick else (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
    batches = (1, 4) if quick else (1, 2, 8)
    limit = 8192 if quick else 16384
    dtypes = ("bf16",) if quick else ATTENTION_DTYPES
    out = []
    for dtype in dtypes:
        for nh, nkv, d in heads:
            for b in batches:
                for s in isls:
                    if b * s <= limit and (dtype == "bf16" or (b == 1 and nh == 32)):
                        out.append({"batch": b, "isl": s, "num_heads": nh, "num_kv_heads": nkv, "head_dim": d,
                                    "window": 0, "dtype": dtype, "kv_dtype": dtype})
    return out


def generation_cases(quick: bool = False, max_kv_bytes: float = 8e9) -> list[dict]:
    """Decode: one query token per sequence over kv_len cached tokens (+1 new), KV cache under max_kv_bytes."""
    heads = HEAD_CONFIGS[:2] if quick else HEAD_CONFIGS
    batches = (1, 16, 64) if quick else (1, 4, 16, 64, 128, 256)
    kv_lens = (128, 2048, 8192) if quick else (128, 512, 2048, 8192, 32768)
    dtypes = ("bf16",) if quick else ATTENTION_DTYPES
    out = []
    for dtype in dtypes:
        for nh, nkv, d in heads:
            for b in batches:
                for kv in kv_lens:
                    kv_bytes = b * (kv + 1) * nkv * d * 2 * 2
                    if kv_bytes <= max_kv_bytes and (dtype == "bf16" or nh == 32):
                        out.append({"batch": b, "kv_len": kv, "num_heads": nh, "num_kv_heads": nkv, "head_dim": d,
                                    "window": 0, "dtype": dtype, "kv_dtype": dtype})
    return out


def elementwise_cases(quick: bool = False) -> list[tuple[str, int, int]]:
    """(op, m, n) in bf16, 64 Ki to 256 Mi elements (16 Mi quick), rows of n for softmax/layernorm."""
    top = 24 if quick else 28
    cases = []
    for op in ELEMENTWISE_OPS:
        for p in range(16, top + 1, 2):
            n = 4096 if op in ("softmax", "layernorm") else 1024
            cases.append((op, (1 << p) // n, n))
    return cases


def bandwidth_sizes(l2_bytes: int | None, free_bytes: int | None, quick: bool = False) -> list[int]:
    """Bytes per copy: in-L2 sizes (a quarter and half of L2) and streaming sizes up to 2 GiB (1/8 of free)."""
    l2 = int(l2_bytes or 50 << 20)
    cap = min(2 << 30, int((free_bytes or 16 << 30) / 8))
    sizes = {max(1 << 20, l2 // 8), max(1 << 20, l2 // 4), 1 << 28, 1 << 30, cap} if not quick else \
        {max(1 << 20, l2 // 4), 1 << 28}
    return sorted(s for s in sizes if s <= cap)


# ------------------------------------------------------------------------------ provenance, nvidia-smi

def parse_nvidia_smi(text: str) -> dict:
    """`nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv,noheader,nounits` (first GPU) -> dict."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    values = [v.strip() for v in line.split(",")]
    if len(values) != len(SMI_FIELDS):
        return {}
    out = {}
    for key, value in zip(SMI_FIELDS, values, strict=True):
        if value in ("", "[N/A]", "N/A", "[Not Supported]"):
            continue
        try:
            out[key] = float(value) if key not in ("name", "driver_version") else value
        except ValueError:
            out[key] = value
    return out


def query_nvidia_smi(index: int = 0) -> dict:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        res = subprocess.run([exe, f"--id={index}", f"--query-gpu={','.join(SMI_FIELDS)}",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_nvidia_smi(res.stdout) if res.returncode == 0 else {}


def cuda_provenance(props: dict, versions: dict, smi: dict, plan: CudaPlan, date: str | None = None) -> dict:
    """The provenance record of a GPU calibration, from plain dicts (no torch needed)."""
    return {
        "tool": "perfsim calibrate (torch CUDA benchmarks)",
        "date_utc": date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gpu": {"name": props.get("name"), "compute_capability": props.get("compute_capability"),
                "multi_processor_count": props.get("multi_processor_count"),
                "total_memory_bytes": props.get("total_memory"), "l2_cache_bytes": props.get("l2_cache_size"),
                "driver_version": smi.get("driver_version"), "max_sm_clock_mhz": smi.get("clocks.max.sm"),
                "power_limit_w": smi.get("power.limit"), "power_draw_at_start_w": smi.get("power.draw")},
        "versions": {"python": sys.version.split()[0], **versions},
        "host": {"machine": platform.machine(), "system": f"{platform.system()} {platform.release()}"},
        "timer": "CUDA events around batches of back-to-back calls after warm-up; median of the batches",
        "plan": {k: getattr(plan, k) for k in plan.__dataclass_fields__},
    }


# ------------------------------------------------------------------------------- derived device numbers

def gemm_flops(row: dict) -> float:
    return 2.0 * row["m"] * row["n"] * row["k"]


def summarize(gemm: list[dict], bandwidth: list[dict], overhead: list[dict], l2_bytes: int | None) -> dict:
    """Best measured FLOP/s per dtype, streaming (main) and in-L2 copy bandwidth, launch overhead."""
    peaks: dict[str, float] = {}
    for r in gemm:
        peaks[r["dtype"]] = max(peaks.get(r["dtype"], 0.0), gemm_flops(r) / r["measured_s"])
    l2 = l2_bytes or 0
    in_l2 = [r["bandwidth_Bps"] for r in bandwidth if r["bytes_moved"] <= l2]
    streaming = [r for r in bandwidth if r["bytes_moved"] > 4 * l2]
    biggest = max((r["array_bytes"] for r in streaming), default=None)
    main = [r["bandwidth_Bps"] for r in streaming if r["array_bytes"] == biggest]
    if not main and bandwidth:  # no copy well beyond L2: the largest one measured
        biggest = max(r["array_bytes"] for r in bandwidth)
        main = [r["bandwidth_Bps"] for r in bandwidth if r["array_bytes"] == biggest]
    if not main:
        raise ValueError("no copy bandwidth was measured")
    ov = {r["op"]: r["measured_s"] for r in overhead}
    return {"peak_flops": peaks, "main_bandwidth_Bps": max(main) if main else None,
            "l2_bandwidth_Bps": max(in_l2) if in_l2 else None, "stream_array_bytes": biggest,
            "launch_s": ov.get("eager_tiny_add"), "sync_latency_s": ov.get("synced_tiny_add")}


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "this-gpu"


def hardware_spec(name: str, props: dict, smi: dict, summary: dict, date: str) -> dict:
    """A perfsim hardware YAML mapping (kind gpu) from measured numbers and device properties."""
    from perfsim.units import format_quantity as q

    made = f"measured by perfsim calibrate on {date}"
    peaks = dict(summary["peak_flops"])
    if not peaks:
        raise ValueError("no GEMM was measured; cannot state a peak")
    notes = []
    if "fp32" not in peaks:  # elementwise math falls back to the fp32 peak; state an estimate
        peaks["fp32"] = max(peaks.values()) / 16.0
        notes.append("fp32 not measured: estimated as 1/16 of the best tensor-core rate")
    if "fp8" not in peaks and "bf16" in peaks:
        notes.append("fp8 not measured (no torch._scaled_mm or unsupported): fp8 runs at the bf16 rate")
    if smi.get("clocks.max.sm"):
        clock, clock_src = smi["clocks.max.sm"] * 1e6, "nvidia-smi clocks.max.sm"
    elif props.get("clock_rate_khz"):
        clock, clock_src = props["clock_rate_khz"] * 1e3, "cudaDeviceProp.clockRate"
    else:
        clock, clock_src = 1.5e9, "estimate: 1.5 GHz (no clock reported)"
    memory = []
    l2 = props.get("l2_cache_size")
    if l2 and summary.get("l2_bandwidth_Bps"):
        memory.append({"name": "l2", "capacity": q(float(l2), "B", binary=True),
                       "bandwidth": q(summary["l2_bandwidth_Bps"], "B/s"),
                       "source": f"capacity: torch.cuda.get_device_properties L2_cache_size; bandwidth {made}: "
                                 f"best device-to-device copy (read + write bytes) of in-L2 tensors (CUDA graph)"})
    memory.append({"name": "hbm", "capacity": q(float(props["total_memory"]), "B", binary=True),
                   "bandwidth": q(summary["main_bandwidth_Bps"], "B/s"),
                   "source": f"capacity: torch.cuda.get_device_properties total_memory; bandwidth {made}: "
                             f"device-to-device copy of {(summary.get('stream_array_bytes') or 0) >> 20} MiB "
                             f"tensors (read + write bytes)"})
    if smi.get("power.limit") and smi.get("power.draw") and smi["power.draw"] < smi["power.limit"]:
        power = {"tdp": f"{smi['power.limit']:.0f} W", "idle": f"{smi['power.draw']:.0f} W",
                 "source": "nvidia-smi power.limit (tdp) and power.draw before the benchmarks (idle)"}
    else:
        power = dict(PLACEHOLDER_POWER)
    return {
        "name": name,
        "kind": "gpu",
        "vendor": "NVIDIA",
        "summary": f"{props.get('name', 'GPU')} measured by perfsim calibrate on {date}",
        "compute": {
            "units": int(props["multi_processor_count"]), "unit_name": "SM", "clock": q(clock, "Hz"),
            "peak": {k: q(v, "FLOP/s") for k, v in sorted(peaks.items())},
            "source": f"{made}: best torch GEMM FLOP/s per dtype (torch.mm; fp8 via torch._scaled_mm; fp32 with "
                      f"TF32 off); units: multi_processor_count; clock: {clock_src}"
                      + ("; " + "; ".join(notes) if notes else ""),
        },
        "memory": memory,
        "power": power,
        "launch_overhead": q(summary.get("launch_s") or 5e-6, "s"),
        "launch_overhead_source": f"{made}: per-op GPU time of back-to-back 1-element torch adds (eager launch "
                                  f"and dispatch rate), CUDA events",
    }


# ------------------------------------------------------------------------------ torch (GPU) section

def torch_cuda():
    """torch with a usable CUDA device, or raise InvalidInputError (one line)."""
    from perfsim.errors import InvalidInputError
    try:
        import torch
    except Exception:
        raise InvalidInputError(NEEDS) from None
    try:
        ok = torch.cuda.is_available() and torch.cuda.device_count() > 0
    except Exception:
        ok = False
    if not ok:
        raise InvalidInputError(NEEDS)
    return torch


TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _dt(torch, name: str):
    return getattr(torch, TORCH_DTYPES[name])


def time_once(torch, fn: Callable[[], object]) -> float:
    """Seconds of one call of fn, timed with CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3


def time_cuda(torch, fn: Callable[[], object], min_time: float, repeats: int, warmup: int = 3) -> float:
    """Median seconds per call over `repeats` batches of back-to-back calls, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    calls = max(1, min(10_000, math.ceil(min_time / repeats / max(time_once(torch, fn), 1e-7))))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(repeats):
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e-3 / calls)
    return statistics.median(samples)


@dataclass
class CudaMeasurements:
    props: dict
    smi: dict
    plan: CudaPlan
    provenance: dict
    gemm: list[dict] = field(default_factory=list)
    context_attention: list[dict] = field(default_factory=list)
    generation_attention: list[dict] = field(default_factory=list)
    elementwise: list[dict] = field(default_factory=list)
    bandwidth: list[dict] = field(default_factory=list)
    overhead: list[dict] = field(default_factory=list)
    power: list[dict] = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    wall_s: float = 0.0


def device_props(torch, index: int = 0) -> dict:
    p = torch.cuda.get_device_properties(index)
    return {"name": p.name, "total_memory": int(p.total_memory), "multi_processor_count": int(p.multi_processor_count),
            "compute_capability": f"{p.major}.{p.minor}",
            "l2_cache_size": int(getattr(p, "L2_cache_size", 0) or 0) or None,
            "clock_rate_khz": getattr(p, "clock_rate", None)}


def versions(torch) -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        out["cudnn"] = str(torch.backends.cudnn.version())
    except Exception:
        pass
    return out


class _Sweep:
    """Deadline, skip counts and progress of one GPU sweep."""

    def __init__(self, plan: CudaPlan, progress: Progress | None, skipped: dict):
        self.plan, self.progress, self.skipped, self.start = plan, progress, skipped, time.perf_counter()

    def over(self, section: str) -> bool:
        if time.perf_counter() - self.start > self.plan.budget_s:
            self.skip(section, "deadline")
            return True
        return False

    def skip(self, section: str, why: str) -> None:
        key = f"{section}: {why}"
        self.skipped[key] = self.skipped.get(key, 0) + 1

    def report(self, what: str, fraction: float) -> None:
        if self.progress is not None:
            self.progress(what, min(max(fraction, 0.0), 1.0))


def bench_gemm(torch, cases, plan: CudaPlan, sweep: _Sweep, share=(0.0, 1.0)) -> list[dict]:
    rows = []
    dev = "cuda"
    scaled_mm = getattr(torch, "_scaled_mm", None)
    fp8 = getattr(torch, "float8_e4m3fn", None)
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for i, (m, n, k, dtype) in enumerate(cases):
            if sweep.over("gemm"):
                continue
            try:
                if dtype == "fp8":
                    if scaled_mm is None or fp8 is None:
                        sweep.skip("gemm fp8", "torch has no _scaled_mm / float8_e4m3fn")
                        continue
                    a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
                    w = torch.randn(n, k, device=dev, dtype=torch.bfloat16).to(fp8)
                    one = torch.ones((), device=dev, dtype=torch.float32)

                    def fn(a=a, w=w, one=one):  # the bf16 activation is cast to fp8 first, as an fp8 linear does
                        out = scaled_mm(a.to(fp8), w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
                        return out[0] if isinstance(out, tuple) else out
                    source = "torch._scaled_mm (+ bf16->fp8 cast of the activation)"
                else:
                    t = _dt(torch, dtype)
                    a = torch.randn(m, k, device=dev, dtype=t)
                    b = torch.randn(k, n, device=dev, dtype=t)
                    c = torch.empty(m, n, device=dev, dtype=t)

                    def fn(a=a, b=b, c=c):
                        return torch.mm(a, b, out=c)
                    source = "torch.mm" + (" (TF32 off)" if dtype == "fp32" else "")
                sec = time_cuda(torch, fn, plan.min_time, plan.repeats, plan.warmup)
            except Exception as exc:  # an unsupported shape/dtype combination: skip it, keep going
                sweep.skip(f"gemm {dtype}", type(exc).__name__)
                continue
            rows.append({"op": "gemm", "m": m, "n": n, "k": k, "dtype": dtype, "kernel_source": source,
                         "measured_s": sec})
            sweep.report(f"gemm {dtype} {m}x{n}x{k}", share[0] + (share[1] - share[0]) * (i + 1) / len(cases))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    return rows


def _sdpa(torch):
    """SDPA, whether it takes enable_gqa, and a context that allows only fused kernels (flash, cuDNN,
    memory-efficient): the math fallback materialises the q x kv score matrix, which is not what an
    inference engine runs, so a case no fused kernel serves fails instead of timing the fallback."""
    import contextlib
    import inspect

    f = torch.nn.functional.scaled_dot_product_attention
    try:
        gqa = "enable_gqa" in inspect.signature(f).parameters
    except (TypeError, ValueError):
        gqa = False
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        fused = [b for b in (getattr(SDPBackend, n, None) for n in ("FLASH_ATTENTION", "CUDNN_ATTENTION",
                                                                     "EFFICIENT_ATTENTION")) if b is not None]

        def fused_only():
            return sdpa_kernel(fused)
    except Exception:  # older torch: no backend selection
        fused_only = contextlib.nullcontext
    return f, gqa, fused_only


def bench_attention(torch, cases, generation: bool, plan: CudaPlan, sweep: _Sweep, share=(0.0, 1.0)) -> list[dict]:
    """SDPA causal prefill (q = kv = isl) or decode (q = 1 over kv_len + 1 cached tokens), fused kernels only.

    Grouped KV heads go to SDPA natively (enable_gqa) where a fused kernel takes them; otherwise the KV
    heads are repeated up to the query heads before timing, and the row records the heads that ran."""
    sdpa, gqa, fused_only = _sdpa(torch)
    rows = []
    section = "generation_attention" if generation else "context_attention"
    for i, case in enumerate(cases):
        if sweep.over(section):
            continue
        b, nh, nkv, d = case["batch"], case["num_heads"], case["num_kv_heads"], case["head_dim"]
        t = _dt(torch, case["dtype"])
        q_len, kv_len = (1, case["kv_len"] + 1) if generation else (case["isl"], case["isl"])
        causal = not generation
        tries = ([nkv] if gqa or nkv == nh else []) + ([nh] if nkv != nh else [])
        sec = None
        for kv_heads in tries:
            q = k = v = fn = None
            try:
                q = torch.randn(b, nh, q_len, d, device="cuda", dtype=t)
                k = torch.randn(b, kv_heads, kv_len, d, device="cuda", dtype=t)
                v = torch.randn(b, kv_heads, kv_len, d, device="cuda", dtype=t)
                kwargs = {"enable_gqa": True} if kv_heads != nh else {}

                def fn(q=q, k=k, v=v, kwargs=kwargs, causal=causal):
                    return sdpa(q, k, v, is_causal=causal, **kwargs)
                with fused_only():
                    sec = time_cuda(torch, fn, plan.min_time, plan.repeats, plan.warmup)
                break
            except Exception as exc:  # no fused kernel for this layout, out of memory: next try, else skip
                sweep.skip(f"{section} kv_heads={'native' if kv_heads != nh else 'repeated'}", type(exc).__name__)
            finally:
                q = k = v = fn = None
                torch.cuda.empty_cache()
        if sec is None:
            continue
        rows.append({**case, "num_kv_heads": kv_heads, "measured_s": sec})
        sweep.report(section, share[0] + (share[1] - share[0]) * (i + 1) / len(cases))
    return rows


def bench_elementwise(torch, cases, plan: CudaPlan, sweep: _Sweep, share=(0.0, 1.0)) -> list[dict]:
    F = torch.nn.functional
    rows = []
    for i, (op, m, n) in enumerate(cases):
        if sweep.over("elementwise"):
            continue
        try:
            x = torch.randn(m, n, device="cuda", dtype=torch.bfloat16)
            if op == "add":
                y = torch.randn_like(x)
                out = torch.empty_like(x)

                def fn(x=x, y=y, out=out):
                    return torch.add(x, y, out=out)
            elif op == "gelu":
                def fn(x=x):
                    return F.gelu(x, approximate="tanh")
            elif op == "softmax":
                def fn(x=x):
                    return torch.softmax(x, dim=-1)
            else:
                w = torch.ones(n, device="cuda", dtype=torch.bfloat16)
                bias = torch.zeros(n, device="cuda", dtype=torch.bfloat16)

                def fn(x=x, w=w, bias=bias, n=n):
                    return F.layer_norm(x, (n,), w, bias)
            sec = time_cuda(torch, fn, plan.min_time, plan.repeats, plan.warmup)
        except Exception as exc:
            sweep.skip(f"elementwise {op}", type(exc).__name__)
            continue
        finally:
            x = y = out = fn = None
            torch.cuda.empty_cache()
        rows.append({"op": op, "m": m, "n": n, "elements": m * n, "dtype": "bf16", "measured_s": sec})
        sweep.report(f"{op} {m}x{n}", share[0] + (share[1] - share[0]) * (i + 1) / len(cases))
    return rows


def bench_bandwidth(torch, sizes, plan: CudaPlan, sweep: _Sweep, l2_bytes: int | None) -> list[dict]:
    """dst.copy_(src) per size (2 bytes moved per byte); in-L2 sizes replay a CUDA graph of many copies so
    that launch overhead does not hide the copy."""
    rows = []
    for nbytes in sizes:
        if sweep.over("bandwidth"):
            continue
        try:
            src = torch.empty(nbytes, device="cuda", dtype=torch.uint8).random_(0, 255)
            dst = torch.empty_like(src)
            reps = 1
            fn = lambda src=src, dst=dst: dst.copy_(src)  # noqa: E731
            how = "eager"
            if l2_bytes and 2 * nbytes <= l2_bytes:
                try:
                    reps = 50
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):
                        for _ in range(3):
                            dst.copy_(src)
                    torch.cuda.current_stream().wait_stream(stream)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        for _ in range(reps):
                            dst.copy_(src)
                    fn = graph.replay
                    how = "cuda graph"
                except Exception:
                    reps, how = 1, "eager"
                    fn = lambda src=src, dst=dst: dst.copy_(src)  # noqa: E731
            sec = time_cuda(torch, fn, plan.min_time, plan.repeats, plan.warmup) / reps
        except Exception as exc:
            sweep.skip("bandwidth", type(exc).__name__)
            continue
        finally:
            src = dst = fn = graph = None
            torch.cuda.empty_cache()
        rows.append({"op": "copy", "array_bytes": nbytes, "bytes_moved": 2 * nbytes, "measured_s": sec,
                     "bandwidth_Bps": 2 * nbytes / sec, "how": how})
    return rows


def bench_overhead(torch, plan: CudaPlan) -> list[dict]:
    """Eager launch rate (back-to-back 1-element adds, CUDA events) and a synchronised round trip (wall clock)."""
    x = torch.zeros(1, device="cuda")
    eager = time_cuda(torch, lambda: x.add_(1.0), 0.02, 5, warmup=50)
    samples = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(200):
            x.add_(1.0)
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - t0) / 200)
    return [{"op": "eager_tiny_add", "measured_s": eager},
            {"op": "synced_tiny_add", "measured_s": statistics.median(samples)}]


def run_cuda(quick: bool = False, progress: Progress | None = None, plan: CudaPlan | None = None) -> CudaMeasurements:
    """Run every GPU benchmark on device 0."""
    torch = torch_cuda()
    plan = plan or CudaPlan.make(quick)
    smi = query_nvidia_smi(0)  # before any work: power.draw is close to idle
    torch.cuda.set_device(0)
    props = device_props(torch, 0)
    meas = CudaMeasurements(props, smi, plan, cuda_provenance(props, versions(torch), smi, plan))
    sweep = _Sweep(plan, progress, meas.skipped)
    t0 = time.perf_counter()
    sweep.report("launch overhead", 0.0)
    meas.overhead = bench_overhead(torch, plan)
    free = torch.cuda.mem_get_info()[0]
    meas.bandwidth = bench_bandwidth(torch, bandwidth_sizes(props["l2_cache_size"], free, quick), plan, sweep,
                                     props["l2_cache_size"])
    meas.gemm = bench_gemm(torch, gemm_cases(quick), plan, sweep, (0.05, 0.55))
    meas.context_attention = bench_attention(torch, context_cases(quick), False, plan, sweep, (0.55, 0.72))
    meas.generation_attention = bench_attention(torch, generation_cases(quick, min(8e9, free / 4)), True, plan,
                                                sweep, (0.72, 0.85))
    meas.elementwise = bench_elementwise(torch, elementwise_cases(quick), plan, sweep, (0.85, 0.95))
    if not quick:
        from perfsim.calibrate import bench_power
        sweep.report("power under sustained copy and GEMM", 0.95)
        try:
            meas.power, why = bench_power.measure_power(torch)
        except Exception as exc:  # an NVML or GPU error here must not lose the kernel sweep
            meas.power, why = [], f"{type(exc).__name__} while measuring power"
        if why:
            sweep.skip("power", why)
    meas.wall_s = time.perf_counter() - t0
    sweep.report("measurements done", 0.95)
    return meas
