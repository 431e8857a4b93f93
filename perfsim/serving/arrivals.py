"""Request streams: when requests arrive and how long their prompts and answers are.

Open loop (arrival times fixed in advance):
  poisson(rate)      inter-arrival ~ Exponential(mean 1/rate)
  gamma(rate, cv)    inter-arrival ~ Gamma(shape 1/cv^2, scale cv^2/rate): same mean rate, burstier for cv > 1
  trace(path)        CSV or JSONL rows with an arrival time and input/output lengths
Closed loop: closed_loop(concurrency) keeps `concurrency` requests in flight; each completion issues the
next request at once (a benchmark client such as vLLM's `benchmark_serving --max-concurrency`). The first
`concurrency` requests start evenly spread over `ramp_s` (0: all at t = 0). With fixed lengths and no ramp,
clients that start together finish together and stay in lock step, which real servers' timing noise breaks;
the simulator's default ramp (one request's expected latency) starts them in that steady state.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perfsim.errors import InvalidInputError, check_int, check_number

# Accepted column names of a trace file (first match wins), compared without case, spaces or underscores; they
# cover the public traces as published: Azure LLM inference 2023/2024 (TIMESTAMP as a date-time, ContextTokens,
# GeneratedTokens), BurstGPT (Timestamp in s, Request tokens, Response tokens) and Mooncake (JSONL timestamp in
# ms: --trace-time-unit ms, input_length, output_length).
ARRIVAL_KEYS = ("arrival_s", "arrival_time", "arrival", "timestamp", "time_s", "time")
INPUT_KEYS = ("input_len", "input_length", "input_tokens", "isl", "prompt_len", "prompt_tokens", "num_prompt_tokens",
              "context_tokens", "request_tokens")
OUTPUT_KEYS = ("output_len", "output_length", "output_tokens", "osl", "completion_len", "completion_tokens",
               "num_output_tokens", "generated_tokens", "response_tokens")
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
# Prefix-cache hits: a column of cached prompt tokens, or Mooncake's hash_ids, one per 512-token block of the prompt
# (kvcache-ai/Mooncake, FAST25-release/traces), counted against one cache of every block seen before (Mooncake's
# shared KV store; an upper bound for per-engine caches)
CACHED_KEYS = ("cached_tokens", "num_cached_tokens", "prefix_cached_tokens", "cached_len")
HASH_KEYS = ("hash_ids",)
HASH_BLOCK_TOKENS = 512


@dataclass(frozen=True)
class Workload:
    """N requests. `arrival_s` is None for a closed loop (arrivals follow completions)."""
    input_len: np.ndarray          # int64 [N]
    output_len: np.ndarray         # int64 [N], >= 1
    arrival_s: np.ndarray | None   # float64 [N], sorted, or None
    concurrency: int | None = None
    kind: str = "poisson"
    ramp_s: float = 0.0            # closed loop: the first `concurrency` requests start spread over this time
    cached_len: np.ndarray | None = None   # int64 [N]: prompt tokens a prefix cache holds on arrival (a trace's)

    @property
    def num_requests(self) -> int:
        return int(self.input_len.size)

    @property
    def closed_loop(self) -> bool:
        return self.arrival_s is None


def lengths(n: int, mean: int, spread: float, rng: np.random.Generator, flag: str) -> np.ndarray:
    """n lengths around `mean`: all equal when spread == 0, else uniform in mean * [1 - spread, 1 + spread]."""
    check_int(flag, mean)
    if not 0 <= spread < 1:
        raise InvalidInputError(f"length-spread: must be in [0, 1), got {spread!r}")
    if spread == 0:
        return np.full(n, int(mean), dtype=np.int64)
    lo, hi = max(1, round(mean * (1 - spread))), max(1, round(mean * (1 + spread)))
    return rng.integers(lo, hi + 1, size=n, dtype=np.int64)


def check_prefix_len(prefix_len, shortest: int) -> int:
    """A shared prompt prefix must leave at least one token of the shortest prompt to compute."""
    if not isinstance(prefix_len, (int, np.integer)) or not 0 <= prefix_len < shortest:
        raise InvalidInputError(f"prefix-len: must be an integer from 0 to below the shortest prompt ({shortest} "
                                f"tokens), got {prefix_len!r}")
    return int(prefix_len)


MAX_TRACE_SPAN_S = 1e9   # about 32 years of arrivals: anything longer is a unit mistake
MIN_RATE = 1e-9          # requests/s: one in 32 years
# about 0.6 kB of simulator state per request: ten million fit a 24 GB machine, in minutes
MAX_REQUESTS = 10_000_000


def _check_n(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_REQUESTS:
        raise InvalidInputError(f"num-requests: must be an integer from 1 to {MAX_REQUESTS:,}, got {n!r}")


def _check_span(arrivals: np.ndarray, flag: str) -> np.ndarray:
    """Open-loop arrival times must span a finite time of at most MAX_TRACE_SPAN_S."""
    with np.errstate(invalid="ignore"):
        span = float(np.ptp(arrivals)) if arrivals.size else 0.0
    if not span <= MAX_TRACE_SPAN_S:
        raise InvalidInputError(f"{flag}: the requests' arrivals would span {span:.3g} s; at most "
                                f"{MAX_TRACE_SPAN_S:.0e} s is simulated")
    return arrivals


def poisson(rate: float, n: int, isl: int, osl: int, seed: int = 0, spread: float = 0.0) -> Workload:
    """Open-loop Poisson arrivals at `rate` requests/s."""
    _check_n(n)
    check_number("rate", rate, "requests/s", low=MIN_RATE, inclusive=True)
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        arrivals = _check_span(np.cumsum(rng.exponential(1.0 / rate, size=n)), "rate")
    return Workload(lengths(n, isl, spread, rng, "isl"), lengths(n, osl, spread, rng, "osl"), arrivals,
                    kind="poisson")


def gamma(rate: float, cv: float, n: int, isl: int, osl: int, seed: int = 0, spread: float = 0.0) -> Workload:
    """Open-loop bursty arrivals: gamma inter-arrival times with mean 1/rate and coefficient of variation cv."""
    _check_n(n)
    check_number("rate", rate, "requests/s", low=MIN_RATE, inclusive=True)
    check_number("burstiness", cv, "(the coefficient of variation of the gaps)", low=1e-3, inclusive=True,
                 high=1e3)
    rng = np.random.default_rng(seed)
    shape = 1.0 / cv**2
    with np.errstate(over="ignore"):
        arrivals = _check_span(np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), size=n)), "rate")
    return Workload(lengths(n, isl, spread, rng, "isl"), lengths(n, osl, spread, rng, "osl"), arrivals,
                    kind=f"gamma(cv={cv:g})")


def conversations(rate: float, turns: int, think_s: float, n: int, isl: int, osl: int, seed: int = 0,
                  spread: float = 0.0) -> Workload:
    """Multi-turn chat at `rate` requests/s: sessions of `turns` requests start as a Poisson process, each turn
    sent an exponential think time (mean `think_s`) after the one before (open loop: not after its reply). A turn's
    prompt is the conversation so far, every earlier message and reply, plus `isl` new tokens; the earlier
    conversation is in the prefix cache (cache-aware routing, as SGLang's router and Dynamo's KV router keep a
    session where its KV is)."""
    _check_n(n)
    check_number("rate", rate, "requests/s", low=MIN_RATE, inclusive=True)
    check_int("turns", turns)
    check_number("think-time", think_s, "s", inclusive=True)
    rng = np.random.default_rng(seed)
    user, reply = lengths(n, isl, spread, rng, "isl"), lengths(n, osl, spread, rng, "osl")
    turn = np.arange(n) % turns
    starts = np.cumsum(rng.exponential(turns / rate, size=-(-n // turns)))
    gaps = np.where(turn > 0, rng.exponential(think_s, size=n) if think_s > 0 else 0.0, 0.0)
    session = np.arange(n) // turns
    arrival = _check_span(starts[session] + _within(gaps, session), "think-time")
    history = _within(np.roll(user + reply, 1) * (turn > 0), session)
    order = np.argsort(arrival, kind="stable")
    return Workload((history + user)[order], reply[order], arrival[order], kind=f"conversations({turns} turns)",
                    cached_len=history[order])


def _within(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running sums of `values` restarting at each new `group` (groups are contiguous)."""
    total = np.cumsum(values)
    first = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    return total - np.repeat(total[first] - values[first], np.diff(np.r_[first, len(values)]))


