"""Measure a GPU's power under sustained work and fit the first-order CMOS energy model's coefficients.

Each workload (idle, an HBM copy, one large GEMM per dtype) runs back to back for a few seconds; the
board's energy counter (NVML, millijoules) over the steady part gives its average power, and the work done
in that time gives its FLOP/s and bytes/s. Then, as perfsim.cost.energy charges it,

    P = P_idle + e_byte * B/s + e_flop[dtype] * FLOP/s        (first-order CMOS energy model)

so the idle row gives P_idle, the copy row e_byte, and each GEMM row its e_flop. fit_energy is plain data in,
plain data out (testable without a GPU); measure_power needs torch and nvidia-ml-py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from perfsim.calibrate.bench_cuda import time_once

PJ = 1e-12
GEMM_SIZE = 8192           # m = n = k of the compute-bound GEMM per dtype
COPY_BYTES = 1 << 30       # bytes per copy of the memory-bound workload (read + write = twice this)
CHECK_M = (64, 512)        # m x 8192 x 8192 bf16 GEMMs between the two extremes: held out of the fit, to check it


def fit_energy(rows: list[dict]) -> dict:
    """Rows {workload: idle|copy|gemm|check, dtype, flops_per_s, bytes_per_s, power_w} -> {idle_w,
    pj_per_byte, pj_per_flop: {dtype: pJ}}; 'check' rows are left out. Raises ValueError without an idle and
    a copy row, or if the copy draws no more than idle."""
    by = {}
    for r in rows:
        by.setdefault(r["workload"], []).append(r)
    if "idle" not in by or "copy" not in by:
        raise ValueError("power: an idle and a copy workload are needed to separate static and memory energy")
    idle_w = by["idle"][0]["power_w"]
    copy = by["copy"][0]
    e_byte = (copy["power_w"] - idle_w) / copy["bytes_per_s"]  # e_byte = (P_copy - P_idle) / (B/s)
    if e_byte <= 0:
        raise ValueError(f"power: copy drew {copy['power_w']:.0f} W, no more than idle {idle_w:.0f} W")
    pj_per_flop = {}
    for r in by.get("gemm", []):
        # e_flop = (P_gemm - P_idle - e_byte * B/s) / (FLOP/s)
        e_flop = (r["power_w"] - idle_w - e_byte * r["bytes_per_s"]) / r["flops_per_s"]
        if e_flop > 0:
            pj_per_flop[r["dtype"]] = e_flop / PJ
    return {"idle_w": idle_w, "pj_per_byte": e_byte / PJ, "pj_per_flop": pj_per_flop}


def predict_power(fitted: dict, row: dict) -> float:
    """P = P_idle + e_byte * B/s + e_flop * FLOP/s for a measured row's rates (W)."""
    e_flop = fitted["pj_per_flop"].get(row["dtype"], 0.0) * PJ
    return fitted["idle_w"] + fitted["pj_per_byte"] * PJ * row["bytes_per_s"] + e_flop * row["flops_per_s"]


def energy_section(fitted: dict, memory_level: str, date: str) -> dict:
    """The hardware YAML `energy:` mapping for a fit_energy result."""
    return {"pj_per_flop": {k: round(v, 4) for k, v in sorted(fitted["pj_per_flop"].items())},
            "pj_per_byte": {memory_level: round(fitted["pj_per_byte"], 3)},
            "source": f"measured by perfsim calibrate on {date}: NVML board energy counter over sustained "
                      f"{GEMM_SIZE}^3 GEMMs per dtype and {COPY_BYTES >> 20} MiB device copies, less idle power "
                      f"(P = P_idle + e_byte*B/s + e_flop*FLOP/s)"}


# ------------------------------------------------------------------------------------ GPU section

def nvml_handle():
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:
        return None, None


