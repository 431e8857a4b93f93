"""Measure this CPU through numpy: GEMM (numpy.matmul), streaming bandwidth, elementwise ops, call overhead.

Everything here uses numpy and the standard library only. Times are wall-clock (time.perf_counter):
each case is warmed up, then run in `repeats` batches of enough calls to last `min_time / repeats`,
and the median per-call time of the batches is kept. A deadline bounds the whole sweep: cases left
when it passes are skipped (and counted), so a slow machine gets fewer points rather than a long wait.

Results are plain dicts (one per measured case); perfsim.calibrate.device turns them into tidy frames.
"""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

Progress = Callable[[str, float], None]

POW2 = (16, 32, 64, 128, 256, 512, 1024, 2048)
ODD = (24, 77, 100, 200, 333, 384, 500, 768, 1000, 1536)
DTYPES = {"fp32": np.float32, "fp64": np.float64}
ELEMENTWISE_OPS = ("add", "gelu", "softmax", "layernorm")
VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "0x41": "Arm", "0x61": "Apple", "CentaurHauls": "Centaur",
           "HygonGenuine": "Hygon"}
PLACEHOLDER_POWER = {"tdp": "100 W", "idle": "20 W",
                     "source": "unknown: placeholder 100 W / 20 W, edit with your CPU's TDP (perfsim calibrate "
                               "cannot measure power)"}


@dataclass(frozen=True)
class CpuPlan:
    """What to measure and for how long; `quick` trims sizes and per-case time."""
    quick: bool = False
    max_dim: int = 2048
    min_time: float = 0.020          # seconds of timed calls per case (over all repeats)
    repeats: int = 5
    fp64_max_dim: int = 1024
    budget_s: float = 45.0           # whole CPU sweep; cases past the deadline are skipped
    stream_bytes: int = 512 << 20    # per array of the large streaming test
    max_elements: int = 1 << 24      # largest elementwise op (fp32 elements)
    threads: int = 1

    @classmethod
    def make(cls, quick: bool = False, info: dict | None = None) -> CpuPlan:
        info = info or cpu_info()
        threads = max(1, int(info.get("physical_cores") or 1))
        avail = int(info.get("mem_available_bytes") or 0)
        llc = llc_bytes(info) or (32 << 20)
        if quick:  # streaming arrays still 4x the LLC, at least 128 MiB
            stream = _stream_bytes(avail, (max(128 << 20, 4 * llc), 128 << 20, 64 << 20))
            return cls(quick=True, max_dim=1024, min_time=0.006, repeats=3, fp64_max_dim=512, budget_s=10.0,
                       stream_bytes=stream, max_elements=1 << 22, threads=threads)
        stream = _stream_bytes(avail, (1 << 30, 512 << 20, 256 << 20, 128 << 20))
        return cls(stream_bytes=stream, threads=threads)


def _stream_bytes(available: int, choices: tuple[int, ...]) -> int:
    """The largest array size whose three arrays (a + b -> c) take at most a quarter of free memory
    (256 MiB at most when free memory is unknown)."""
    if available <= 0:
        return min(choices[0], 256 << 20)
    for size in choices:
        if 3 * size <= available / 4:
            return size
    return choices[-1]


# ----------------------------------------------------------------------------------- host description