def closed_loop(concurrency: int, n: int, isl: int, osl: int, seed: int = 0, spread: float = 0.0,
                ramp_s: float = 0.0) -> Workload:
    """`concurrency` clients, each sending its next request when the previous one completes."""
    _check_n(n)
    check_int("concurrency", concurrency)
    rng = np.random.default_rng(seed)
    check_number("ramp", ramp_s, "s", inclusive=True, high=MAX_TRACE_SPAN_S)
    return Workload(lengths(n, isl, spread, rng, "isl"), lengths(n, osl, spread, rng, "osl"), None,
                    concurrency=int(concurrency), kind="closed-loop", ramp_s=float(ramp_s))


def _key(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def _column(header, keys: tuple[str, ...]) -> str | None:
    """The header's name of the first accepted key it holds, matched without case, spaces or underscores."""
    names = {_key(h): h for h in header}
    return next((names[_key(k)] for k in keys if _key(k) in names), None)


def _pick(row: dict, column: str | None, keys: tuple[str, ...], path: Path, line: int, what: str):
    if column is not None and row.get(column) not in (None, ""):
        return row[column]
    raise InvalidInputError(f"trace: {path}:{line} has no {what} column; accepted names: {', '.join(keys)}")


def _seconds(values: list, unit: float, path: Path) -> np.ndarray:
    """Arrival times in seconds: numbers times `unit`, or date-times (Azure's '2023-11-16 18:15:46.6805900')."""
    try:
        return unit * np.array([float(v) for v in values])
    except (TypeError, ValueError):
        pass
    try:
        stamps = np.array([str(v).strip() for v in values], dtype="datetime64[ns]")
    except ValueError as exc:
        raise InvalidInputError(f"trace: {path}: arrival times must be seconds or ISO date-times ({exc})") from None
    return (stamps - stamps.min()).astype("timedelta64[ns]").astype(float) * 1e-9


def trace(path: str | Path, n: int | None = None, time_unit: str = "s") -> Workload:
    """Read a CSV (header row) or JSONL trace: arrival time (in `time_unit`, or a date-time), input and output
    lengths in tokens.

    Arrival times are shifted so the first request arrives at 0 and sorted; `n` keeps the first n rows. A trace
    without an arrival column is an offline batch: every request arrives at 0 (MLPerf's Offline scenario).
    """
    if time_unit not in TIME_UNITS:
        raise InvalidInputError(f"trace-time-unit: got {time_unit!r}; accepted: {', '.join(TIME_UNITS)}")
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"trace: {'not a file' if path.exists() else 'file not found'}: {path}")
    rows: list[dict] = []
    try:
        if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        rows.append(json.loads(line))
        else:
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
    except (OSError, ValueError, csv.Error) as exc:
        raise InvalidInputError(f"trace: cannot read {path} ({type(exc).__name__}: {exc})") from None
    if not rows:
        raise InvalidInputError(f"trace: {path} has no rows")
    if n is not None:
        _check_n(n)
        rows = rows[:n]
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise InvalidInputError(f"trace: {path}:{bad + 1} is not a JSON object")
    arrival, inp, out = (_column(rows[0], keys) for keys in (ARRIVAL_KEYS, INPUT_KEYS, OUTPUT_KEYS))
    try:
        arr = np.zeros(len(rows)) if arrival is None else _seconds(
            [_pick(r, arrival, ARRIVAL_KEYS, path, i + 2, "arrival time") for i, r in enumerate(rows)],
            TIME_UNITS[time_unit], path)
        isl = np.array([int(float(_pick(r, inp, INPUT_KEYS, path, i + 2, "input length"))) for i, r in enumerate(rows)],
                       dtype=np.int64)
        osl = np.array([int(float(_pick(r, out, OUTPUT_KEYS, path, i + 2, "output length")))
                        for i, r in enumerate(rows)], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"trace: {path}: a value is not a finite number ({exc})") from None
    if (isl < 1).any() or (osl < 1).any():
        raise InvalidInputError(f"trace: {path}: input and output lengths must be >= 1 token")
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"trace: {path}: arrival times must be finite numbers of seconds")
    _check_span(arr, f"trace: {path}")
    order = np.argsort(arr, kind="stable")
    cached = _cached_tokens([rows[i] for i in order], isl[order], path)
    arr = arr[order] - arr[order][0]
    return Workload(isl[order].astype(np.int64), osl[order].astype(np.int64), arr,
                    kind=f"{'offline' if arrival is None else 'trace'}({path.name})", cached_len=cached)