class _Sampler:
    """Power (W) and SM clock (MHz) read every 50 ms in a thread, for the record."""

    def __init__(self, nvml, handle):
        self.nvml, self.handle, self.samples, self._stop = nvml, handle, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        n = self.nvml
        while not self._stop.wait(0.05):
            try:
                self.samples.append((n.nvmlDeviceGetPowerUsage(self.handle) / 1e3,
                                     n.nvmlDeviceGetClockInfo(self.handle, n.NVML_CLOCK_SM)))
            except Exception:
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def sustain(torch, nvml, handle, fn: Callable[[], object], seconds: float) -> dict:
    """Run fn back to back: one second to settle, then `seconds` measured. Returns calls, wall s, joules."""
    t_end = time.perf_counter() + 1.0
    while time.perf_counter() < t_end:
        for _ in range(4):
            fn()
        torch.cuda.synchronize()
    calls = max(1, int(seconds / max(time_once(torch, fn), 1e-6)))
    with _Sampler(nvml, handle) as sampler:
        e0, t0 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        e1, t1 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter()
    watts = [w for w, _ in sampler.samples]
    clocks = [c for _, c in sampler.samples]
    return {"calls": calls, "seconds": t1 - t0, "joules": (e1 - e0) / 1e3,
            "max_sample_w": max(watts, default=float("nan")),
            "median_sm_clock_mhz": sorted(clocks)[len(clocks) // 2] if clocks else float("nan")}


def measure_power(torch, dtypes=("bf16", "fp8"), seconds: float = 4.0) -> tuple[list[dict], str | None]:
    """Sustained idle, copy and GEMM workloads on GPU 0 -> (rows for fit_energy, None) or ([], why skipped)."""
    nvml, handle = nvml_handle()
    if nvml is None:
        return [], "nvidia-ml-py (pynvml) not importable or NVML not available"
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:
        return [], "NVML has no board energy counter on this GPU"
    limit_w = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3
    rows = []
    torch.cuda.synchronize()
    time.sleep(2.0)
    e0, t0 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter()
    time.sleep(seconds)
    e1, t1 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter()
    rows.append({"workload": "idle", "dtype": "", "flops_per_s": 0.0, "bytes_per_s": 0.0,
                 "power_w": (e1 - e0) / 1e3 / (t1 - t0), "seconds": t1 - t0, "power_limit_w": limit_w})

    src = torch.empty(COPY_BYTES, device="cuda", dtype=torch.uint8).random_(0, 255)
    dst = torch.empty_like(src)
    run = sustain(torch, nvml, handle, lambda: dst.copy_(src), seconds)
    rows.append(_row("copy", "", 0.0, 2.0 * COPY_BYTES, run, limit_w))
    src = dst = None
    torch.cuda.empty_cache()

    n = GEMM_SIZE
    shapes = [("gemm", d, n) for d in dtypes] + [("check", "bf16", m) for m in CHECK_M]
    for workload, dtype, m in shapes:
        try:
            fn, elem = _gemm(torch, dtype, m, n)
        except Exception:
            continue
        run = sustain(torch, nvml, handle, fn, seconds)
        rows.append(_row(workload, dtype, 2.0 * m * n * n, elem * (2 * m * n + n * n), run, limit_w))
        fn = None
        torch.cuda.empty_cache()
    return rows, None


def _gemm(torch, dtype: str, m: int, n: int):
    """An m x n x n GEMM of dtype and its operand element size in bytes."""
    if dtype == "fp8":
        fp8 = torch.float8_e4m3fn
        a = torch.randn(m, n, device="cuda", dtype=torch.bfloat16).to(fp8)
        w = torch.randn(n, n, device="cuda", dtype=torch.bfloat16).to(fp8)
        one = torch.ones((), device="cuda", dtype=torch.float32)
        torch._scaled_mm(a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        return (lambda: torch._scaled_mm(a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)), 1
    t = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    a = torch.randn(m, n, device="cuda", dtype=t)
    b = torch.randn(n, n, device="cuda", dtype=t)
    c = torch.empty(m, n, device="cuda", dtype=t)
    return (lambda: torch.mm(a, b, out=c)), 2


def _row(workload: str, dtype: str, flops_per_call: float, bytes_per_call: float, run: dict, limit_w: float) -> dict:
    rate = run["calls"] / run["seconds"]
    return {"workload": workload, "dtype": dtype, "flops_per_s": flops_per_call * rate,
            "bytes_per_s": bytes_per_call * rate, "power_w": run["joules"] / run["seconds"],
            "seconds": run["seconds"], "max_sample_w": run["max_sample_w"],
            "median_sm_clock_mhz": run["median_sm_clock_mhz"], "power_limit_w": limit_w}