def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cache_bytes(text: str) -> int | None:
    m = re.match(r"^\s*(\d+)\s*([KMG]?)", text)
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def cpu_info() -> dict:
    """Model, cores, clock, caches and memory of this machine, from /proc and /sys where present."""
    cpuinfo = _read("/proc/cpuinfo")
    model = vendor = ""
    mhz: list[float] = []
    cores = set()
    phys = core = None
    for line in cpuinfo.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key in ("model name", "Model", "cpu model") and not model:
            model = value
        elif key in ("vendor_id", "CPU implementer") and not vendor:
            vendor = value
        elif key == "cpu MHz":
            try:
                mhz.append(float(value))
            except ValueError:
                pass
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not line.strip():
            if core is not None:
                cores.add((phys, core))
            phys = core = None
    if core is not None:
        cores.add((phys, core))
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    logical = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = logical
    physical = min(len(cores) or logical, usable)

    caches = []
    for idx in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        level, kind, size = (_read(str(idx / f)).strip() for f in ("level", "type", "size"))
        nbytes = _cache_bytes(size)
        if level and nbytes:
            caches.append({"level": int(level), "type": kind, "size_bytes": nbytes, "size": size})
    meminfo = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            meminfo[key.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    llc_level = max((c["level"] for c in caches if c["type"] in ("Unified", "Data")), default=None)
    llc_domains = set()  # distinct sets of CPUs sharing a last-level cache (CCXs, sockets)
    if llc_level is not None:
        for idx in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cache/index*"):
            if _read(str(idx / "level")).strip() == str(llc_level):
                llc_domains.add(_read(str(idx / "shared_cpu_list")).strip())
    return {
        "model": model,
        "vendor": VENDORS.get(vendor, vendor or (model.split()[0] if model.split() else "unknown")),
        "logical_cpus": logical,
        "usable_cpus": usable,
        "physical_cores": physical,
        "cpu_mhz": statistics.median(mhz) if mhz else None,
        "cpu_max_mhz": int(max_khz) / 1000.0 if max_khz.isdigit() else None,
        "caches": caches,
        "llc_instances": max(1, len(llc_domains)),
        "mem_total_bytes": meminfo.get("MemTotal"),
        "mem_available_bytes": meminfo.get("MemAvailable", meminfo.get("MemFree")),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
    }


def blas_info() -> dict:
    """numpy's build configuration (BLAS/LAPACK) and, if threadpoolctl is installed, the live thread pools."""
    out: dict = {}
    try:
        cfg = np.show_config(mode="dicts")
        deps = cfg.get("Build Dependencies", {})
        out["blas"] = {k: str(v) for k, v in deps.get("blas", {}).items() if k in ("name", "version",
                                                                                  "openblas configuration")}
        out["lapack"] = {k: str(v) for k, v in deps.get("lapack", {}).items() if k in ("name", "version")}
        simd = cfg.get("SIMD Extensions", {})
        out["simd_found"] = [str(s) for s in simd.get("found", [])]
    except Exception as exc:  # older numpy: no mode="dicts"
        out["show_config_error"] = f"{type(exc).__name__}: {exc}"
    try:
        from threadpoolctl import threadpool_info  # optional
        out["threadpools"] = [{k: str(v) for k, v in p.items() if k in ("internal_api", "version", "num_threads",
                                                                          "threading_layer", "architecture")}
                              for p in threadpool_info()]
    except Exception:
        pass
    return out


def provenance(info: dict, plan: CpuPlan, threads: dict | None = None) -> dict:
    return {
        "tool": "perfsim calibrate (numpy CPU benchmarks)",
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {k: info.get(k) for k in ("model", "vendor", "logical_cpus", "usable_cpus", "physical_cores",
                                          "cpu_mhz", "cpu_max_mhz", "caches", "llc_instances", "mem_total_bytes",
                                          "machine", "system")},
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "numpy_config": blas_info(),
        "timer": "time.perf_counter; warm-up, then the median per-call time of repeated batches",
        "plan": {k: getattr(plan, k) for k in plan.__dataclass_fields__},
        "threads": threads or {},
    }


# ------------------------------------------------------------------------------------- BLAS threads

class BlasThreads:
    """Get/set the thread count of the BLAS numpy uses: threadpoolctl if installed, else OpenBLAS's own
    `*_set_num_threads` through ctypes (the library found in /proc/self/maps). `available` is False where
    neither works (then the BLAS keeps its own count)."""

    def __init__(self):
        self._limits = None
        self._libs: list = []
        try:
            from threadpoolctl import ThreadpoolController  # optional
            ctl = ThreadpoolController()
            self._blas = [p for p in ctl.lib_controllers if p.user_api == "blas"]
            if self._blas:
                self._limits = ctl
        except Exception:
            self._blas = []
        if self._limits is None:
            self._libs = self._openblas_ctypes()
        self.available = bool(self._blas or self._libs)
        self.original = self.get()

    @staticmethod
    def _openblas_ctypes() -> list:
        import ctypes

        paths = []
        for line in _read("/proc/self/maps").splitlines():
            path = line.split()[-1] if "/" in line else ""
            if "openblas" in Path(path).name.lower() and path not in paths:
                paths.append(path)
        libs = []
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in ("openblas", "scipy_openblas"):
                for suffix in ("", "64_", "_64"):
                    try:
                        setter = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                        getter = getattr(lib, f"{prefix}_get_num_threads{suffix}")
                    except AttributeError:
                        continue
                    setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                    libs.append((path, setter, getter))
                    break
                else:
                    continue
                break
        return libs

    def get(self) -> int | None:
        if self._blas:
            return int(self._blas[0].num_threads)
        if self._libs:
            return int(self._libs[0][2]())
        return None

    def set(self, n: int) -> None:
        if self._blas:
            for lib in self._blas:
                lib.set_num_threads(int(n))
        for _, setter, _ in self._libs:
            setter(int(n))

    def restore(self) -> None:
        if self.original:
            self.set(self.original)


def choose_threads(blas: BlasThreads, cores: int, probe: int = 384, calls: int = 12) -> tuple[int, dict]:
    """The BLAS thread count to benchmark with: the most threads whose median time on a probe GEMM is within
    15% of the fastest. On a busy machine a thread waiting for a core stalls every multi-threaded call, so
    fewer threads measure cleaner (and the spec then describes the cores actually used)."""
    current = blas.get() or cores
    if not blas.available or cores <= 1:
        return current, {}
    a = np.random.default_rng(2).random((probe, probe), dtype=np.float32)
    c = np.empty_like(a)
    timings = {}
    for n in sorted({cores, max(1, cores // 2), 1}, reverse=True):
        blas.set(n)
        for _ in range(2):
            np.matmul(a, a, out=c)
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter()
            np.matmul(a, a, out=c)
            samples.append(time.perf_counter() - t0)
        timings[n] = statistics.median(samples)
    best = min(timings.values())
    chosen = max(n for n, t in timings.items() if t <= 1.15 * best)
    blas.set(chosen)
    return chosen, timings


# ------------------------------------------------------------------------------------------- timing

def time_call(fn: Callable[[], object], min_time: float, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median seconds per call of `fn` over `repeats` batches lasting about min_time / repeats each.

    A batch that runs far longer than planned (the machine got busy after the call count was chosen) stops
    early and counts the calls it made, so one stall cannot stretch a case from milliseconds to seconds."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-8)
    per_batch = min_time / repeats
    calls = max(1, min(1_000_000, math.ceil(per_batch / once)))
    cap = max(5.0 * per_batch, 0.05)
    samples = []
    for _ in range(repeats):
        done = 0
        t0 = time.perf_counter()
        while done < calls:
            for _ in range(min(16, calls - done)):
                fn()
            done += min(16, calls - done)
            if done < calls and time.perf_counter() - t0 > cap:
                break
        samples.append((time.perf_counter() - t0) / done)
    return statistics.median(samples), samples


@dataclass
class Clock:
    """Deadlines and progress of one sweep. Each section gets a share of the budget plus whatever the
    sections before it left unused; past its deadline a section measures only its `min_cases` first cases
    (cases run in coverage order, so those still span the whole size range)."""
    budget_s: float
    progress: Progress | None = None
    start: float = field(default_factory=time.perf_counter)
    skipped: dict = field(default_factory=dict)
    planned: float = 0.0
    section_end: float = math.inf

    def begin(self, share: float) -> None:
        self.planned += share * self.budget_s
        self.section_end = self.start + self.planned

    def expired(self) -> bool:
        return time.perf_counter() > self.section_end

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def report(self, what: str, fraction: float) -> None:
        if self.progress is not None:
            self.progress(what, min(max(fraction, 0.0), 1.0))

    def skip(self, section: str) -> None:
        self.skipped[section] = self.skipped.get(section, 0) + 1


def coverage_order(n: int) -> list[int]:
    """0..n-1 reordered so that every prefix spans the range: the last, the first, then the midpoints of
    ever finer halvings (van der Corput). A sweep cut short keeps its range and loses only density."""
    if n <= 2:
        return list(range(n))[::-1]
    order, seen, denom = [n - 1, 0], {0, n - 1}, 2
    while denom <= 2 * n:
        for j in range(1, denom, 2):
            idx = round(j * (n - 1) / denom)
            if idx not in seen:
                order.append(idx)
                seen.add(idx)
        denom *= 2
    return order + [i for i in range(n) if i not in seen]


def round_robin(groups: list[list]) -> list:
    """Interleave lists: g0[0], g1[0], ..., g0[1], g1[1], ..."""
    out = []
    for i in range(max((len(g) for g in groups), default=0)):
        out += [g[i] for g in groups if i < len(g)]
    return out


# --------------------------------------------------------------------------------------------- GEMM

def gemm_shapes(max_dim: int = 2048) -> list[tuple[int, int, int]]:
    """(m, n, k): squares over powers of two and odd sizes, a {small, mid, large}^3 grid, and LLM-like
    linears (m tokens through an n x k weight), all within 16..max_dim; sorted by FLOPs."""
    pow2 = [s for s in POW2 if s <= max_dim]
    odd = [s for s in ODD if s <= max_dim]
    shapes = {(s, s, s) for s in pow2 + odd}
    grid = sorted({16, 128, max(s for s in pow2 if s <= max(16, max_dim // 2))})
    shapes |= {(m, n, k) for m in grid for n in grid for k in grid}
    big, mid = pow2[-1], pow2[max(0, len(pow2) - 3)]
    for n, k in ((big, big), (mid, big), (big, mid)):
        shapes |= {(m, n, k) for m in pow2}
    shapes |= {(m, max_dim - max_dim // 4, max_dim // 3) for m in (24, 100, 333)}  # nothing a power of two
    return sorted(shapes, key=lambda s: (s[0] * s[1] * s[2], s))


def bench_gemm(shapes, dtype: str, plan: CpuPlan, clock: Clock, share: tuple[float, float] = (0.0, 1.0),
               min_cases: int = 8) -> list[dict]:
    """numpy.matmul of (m x k) @ (k x n) into a preallocated (m x n) output, per shape (sorted by size)."""
    np_dtype = DTYPES[dtype]
    rng = np.random.default_rng(0)
    rows = []
    shapes = sorted(shapes, key=lambda s: (s[0] * s[1] * s[2], s))
    shapes = [shapes[i] for i in coverage_order(len(shapes))]
    for i, (m, n, k) in enumerate(shapes):
        if clock.expired() and len(rows) >= min_cases:
            clock.skip(f"gemm_{dtype}")
            continue
        a = rng.random((m, k), dtype=np_dtype) - 0.5
        b = rng.random((k, n), dtype=np_dtype) - 0.5
        c = np.empty((m, n), np_dtype)
        t, samples = time_call(lambda a=a, b=b, c=c: np.matmul(a, b, out=c), plan.min_time, plan.repeats)
        rows.append({"op": "gemm", "m": m, "n": n, "k": k, "dtype": dtype, "kernel_source": "numpy.matmul",
                     "measured_s": t, "spread": (max(samples) - min(samples)) / t})
        clock.report(f"gemm {dtype} {m}x{n}x{k}", share[0] + (share[1] - share[0]) * (i + 1) / len(shapes))
    return sorted(rows, key=lambda r: (r["m"] * r["n"] * r["k"], r["m"], r["n"], r["k"]))


# --------------------------------------------------------------------------------------- elementwise

def elementwise_cases(max_elements: int) -> list[tuple[str, int, int]]:
    """(op, m, n) over sizes from 4 Ki to max_elements fp32 elements; rows of n for softmax/layernorm."""
    cases = []
    sizes = [1 << p for p in range(12, 30, 2) if (1 << p) <= max_elements]
    for op in ("add", "gelu"):
        for elements in sizes + [3 * s // 2 for s in sizes[1:-1:2]]:
            n = min(1024, elements)
            cases.append((op, elements // n, n))
    for op in ("softmax", "layernorm"):
        for n in (128, 1024, 4096):
            for m in (16, 64, 256, 1024, 4096, 16384):
                if m * n <= max_elements and m * n >= 4096:
                    cases.append((op, m, n))
    return sorted(set(cases), key=lambda c: (ELEMENTWISE_OPS.index(c[0]), c[1] * c[2], c))


def _gelu(x, out, tmp):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), with two buffers and no temporaries."""
    np.multiply(x, x, out=tmp)
    tmp *= x
    tmp *= 0.044715
    tmp += x
    tmp *= 0.7978845608028654
    np.tanh(tmp, out=tmp)
    tmp += 1.0
    np.multiply(tmp, x, out=out)
    out *= 0.5


def _softmax(x, out):
    mx = x.max(axis=1, keepdims=True)
    np.subtract(x, mx, out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)


def _layernorm(x, out, tmp, gamma, beta, eps=1e-5):
    mu = x.mean(axis=1, keepdims=True)
    np.subtract(x, mu, out=out)
    np.square(out, out=tmp)
    rstd = 1.0 / np.sqrt(tmp.mean(axis=1, keepdims=True) + eps)
    out *= rstd
    out *= gamma
    out += beta


def elementwise_fn(op: str, m: int, n: int, rng) -> Callable[[], object]:
    x = rng.random((m, n), dtype=np.float32) - 0.5
    out = np.empty_like(x)
    if op == "add":
        y = rng.random((m, n), dtype=np.float32)
        return lambda: np.add(x, y, out=out)
    if op == "gelu":
        tmp = np.empty_like(x)
        return lambda: _gelu(x, out, tmp)
    if op == "softmax":
        return lambda: _softmax(x, out)
    if op == "layernorm":
        tmp = np.empty_like(x)
        gamma = np.ones(n, np.float32)
        beta = np.zeros(n, np.float32)
        return lambda: _layernorm(x, out, tmp, gamma, beta)
    raise ValueError(f"unknown elementwise op {op!r}")


def bench_elementwise(cases, plan: CpuPlan, clock: Clock, share=(0.0, 1.0), min_per_op: int = 2) -> list[dict]:
    """Each op over its sizes; ops interleaved and sizes in coverage order, so a cut-short sweep keeps every op
    and its size range."""
    rng = np.random.default_rng(1)
    rows = []
    ops = sorted({c[0] for c in cases}, key=lambda o: ELEMENTWISE_OPS.index(o) if o in ELEMENTWISE_OPS else 99)
    groups = []
    for op in ops:
        mine = sorted((c for c in cases if c[0] == op), key=lambda c: (c[1] * c[2], c))
        groups.append([mine[i] for i in coverage_order(len(mine))])
    cases = round_robin(groups)
    done: dict[str, int] = {}
    for i, (op, m, n) in enumerate(cases):
        if clock.expired() and done.get(op, 0) >= min_per_op:
            clock.skip(f"elementwise_{op}")
            continue
        done[op] = done.get(op, 0) + 1
        fn = elementwise_fn(op, m, n, rng)
        t, samples = time_call(fn, plan.min_time, plan.repeats)
        rows.append({"op": op, "m": m, "n": n, "elements": m * n, "dtype": "fp32", "measured_s": t,
                     "spread": (max(samples) - min(samples)) / t})
        del fn
        clock.report(f"{op} {m}x{n}", share[0] + (share[1] - share[0]) * (i + 1) / len(cases))
    order = {op: j for j, op in enumerate(ops)}
    return sorted(rows, key=lambda r: (order[r["op"]], r["elements"], r["m"], r["n"]))


# ----------------------------------------------------------------------------------------- bandwidth

def _threaded(pool: ThreadPoolExecutor | None, fns: list[Callable[[], object]], calls: int) -> Callable[[], None]:
    """One 'call' runs every chunk function `calls` times, each chunk on its own thread (numpy frees the GIL)."""
    def run_chunk(f):
        for _ in range(calls):
            f()

    if pool is None or len(fns) == 1:
        return lambda: run_chunk(fns[0])

    def run():
        for fut in [pool.submit(run_chunk, f) for f in fns]:
            fut.result()
    return run


def bandwidth_sizes(plan: CpuPlan, info: dict) -> list[int]:
    """Bytes per array: in-L1/L2/LLC sizes up to the LLC and beyond, and the large streaming size."""
    llc = llc_bytes(info) or (32 << 20)
    sizes = {16 << 10, 128 << 10, 1 << 20, 4 << 20, max(64 << 10, llc // 8), max(128 << 10, llc // 4),
             plan.stream_bytes}
    if not plan.quick:
        sizes.add(4 * llc)
    return sorted(s for s in sizes if s <= plan.stream_bytes)


def llc(info: dict) -> dict | None:
    """The last-level cache of cpu0 (sysfs), or None."""
    caches = [c for c in info.get("caches", []) if c["type"] in ("Unified", "Data")]
    return max(caches, key=lambda c: c["level"]) if caches else None


def llc_bytes(info: dict) -> int | None:
    """Total last-level cache: cpu0's LLC size times the number of LLC domains."""
    c = llc(info)
    return c["size_bytes"] * int(info.get("llc_instances") or 1) if c else None


def bench_bandwidth(plan: CpuPlan, info: dict, clock: Clock, share=(0.0, 1.0), min_sizes: int = 2) -> list[dict]:
    """copy (dst = src: 2 bytes moved per byte) and add (c = a + b: 3 per byte), STREAM-style byte counts,
    on one thread and on one thread per core (each on its own chunk). The streaming size runs first, then
    in-LLC sizes, then the rest."""
    sizes = bandwidth_sizes(plan, info)
    llc = llc_bytes(info) or (32 << 20)
    sizes = sorted(sizes, key=lambda b: (b != plan.stream_bytes, not (llc // 16 <= b <= llc // 3), -b))
    threads = sorted({1, plan.threads})
    rows = []
    pool = ThreadPoolExecutor(plan.threads) if plan.threads > 1 else None
    try:
        for i, nbytes in enumerate(sizes):
            if clock.expired() and i >= min_sizes:
                clock.skip("bandwidth")
                continue
            n = nbytes // 4
            a = np.ones(n, np.float32)
            b = np.full(n, 2.0, np.float32)
            c = np.zeros(n, np.float32)  # touch every page before timing
            for t in threads:
                bounds = np.linspace(0, n, t + 1).astype(int)
                chunks = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
                # amortise thread dispatch: small arrays are streamed many times per call
                calls = max(1, (64 << 20) // nbytes) if t > 1 else 1
                for op, moved, fns in (
                        ("copy", 2, [lambda s=s, a=a, c=c: np.copyto(c[s], a[s]) for s in chunks]),
                        ("add", 3, [lambda s=s, a=a, b=b, c=c: np.add(a[s], b[s], out=c[s]) for s in chunks])):
                    run = _threaded(pool if t > 1 else None, fns, calls)
                    sec, samples = time_call(run, plan.min_time, plan.repeats)
                    per = sec / calls
                    rows.append({"op": op, "threads": t, "array_bytes": nbytes, "bytes_moved": moved * nbytes,
                                 "measured_s": per, "bandwidth_Bps": moved * nbytes / per,
                                 "spread": (max(samples) - min(samples)) / sec})
            del a, b, c
            clock.report(f"bandwidth {nbytes >> 10} KiB", share[0] + (share[1] - share[0]) * (i + 1) / len(sizes))
    finally:
        if pool is not None:
            pool.shutdown()
    return rows


# -------------------------------------------------------------------------------------- call overhead

def bench_overhead(plan: CpuPlan) -> list[dict]:
    """Python + numpy dispatch: a 1-element add into a preallocated output, and a 2 x 2 matmul."""
    one = np.ones(1, np.float32)
    out = np.empty(1, np.float32)
    m2 = np.ones((2, 2), np.float32)
    o2 = np.empty((2, 2), np.float32)
    rows = []
    for op, fn in (("tiny_add", lambda: np.add(one, one, out=out)), ("tiny_matmul", lambda: np.matmul(m2, m2, out=o2)),
                   ("python_call", lambda: None)):
        t, samples = time_call(fn, max(plan.min_time, 0.01), max(plan.repeats, 5), warmup=100)
        rows.append({"op": op, "measured_s": t, "spread": (max(samples) - min(samples)) / t})
    return rows


# --------------------------------------------------------------------------------------------- sweep

@dataclass
class CpuMeasurements:
    info: dict
    plan: CpuPlan
    provenance: dict
    gemm: list[dict]
    elementwise: list[dict]
    bandwidth: list[dict]
    overhead: list[dict]
    skipped: dict
    wall_s: float


def run_cpu(quick: bool = False, progress: Progress | None = None, plan: CpuPlan | None = None) -> CpuMeasurements:
    """Run every CPU benchmark within the plan's time budget (each section keeps a minimum of cases)."""
    info = cpu_info()
    plan = plan or CpuPlan.make(quick, info)
    clock = Clock(plan.budget_s, progress)
    load_before = _loadavg()
    blas = BlasThreads()
    clock.report("choosing BLAS threads", 0.0)
    try:
        threads, probe = choose_threads(blas, plan.threads)
        plan = replace(plan, threads=threads)
        thread_info = {"blas_threads_control": blas.available, "blas_threads_default": blas.original,
                       "threads_used": threads, "physical_cores": info.get("physical_cores"),
                       "probe_gemm_384_median_s": probe, "loadavg_before": load_before}
        if threads < int(info.get("physical_cores") or 1):
            thread_info["note"] = (f"fewer threads than cores were faster on a probe GEMM: the machine is busy "
                                   f"(load average {load_before}); the spec describes the {threads} core(s) used")
        clock.report("call overhead", 0.01)
        overhead = bench_overhead(plan)
        clock.begin(0.15)
        bandwidth = bench_bandwidth(plan, info, clock, (0.01, 0.15))
        clock.begin(0.25)
        elementwise = bench_elementwise(elementwise_cases(plan.max_elements), plan, clock, (0.15, 0.35))
        clock.begin(0.40)
        gemm = bench_gemm(gemm_shapes(plan.max_dim), "fp32", plan, clock, (0.35, 0.75))
        clock.begin(0.20)  # fp64 as time allows (a few shapes at least)
        gemm += bench_gemm(gemm_shapes(plan.fp64_max_dim), "fp64", plan, clock, (0.75, 0.95), min_cases=6)
    finally:
        blas.restore()
    thread_info["loadavg_after"] = _loadavg()
    clock.report("measurements done", 0.95)
    return CpuMeasurements(info, plan, provenance(info, plan, thread_info), gemm, elementwise, bandwidth, overhead,
                           dict(clock.skipped), time.perf_counter() - clock.start)


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# ------------------------------------------------------------------------------- derived device numbers

def _best(rows, key=lambda r: True, value=lambda r: r["bandwidth_Bps"]) -> float | None:
    vals = [value(r) for r in rows if key(r)]
    return max(vals) if vals else None


def summarize(meas: CpuMeasurements) -> dict:
    """Peaks, bandwidths and overheads of the device, each from the measurements it comes from."""
    info = meas.info
    peaks = {}
    for dtype in DTYPES:
        best = _best(meas.gemm, lambda r, d=dtype: r["dtype"] == d,
                     lambda r: 2.0 * r["m"] * r["n"] * r["k"] / r["measured_s"])
        if best:
            peaks[dtype] = best
    bw = meas.bandwidth
    most = max((r["threads"] for r in bw), default=1)
    stream = max((r["array_bytes"] for r in bw), default=0)
    ddr = _best(bw, lambda r: r["array_bytes"] == stream)  # best of copy/add, one thread or one per core
    ddr_1t = _best(bw, lambda r: r["array_bytes"] == stream and r["threads"] == 1)
    if not ddr:
        raise ValueError("no streaming bandwidth was measured")
    total_llc = llc_bytes(info)
    l2 = [c for c in info.get("caches", []) if c["level"] == 2 and c["type"] in ("Unified", "Data")]
    l2_total = l2[0]["size_bytes"] * max(1, int(meas.plan.threads or 1)) if l2 else 0
    llc_bw = None
    if total_llc:
        in_llc = [r for r in bw if r["bytes_moved"] <= total_llc]
        llc_bw = _best(in_llc, lambda r: r["bytes_moved"] > l2_total) or _best(in_llc)
    overhead = {r["op"]: r["measured_s"] for r in meas.overhead}
    return {"peak_flops": peaks, "ddr_bandwidth_Bps": ddr, "ddr_bandwidth_1thread_Bps": ddr_1t,
            "stream_array_bytes": stream, "bandwidth_threads": most, "llc_bytes": total_llc,
            "llc_bandwidth_Bps": llc_bw, "call_overhead_s": overhead.get("tiny_add"),
            "matmul_overhead_s": overhead.get("tiny_matmul")}


def slug(text: str) -> str:
    s = re.sub(r"\(r\)|\(tm\)|\bcpu\b|@.*$", " ", text.lower())
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s or "this-cpu"


def hardware_spec(name: str, meas: CpuMeasurements, summary: dict, date: str) -> dict:
    """A perfsim hardware YAML mapping (kind cpu) for this machine; every number says where it came from."""
    from perfsim.units import format_quantity as q

    info = meas.info
    made = f"measured by perfsim calibrate on {date}"
    peaks = dict(summary["peak_flops"])
    if "fp32" not in peaks:
        raise ValueError("no fp32 GEMM was measured; cannot state a peak")
    peak_src = f"{made}: best numpy GEMM (numpy.matmul, {_blas_name()}) FLOP/s per dtype over {len(meas.gemm)} shapes"
    if "fp64" not in peaks:
        peaks["fp64"] = peaks["fp32"] / 2.0
        peak_src += "; fp64 not measured (no time left), estimated as half the fp32 rate"
    if info.get("cpu_mhz"):
        clock, clock_src = info["cpu_mhz"] * 1e6, "/proc/cpuinfo 'cpu MHz' at calibration time (current, not turbo)"
    elif info.get("cpu_max_mhz"):
        clock, clock_src = info["cpu_max_mhz"] * 1e6, "cpufreq cpuinfo_max_freq"
    else:
        clock, clock_src = 2.5e9, "estimate: 2.5 GHz (no 'cpu MHz' in /proc/cpuinfo)"
    physical = int(info.get("physical_cores") or 1)
    cores = int(meas.plan.threads or physical)
    units_src = "physical cores usable by this process" if cores == physical else \
        f"the {cores} core(s) the benchmarks ran on, of {physical} physical (the others were busy)"
    memory = []
    c = llc(info)
    if c and summary.get("llc_bandwidth_Bps"):
        memory.append({
            "name": f"l{c['level']}", "capacity": q(float(summary["llc_bytes"]), "B", binary=True),
            "bandwidth": q(summary["llc_bandwidth_Bps"], "B/s"),
            "source": f"capacity: /sys/devices/system/cpu/cpu0/cache (L{c['level']} {c['size']} x "
                      f"{info.get('llc_instances', 1)} domain(s)); bandwidth {made}: best numpy copy/add on "
                      f"1..{summary['bandwidth_threads']} thread(s) over in-cache arrays (STREAM byte counts)"})
    mem_total = info.get("mem_total_bytes") or 0
    memory.append({
        "name": "ddr",
        "capacity": q(float(mem_total), "B", binary=True) if mem_total else "16 GiB",
        "bandwidth": q(summary["ddr_bandwidth_Bps"], "B/s"),
        "source": ("capacity: /proc/meminfo MemTotal" if mem_total else "capacity unknown: placeholder 16 GiB")
                  + f"; bandwidth {made}: best numpy copy/add streaming {summary['stream_array_bytes'] >> 20} MiB "
                  f"arrays on 1..{summary['bandwidth_threads']} thread(s) (STREAM byte counts; one thread: "
                  f"{q(summary['ddr_bandwidth_1thread_Bps'] or 0.0, 'B/s')})"})
    launch = summary.get("call_overhead_s") or 1e-6
    return {
        "name": name,
        "kind": "cpu",
        "vendor": info.get("vendor") or "unknown",
        "summary": f"{info.get('model', 'this CPU')}: {cores} core(s), measured by perfsim calibrate on {date} "
                   f"(numpy {np.__version__})",
        "compute": {
            "units": cores, "unit_name": "core", "clock": q(clock, "Hz"),
            "peak": {k: q(v, "FLOP/s") for k, v in sorted(peaks.items())},
            "source": f"{peak_src}; units: {units_src}; clock: {clock_src}",
        },
        "memory": memory,
        "power": dict(PLACEHOLDER_POWER),
        "launch_overhead": q(launch, "s"),
        "launch_overhead_source": f"{made}: median time of a 1-element numpy add into a preallocated output "
                                  f"(Python + numpy dispatch)",
    }


def _blas_name() -> str:
    blas = blas_info().get("blas", {})
    return " ".join(x for x in (blas.get("name"), blas.get("version")) if x) or "BLAS unknown"