def _cached_tokens(rows: list[dict], isl: np.ndarray, path: Path) -> np.ndarray | None:
    """Per request (in arrival order), the prompt tokens a prefix cache holds: a cached-tokens column, or the
    leading hash_ids blocks seen in earlier requests; None when the trace has neither."""
    column, hashes = _column(rows[0], CACHED_KEYS), _column(rows[0], HASH_KEYS)
    if column is not None:
        try:
            cached = np.array([int(float(r.get(column) or 0)) for r in rows], dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInputError(f"trace: {path}: a cached-tokens value is not a number ({exc})") from None
        if (cached < 0).any():
            raise InvalidInputError(f"trace: {path}: cached tokens must be >= 0")
        return np.minimum(cached, isl).astype(np.int64)
    if hashes is None:
        return None
    seen: set = set()
    cached = np.zeros(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        ids = r.get(hashes)
        if isinstance(ids, str):   # a CSV cell holding the JSON list
            try:
                ids = json.loads(ids)
            except ValueError:
                raise InvalidInputError(f"trace: {path}: hash_ids must be a list of block ids") from None
        if not isinstance(ids, list):
            raise InvalidInputError(f"trace: {path}: hash_ids must be a list of block ids")
        run = 0
        while run < len(ids) and ids[run] in seen:
            run += 1
        cached[i] = min(run * HASH_BLOCK_TOKENS, int(isl[i]))
        seen.update(ids)
    return cached
