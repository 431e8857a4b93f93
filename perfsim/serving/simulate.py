"""Discrete-event simulation of an LLM serving fleet: replicas (or prefill and decode pools), their
schedulers and KV caches, a request stream, and the step-time model of the calibrated cost model.

    from perfsim.serving import serve
    r = serve("llama-3.1-70b", "dgx-h100", num_gpus=8, tp=4, isl=1024, osl=256, rate=4.0, num_requests=2000)
    r.summary["ttft_p99_s"], r.summary["energy_per_token_j"]; r.to_frame(); r.timeline_frame()

Events are step ends (one engine forward pass, or a fast-forwarded run of identical decode steps),
request arrivals and KV-transfer arrivals; the clock jumps from one to the next (no time stepping).
Routing (`router`): round_robin sends open-loop arrivals round robin over the engines that take new requests and
a closed-loop client's next request to the engine that served its last; least_loaded sends every new request to
the engine with the lowest 4 x waiting + running requests, as vLLM's data-parallel balancer does.
Disaggregated prefill hands a prompt to the decode engine with the least work, after its KV crosses the link.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from perfsim.errors import InvalidInputError, check_int, check_number
from perfsim.model import load_model
from perfsim.serving import arrivals as arr
from perfsim.serving import latency, metrics
from perfsim.serving.energy import (
    DEFAULT_GRID_KG_PER_KWH,
    check_footprint_inputs,
    energy_params,
    footprint,
    parse_power_limit,
)
from perfsim.serving.host import DEFAULT_ENGINE, HostOverhead, host_overhead
from perfsim.serving.kvcache import capacity_blocks, check_fits, transfer_time
from perfsim.serving.scheduler import (
    ADMISSIONS,
    POLICIES,
    RECOMPUTES_FIRST_TOKEN,
    Engine,
    engine_admission,
    engine_batching,
    engine_kv_dtype,
    engine_max_seqs,
    engine_memory,
    states_in_kv_pool,
)
from perfsim.serving.speculative import Speculation, speculation
from perfsim.serving.steptime import TABLE_POINTS, Deployment, StepModel, make_deployment

DEFAULT_CHUNK_TOKENS = engine_batching(DEFAULT_ENGINE)[1]   # vLLM V1 API server default max_num_batched_tokens


ROUTERS = ("round_robin", "least_loaded")


@dataclass
class SchedulerConfig:
    policy: str | None = None      # None: the engine's own (perfsim.serving.scheduler.ENGINE_BATCHING)
    max_num_seqs: int | None = None           # None: the engine's default on the GPU (engine_max_seqs)
    max_num_batched_tokens: int | None = None  # None: the engine's default on the GPU (engine_batching)
    block_size: int = 16
    gpu_memory_utilization: float | None = None   # None with no kv_free_fraction: the engine's (engine_memory)
    kv_free_fraction: float | None = None   # KV gets this share of what weights and activations leave instead
    watermark: float = 0.01
    step_overhead_s: float = 0.0   # added to the engine's host overhead per step
    engine: str = DEFAULT_ENGINE   # whose default batching and fitted host overhead (perfsim.serving.host) apply
    async_scheduling: bool | None = None  # host work under the GPU's previous step (None: the engine's default)
    spec: Speculation = field(default_factory=Speculation)  # speculative decoding (draft tokens, acceptance)
    admission: str | None = None   # None: the engine's own (perfsim.serving.scheduler.ENGINE_ADMISSION)
    recv_interval: int = 1         # new requests taken every this many decode steps (SGLang --scheduler-recv-interval)

    def __post_init__(self) -> None:
        if self.policy is None:
            self.policy = engine_batching(self.engine)[0]
        if self.admission is None:
            self.admission = engine_admission(self.engine)

    @property
    def token_budget(self) -> int:
        """Prompt and decode tokens per step: the one given, else the engine's default."""
        return self.max_num_batched_tokens or engine_batching(self.engine)[1]

    def for_deployment(self, dep: Deployment) -> SchedulerConfig:
        """This configuration with the engine's defaults on `dep`'s GPU where a limit was not given."""
        from dataclasses import replace as dc_replace
        seqs = self.max_num_seqs or engine_max_seqs(self.engine, dep.device, dep.attn_dp,
                                                    any(dep.model.recurrent_state_elems()))
        tokens = self.max_num_batched_tokens or engine_batching(self.engine, dep.device, dep.attn_dp)[1]
        util, free = self.gpu_memory_utilization, self.kv_free_fraction
        if util is None and free is None:
            util, free = engine_memory(self.engine, dep.device, dep.tp, dep.pp, dep.attn_dp)
        return dc_replace(self, max_num_seqs=seqs, max_num_batched_tokens=tokens,
                          gpu_memory_utilization=0.9 if util is None else util, kv_free_fraction=free)

    def check(self) -> None:
        if self.policy not in POLICIES:
            raise InvalidInputError(f"policy: got {self.policy!r}; accepted: {', '.join(POLICIES)}")
        if self.admission not in ADMISSIONS:
            raise InvalidInputError(f"admission: got {self.admission!r}; accepted: {', '.join(ADMISSIONS)}")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise InvalidInputError(f"max-num-seqs: must be >= 1, got {self.max_num_seqs!r}")
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < 1:
            raise InvalidInputError(f"max-num-batched-tokens: must be >= 1, got {self.max_num_batched_tokens!r}")
        check_number("step-overhead", self.step_overhead_s, "s", inclusive=True)
        check_int("recv-interval", self.recv_interval)
        host_overhead(self.engine)

    def host(self, pp: int = 1) -> HostOverhead:
        """The engine's host overhead per step of a replica with `pp` pipeline stages."""
        return host_overhead(self.engine, self.async_scheduling, pp).plus(self.step_overhead_s)


class Requests:
    """The request table: plain lists (fast scalar access in the event loop)."""

    def __init__(self, w: arr.Workload, shared_prefix: int = 0):
        n = w.num_requests
        self.isl = w.input_len
        self.osl = w.output_len
        self.prompt = [int(x) for x in w.input_len]
        self.remaining = [int(x) for x in w.output_len]
        self.done_pf = [0] * n
        self.cached = [0] * n if w.cached_len is None else [int(x) for x in w.cached_len]   # the trace's hits
        self.shared_prefix = int(shared_prefix)   # prompt tokens every request shares (a system prompt)
        self.hit = [0] * n                        # prompt tokens served from the prefix cache, as admitted
        self.shares = [False] * n                 # its prefix blocks are the engine's cached shared ones
        self.first = [-1.0] * n
        self.finish = [-1.0] * n
        self.arrival = [0.0] * n if w.arrival_s is None else [float(x) for x in w.arrival_s]
        self.preempted = [0] * n
        self.engine = [-1] * n

    def add_client_latency(self, seconds: float) -> None:
        """Every token reaches the client `seconds` after its engine produced it (perfsim.serving.latency): TTFT
        and end-to-end latency grow by it, TPOT does not; the simulated schedule is left as it ran."""
        if seconds:
            self.first = [t + seconds for t in self.first]
            self.finish = [t + seconds for t in self.finish]


_STEP_CACHE: dict = {}


def step_model(dep: Deployment, max_tokens: int, max_seqs: int, max_context: int, profile="auto",
               host: HostOverhead | None = None, grid: int = TABLE_POINTS,
               spec: Speculation | None = None) -> StepModel:
    """A StepModel, cached per layout and table extent (plan searches build each one once)."""
    key = (dep.model.model_dump_json(), dep.hardware.model_dump_json(), dep.tp, dep.ep, dep.pp, dep.attn_dp,
           dep.dtype, dep.weight_dtype, dep.kv_dtype, dep.state_dtype, max_tokens, max_seqs, max_context,
           str(profile), host, grid, spec)
    sm = _STEP_CACHE.get(key)
    if sm is None:
        if len(_STEP_CACHE) > 256:
            _STEP_CACHE.clear()
        sm = _STEP_CACHE[key] = StepModel(dep, max_tokens, max_seqs, max_context, profile, host or HostOverhead(), grid,
                                          spec or Speculation())
    return sm


@dataclass
class Pool:
    """Engines of one layout: all replicas of an aggregated fleet, or the prefill or the decode pool."""
    role: str
    dep: Deployment
    gpus: int
    cfg: SchedulerConfig
    engines: list = field(default_factory=list)
    capacity: dict = field(default_factory=dict)

    @property
    def replicas(self) -> int:
        return self.gpus // self.dep.gpus


def _pool(role: str, dep: Deployment, gpus: int, cfg: SchedulerConfig, energy_kw: dict, longest_prompt: int,
          max_context: int, profile, req: Requests, start_idx: int, flag: str) -> Pool:
    if gpus < dep.gpus or gpus % dep.gpus:
        raise InvalidInputError(f"{flag}: {gpus} GPUs is not a multiple of the {dep.gpus} GPUs of one "
                                f"{dep.label()} replica")
    cfg = cfg.for_deployment(dep)
    if cfg.policy == "chunked" or role == "prefill":
        budget = cfg.token_budget
    elif cfg.policy == "continuous":
        budget = max(cfg.token_budget, longest_prompt)
    else:  # static: a whole batch of prompts in one step
        budget = cfg.max_num_seqs * longest_prompt
    budget_engine = budget * dep.attn_dp
    seqs_engine = cfg.max_num_seqs * dep.attn_dp
    # activations are reserved for the largest step a server runs in one piece
    act_tokens = min(budget_engine, seqs_engine * longest_prompt,
                     max(DEFAULT_CHUNK_TOKENS, longest_prompt) * dep.attn_dp)
    cap = capacity_blocks(dep, cfg.block_size, cfg.gpu_memory_utilization, act_tokens, seqs_engine,
                          cfg.kv_free_fraction, states_in_kv_pool(cfg.engine))
    check_fits(dep, cap, max_context if role != "prefill" else longest_prompt, flag)
    step_tokens = budget_engine if role != "decode" else max(seqs_engine, min(budget_engine, longest_prompt))
    step_tokens = max(step_tokens, seqs_engine * (1 + cfg.spec.draft_tokens))
    sm = step_model(dep, step_tokens, seqs_engine, max_context, profile, cfg.host(dep.pp), spec=cfg.spec)
    kw = dict(energy_kw)
    kw["power_limit_w"] = parse_power_limit(kw.pop("power_limit", None), dep.device)
    energy = energy_params(dep.device, **kw)
    pool = Pool(role, dep, gpus, cfg, capacity=cap)
    for i in range(gpus // dep.gpus * dep.pp):
        pool.engines.append(Engine(start_idx + i, role, cfg.policy, sm, cap["blocks"], cfg.block_size, seqs_engine,
                                   budget_engine, energy, dep.ranks_per_stage, req, cfg.watermark,
                                   recompute_first=role == "decode" and cfg.engine in RECOMPUTES_FIRST_TOKEN,
                                   admission=cfg.admission, state_blocks=cap["state_blocks_per_seq"],
                                   recv_every=cfg.recv_interval))
    return pool


def parse_disagg(text: str | None, num_gpus: int) -> tuple[int, int] | None:
    if text is None or text == "":
        return None
    try:
        p, d = (int(x) for x in str(text).split(":"))
    except ValueError:
        raise InvalidInputError(f"disagg: expected PREFILL_GPUS:DECODE_GPUS such as 4:4, got {text!r}") from None
    if p < 1 or d < 1:
        raise InvalidInputError(f"disagg: both pools need >= 1 GPU, got {text!r}")
    if num_gpus and p + d != num_gpus:
        raise InvalidInputError(f"disagg: {p} + {d} GPUs must add up to --num-gpus {num_gpus}")
    return p, d


@dataclass
class ServeResult:
    summary: dict
    per_request: dict
    timeline: list
    config: dict
    wall_s: float

    def to_json_dict(self) -> dict:
        return {**self.summary, "timeline": self.timeline, "config": self.config}

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame(self.per_request)

    def timeline_frame(self):
        import pandas as pd
        return pd.DataFrame(self.timeline)


def simulate(workload: arr.Workload, pools: list[Pool], req: Requests, transfer=None,
             router: str = "round_robin", handoff_s: float = 0.0) -> tuple[float, int]:
    """Run the event loop to the last completion; returns (makespan s, most requests in flight). `pools` is [agg] or
    [prefill, decode]; `transfer(prefill_engine, decode_engine, rid)` gives the KV transfer seconds, which hold the
    prefill engine's link, and `handoff_s` more pass before the decode engine has the request; `router` (ROUTERS)
    places each new request on an engine of the first pool."""
    front = pools[0].engines
    back = pools[1].engines if len(pools) > 1 else None
    engines = front + (back or [])
    n_front = len(front)
    least_loaded = router == "least_loaded"

    def route(rid: int, last: Engine | None = None) -> Engine:
        """round_robin: request i on engine i mod n (a closed-loop client stays on the engine that served it);
        least_loaded: the lowest 4 x waiting + running requests, ties in round-robin order (vLLM's data-parallel
        balancer, DPLBAsyncMPClient in vllm/v1/engine/core_client.py, here with exact rather than 100 ms old counts)."""
        if least_loaded:
            start = rid % n_front
            return min(front, key=lambda e: (4 * (len(e.waiting) + len(e.inbox)) + len(e.P) + len(e.D),
                                             (e.idx - start) % n_front))
        return last if last is not None else front[rid % n_front]
    heap: list = []
    counter = itertools.count()
    push = heapq.heappush
    pop = heapq.heappop
    link_free = [0.0] * len(engines)
    pending = [0] * len(engines)
    n = workload.num_requests
    completed = 0
    in_flight = 0
    max_in_flight = 0
    out: list = []

    def enqueue(eng: Engine, rid: int, now: float, plan: bool = True) -> None:
        """Queue rid at eng; plan=False when more requests join at this instant (eng.start comes after)."""
        req.engine[rid] = eng.idx
        eng.arrive(rid)
        if eng.busy:
            if eng.interrupt(now):
                push(heap, (eng.end_time, next(counter), 0, eng.idx, eng.version))
        elif plan:
            kick(eng, now)

    def kick(eng: Engine, now: float) -> None:
        if not eng.busy and eng.start(now):
            push(heap, (eng.end_time, next(counter), 0, eng.idx, eng.version))

    if workload.closed_loop:
        next_rid = min(workload.concurrency, n)
        gap = workload.ramp_s / next_rid
        for rid in range(next_rid):
            if gap > 0:
                req.arrival[rid] = rid * gap
                push(heap, (rid * gap, next(counter), 2, rid, 0))
            else:  # every client at once: all queued before the first step is planned
                in_flight += 1
                enqueue(route(rid), rid, 0.0, plan=False)
        for eng in front:
            kick(eng, 0.0)
        max_in_flight = in_flight
        times = None
    else:
        next_rid = 0
        times = req.arrival
    now = 0.0
    while True:
        t_arr = times[next_rid] if times is not None and next_rid < n else math.inf
        if heap and heap[0][0] <= t_arr:
            now, _, kind, a, b = pop(heap)
            if kind == 0:
                eng = engines[a]
                if b != eng.version or not eng.busy:
                    continue
                out.clear()
                eng.finish(now, out)
                issued_to = set()
                for what, rid in out:
                    if what == "done":
                        completed += 1
                        in_flight -= 1
                        if times is None and next_rid < n:
                            req.arrival[next_rid] = now
                            in_flight += 1
                            if in_flight > max_in_flight:
                                max_in_flight = in_flight
                            target = route(next_rid, eng if back is None else None)
                            enqueue(target, next_rid, now, plan=False)
                            issued_to.add(target.idx)
                            next_rid += 1
                    elif what == "handoff":
                        dst = min(back, key=lambda e: e.load() + pending[e.idx])
                        pending[dst.idx] += 1
                        start = max(now, link_free[eng.idx])
                        t_x = transfer(eng, dst, rid)
                        link_free[eng.idx] = start + t_x
                        push(heap, (start + t_x + handoff_s, next(counter), 1, rid, dst.idx))
                kick(eng, now)
                for idx in issued_to:  # the clients whose requests ended here have all re-issued
                    kick(engines[idx], now)
            elif kind == 2:  # a closed-loop client's first request (ramp)
                in_flight += 1
                if in_flight > max_in_flight:
                    max_in_flight = in_flight
                enqueue(route(a), a, now)
            else:  # KV arrived at a decode engine
                rid, dst = a, engines[b]
                pending[dst.idx] -= 1
                req.done_pf[rid] = req.prompt[rid]
                enqueue(dst, rid, now)
        elif next_rid < n and times is not None:
            now = t_arr
            issued_to = set()
            while next_rid < n and times[next_rid] == now:  # requests sharing a timestamp queue together
                target = route(next_rid)
                enqueue(target, next_rid, now, plan=False)
                issued_to.add(target.idx)
                next_rid += 1
                in_flight += 1
            if in_flight > max_in_flight:
                max_in_flight = in_flight
            for idx in issued_to:
                kick(engines[idx], now)
        else:
            break
    if completed != n:
        raise RuntimeError(f"serving simulation stalled: {n - completed} of {n} requests never completed")
    return now, max_in_flight


def serve(model, hardware, num_gpus: int | None = None, tp: int = 1, ep: int = 1, pp: int = 1,
          attn_dp: int | None = None, dtype: str | None = None, weight_dtype: str | None = None,
          kv_dtype: str | None = None, isl: int = 1024, osl: int = 256, concurrency: int | None = None,
          rate: float | None = None, trace: str | arr.Workload | None = None, trace_time_unit: str = "s",
          burstiness: float | None = None, prefix_len: int = 0, router: str = "round_robin", turns: int = 1,
          think_time: float | None = None,
          ramp: float | str | None = 0.0,
          num_requests: int | None = None, length_spread: float = 0.0, disagg: str | None = None,
          prefill: dict | None = None, decode: dict | None = None,
          policy: str | None = None, admission: str | None = None, recv_interval: int = 1,
          max_num_seqs: int | None = None,
          max_num_batched_tokens: int | None = None, block_size: int = 16,
          gpu_memory_utilization: float | None = None,
          kv_free_fraction: float | None = None, step_overhead_s: float = 0.0, engine: str = DEFAULT_ENGINE,
          async_scheduling: bool | None = None,
          disagg_handoff_s: float | None = None, request_latency_s: float | None = None,
          spec_tokens: int = 0, spec_accept: str | float | list | None = None, power_limit: str | float | None = None,
          price_per_gpu_hour: float | None = None, grid_intensity: float = DEFAULT_GRID_KG_PER_KWH,
          pue: float = 1.0, slo_ttft: float | None = None, slo_tpot: float | None = None,
          slo_e2e: float | None = None, seed: int = 0, profile="auto", energy_fit: bool = True,
          static_w: float | None = None, dynamic_scale: float | None = None,
          timeline_bins: int = 20, state_dtype: str = "fp32") -> ServeResult:
    """Simulate serving `model` on `num_gpus` GPUs of `hardware`; see the module docstring.

    Exactly one of concurrency (closed loop), rate (Poisson, or gamma with `burstiness` = CV of the gaps) or
    trace (CSV/JSONL file, numeric arrival times in `trace_time_unit`: s, ms or us; or a Workload). A closed
    loop's clients start spread over `ramp` seconds (0, the default: all at once, as benchmark clients do; 'auto':
    one request's expected latency, the staggered steady state); `router` (ROUTERS) places new requests on the
    engines (see the module docstring). `prefix_len` prompt tokens are shared by every
    request (a system prompt): once an engine has computed them its prefix cache serves them to later requests;
    a trace may give each request's cached tokens instead (perfsim.serving.arrivals: cached_tokens, hash_ids).
    With `rate`, `turns` > 1 makes the requests multi-turn chat sessions, turns `think_time` seconds apart on
    average, each prompt the conversation so far with the earlier part cached (arrivals.conversations).
    disagg='P:D' splits the GPUs into a prefill and a decode pool; `prefill` and `decode` override the layout
    and limits of each pool: {tp, ep, pp, attn_dp, max_num_seqs, max_num_batched_tokens, hardware} (a pool on
    another system makes a mixed fleet; its KV crosses the NICs). `engine` picks the fitted host overhead per
    step and sequence (perfsim.serving.host; 'none': GPU time only), overlapped with the GPU's steps when it
    schedules asynchronously (`async_scheduling`; None: as the engine does by default, vLLM since 0.14),
    `step_overhead_s` adds to it, and the batching `policy`, token budget and KV `admission` where they are not
    given (SGLang: prefill first, 16384 tokens; TensorRT-LLM: KV reserved for the whole request); an engine
    takes new requests every `recv_interval` decode steps (SGLang's --scheduler-recv-interval; 1: every step).
    spec_tokens > 0 turns on speculative decoding with that many draft tokens per step, accepted at the rates
    `spec_accept` ('0.85,0.3' or one rate for all; perfsim.serving.speculative)."""
    wall0 = time.perf_counter()
    cfg = SchedulerConfig(policy, max_num_seqs, max_num_batched_tokens, block_size, gpu_memory_utilization,
                          step_overhead_s=step_overhead_s, engine=engine, async_scheduling=async_scheduling,
                          spec=speculation(spec_tokens, spec_accept), admission=admission,
                          kv_free_fraction=kv_free_fraction, recv_interval=recv_interval)
    cfg.check()
    metrics.check_slos(slo_ttft=slo_ttft, slo_tpot=slo_tpot, slo_e2e=slo_e2e)
    check_footprint_inputs(price_per_gpu_hour, grid_intensity, pue)
    if router not in ROUTERS:
        raise InvalidInputError(f"router: got {router!r}; accepted: {', '.join(ROUTERS)}")
    modes = [x is not None for x in (concurrency, rate, trace)]
    if sum(modes) != 1:
        raise InvalidInputError("concurrency: give exactly one of --concurrency, --rate or --trace")
    if turns != 1 and (rate is None or burstiness or think_time is None):
        raise InvalidInputError("turns: multi-turn sessions need --rate and --think-time, without --burstiness")
    if num_requests is None:
        num_requests = 1000 if trace is None else None
    if isinstance(trace, arr.Workload):
        w = trace
    elif trace is not None:
        w = arr.trace(trace, num_requests, trace_time_unit)
    elif rate is not None and turns != 1:
        w = arr.conversations(rate, turns, think_time, num_requests, isl, osl, seed, length_spread)
    elif rate is not None:
        w = (arr.gamma(rate, burstiness, num_requests, isl, osl, seed, length_spread) if burstiness
             else arr.poisson(rate, num_requests, isl, osl, seed, length_spread))
    else:
        w = arr.closed_loop(concurrency, num_requests, isl, osl, seed, length_spread)
    spec = load_model(model)
    kv_dtype = kv_dtype or engine_kv_dtype(spec, spec.run_dtype("serve", dtype), engine)
    base = make_deployment(spec, hardware, tp, ep, pp, attn_dp, dtype, weight_dtype, kv_dtype, state_dtype)
    longest_prompt = int(w.input_len.max())
    max_context = int((w.input_len + w.output_len).max())
    if max_context > spec.max_seq_len:
        raise InvalidInputError(f"isl: input + output = {max_context} tokens exceeds {spec.name}'s maximum "
                                f"sequence length {spec.max_seq_len}")
    if num_gpus is None:
        num_gpus = base.gpus
    check_int("num-gpus", num_gpus)
    energy_kw = {"power_limit": power_limit, "use_fit": energy_fit, "static_w": static_w,
                 "dynamic_scale": dynamic_scale}
    req = Requests(w, arr.check_prefix_len(prefix_len, int(w.input_len.min())))
    split = parse_disagg(disagg, num_gpus)
    if split is None:
        pools = [_pool("agg", base, num_gpus, cfg, energy_kw, longest_prompt, max_context, profile, req, 0,
                       "num-gpus")]
        transfer = None
    else:
        layouts = []
        for role, over in (("prefill", prefill or {}), ("decode", decode or {})):
            unknown = set(over) - {"tp", "ep", "pp", "attn_dp", "max_num_seqs", "max_num_batched_tokens", "hardware"}
            if unknown:
                raise InvalidInputError(f"{role}: unknown setting(s) {', '.join(sorted(unknown))}")
            same = not any(k in over for k in ("tp", "ep", "attn_dp"))
            dep = make_deployment(spec, over.get("hardware", hardware), over.get("tp", tp), over.get("ep", ep),
                                  over.get("pp", pp),
                                  over.get("attn_dp", attn_dp if same else None), base.dtype, weight_dtype, kv_dtype,
                                  state_dtype)
            pcfg = SchedulerConfig(**{**cfg.__dict__, **{k: over[k] for k in ("max_num_seqs", "max_num_batched_tokens")
                                                           if k in over}})
            pcfg.check()
            layouts.append((dep, pcfg))
        (p_dep, p_cfg), (d_dep, d_cfg) = layouts
        pre = _pool("prefill", p_dep, split[0], p_cfg, energy_kw, longest_prompt, max_context, profile, req, 0,
                    "disagg")
        dec = _pool("decode", d_dep, split[1], d_cfg, energy_kw, longest_prompt, max_context, profile, req,
                    len(pre.engines), "disagg")
        pools = [pre, dec]
        cache: dict[int, float] = {}

        def transfer(src, dst, rid):
            tokens = req.prompt[rid]
            t = cache.get(tokens)
            if t is None:
                t = cache[tokens] = transfer_time(p_dep, d_dep, tokens)
            return t

    if w.closed_loop:
        w = _with_ramp(w, ramp, pools, isl=int(w.input_len.mean()), osl=int(w.output_len.mean()))
    handoff = 0.0 if transfer is None else latency.disagg_handoff_s() if disagg_handoff_s is None else \
        check_number("disagg-handoff", disagg_handoff_s, "s", inclusive=True)
    request_s = latency.request_latency_s(engine) if request_latency_s is None else \
        check_number("request-latency", request_latency_s, "s", inclusive=True)
    makespan, max_in_flight = simulate(w, pools, req, transfer, router, handoff)
    req.add_client_latency(request_s)
    wall = time.perf_counter() - wall0
    return _result(w, pools, req, makespan, max_in_flight, cfg, num_gpus, price_per_gpu_hour, grid_intensity, pue,
                   slo_ttft, slo_tpot, slo_e2e, timeline_bins, wall, transfer, router, handoff, request_s)


def _with_ramp(w: arr.Workload, ramp, pools: list[Pool], isl: int, osl: int) -> arr.Workload:
    """The closed loop's start ramp: given seconds, or 'auto' = the expected latency of one request at the
    workload's concurrency (prefill of one prompt + osl decode steps at the per-engine batch)."""
    from dataclasses import replace as dc_replace
    if ramp is None:
        ramp = 0.0
    if ramp == "auto":
        front, back = pools[0], pools[-1]
        eng = back.engines[0]
        per_engine = max(1, min(eng.max_seqs, math.ceil(w.concurrency / len(back.engines))))
        t_dec = eng.sm.decode(per_engine, isl + osl / 2.0)[0]
        ramp = front.engines[0].sm.prefill([isl])[0] + max(osl - 1, 0) * t_dec
    try:
        ramp = float(ramp)
    except (TypeError, ValueError):
        raise InvalidInputError(f"ramp: expected seconds or 'auto', got {ramp!r}") from None
    check_number("ramp", ramp, "s", inclusive=True, high=arr.MAX_TRACE_SPAN_S)
    return dc_replace(w, ramp_s=ramp)


def _result(w, pools, req, makespan, max_in_flight, cfg, num_gpus, price, grid, pue, slo_ttft, slo_tpot, slo_e2e,
            bins, wall, transfer, router, handoff_s=0.0, request_s=0.0) -> ServeResult:
    arrival = np.asarray(req.arrival)
    first = np.asarray(req.first)
    finish = np.asarray(req.finish)
    osl = np.asarray(w.output_len, dtype=float)
    isl = np.asarray(w.input_len, dtype=float)
    summary, per = metrics.latency(arrival, first, finish, osl)
    engines = [e for p in pools for e in p.engines]
    records = [np.asarray(e.records, dtype=float).reshape(-1, 7) for e in engines]
    out_tokens = float(osl.sum())
    span = makespan if makespan > 0 else float("nan")
    summary.update({
        "num_requests": int(w.num_requests), "makespan_s": makespan,
        "throughput_tokens_per_s": out_tokens / span, "total_tokens_per_s": (out_tokens + isl.sum()) / span,
        "requests_per_s": w.num_requests / span, "throughput_tokens_per_s_per_gpu": out_tokens / span / num_gpus,
        "saturated_tokens_per_s": metrics.saturated_throughput(first, finish, osl),
    })
    summary.update(metrics.goodput(per, osl, makespan, slo_ttft, slo_tpot, slo_e2e))
    summary["goodput"] = summary["goodput_requests_per_s"]
    summary.update(metrics.itl(records))
    # energy: idle power all along, the static excess over idle for the unthrottled step time, switching
    total_j = 0.0
    busy = 0.0
    unthrottled = 0.0
    for e in engines:
        p = e.energy
        total_j += p.idle_w * e.gpus * max(makespan, e.busy_s) + (p.static_w - p.idle_w) * e.gpus * e.unthrottled_s \
            + e.dyn_j
        busy += e.busy_s
        unthrottled += e.unthrottled_s
    # price: the given one for every GPU, else each pool's device list price (None if a device has none)
    if price is not None:
        price_h = price
    else:
        dev_prices = [(p.gpus, p.dep.device.price.per_hour if p.dep.device.price else None) for p in pools]
        price_h = None if any(v is None for _, v in dev_prices) else sum(g * v for g, v in dev_prices) / num_gpus
    summary.update({
        "energy_j": total_j, "energy_per_token_j": total_j / out_tokens if out_tokens else float("nan"),
        "energy_per_request_j": total_j / w.num_requests, "avg_power_w": total_j / span,
        "avg_power_per_gpu_w": total_j / span / num_gpus,
        "power_cap_w": engines[0].energy.cap_w, "energy_source": engines[0].energy.source,
        "throttle_slowdown": busy / unthrottled if unthrottled else 1.0,
        "utilization": busy / (len(engines) * makespan) if makespan > 0 else 0.0,
        "preemptions": int(sum(e.preemptions for e in engines)),
        "max_in_flight": int(max_in_flight),
        "kv_peak_fraction": max(e.peak_blocks / e.cap for e in engines),
        "prefix_cache_hit_rate": float(sum(req.hit) / max(1, int(np.sum(w.input_len)))),
    })
    fp = footprint(total_j, makespan, num_gpus, price_h, grid, pue)
    summary.update(fp)
    mtok = out_tokens / 1e6
    summary["cost_per_million_tokens_usd"] = fp["cost_usd"] / mtok if fp["cost_usd"] is not None and mtok else None
    summary["kwh_per_million_tokens"] = fp["kwh"] / mtok if mtok else None
    if transfer is not None and len(pools) > 1:
        summary["kv_transfer_s"] = float(transfer(pools[0].engines[0], pools[1].engines[0], 0))
        summary["disagg_handoff_s"] = handoff_s
    summary["sim_wall_s"] = wall
    caps = [e.cap for e in engines]
    host = cfg.host(pools[0].dep.pp)
    config = {
        "model": pools[0].dep.model.name, "hardware": getattr(pools[0].dep.hardware, "name", ""),
        "num_gpus": num_gpus, "workload": w.kind, "concurrency": w.concurrency, "policy": cfg.policy,
        "admission": cfg.admission, "recv_interval": cfg.recv_interval, "router": router,
        "request_latency_s": request_s,
        "engine": cfg.engine, "host_overhead": {"step_s": host.step_s, "per_seq_s": host.per_seq_s,
                                                "overlapped": host.overlapped},
        "speculative": {"draft_tokens": cfg.spec.draft_tokens, "acceptance": list(cfg.spec.acceptance),
                        "tokens_per_step": cfg.spec.tokens_per_step},
        "max_num_seqs": pools[0].cfg.max_num_seqs, "max_num_batched_tokens": engines[0].budget,
        "block_size": cfg.block_size, "gpu_memory_utilization": pools[0].cfg.gpu_memory_utilization,
        "kv_free_fraction": pools[0].cfg.kv_free_fraction,
        "pools": [{"role": p.role, "layout": p.dep.label(), "hardware": getattr(p.dep.hardware, "name", ""),
                   "tp": p.dep.tp, "ep": p.dep.ep, "pp": p.dep.pp, "attn_dp": p.dep.attn_dp,
                   "max_num_seqs": p.cfg.max_num_seqs, "max_num_batched_tokens": p.cfg.max_num_batched_tokens,
                   "gpus": p.gpus, "replicas": p.replicas,
                   "engines": len(p.engines), "kv_blocks_per_engine": p.capacity["blocks"],
                   "kv_tokens_per_engine": p.capacity["tokens"], "dtype": p.dep.dtype,
                   "kv_dtype": p.dep.kv_dtype_eff} for p in pools],
        "energy": {"static_w_per_gpu": engines[0].energy.static_w, "idle_w_per_gpu": engines[0].energy.idle_w,
                   "dynamic_scale": engines[0].energy.dynamic_scale, "cap_w_per_gpu": engines[0].energy.cap_w,
                   "source": engines[0].energy.source},
    }
    per.update({"arrival_s": arrival, "first_token_s": first, "finish_s": finish, "input_len": w.input_len,
                "output_len": w.output_len, "cached_tokens": np.asarray(req.hit),
                "preemptions": np.asarray(req.preempted), "engine": np.asarray(req.engine)})
    return ServeResult(summary, per, metrics.timeline(records, caps, makespan, bins), config, wall)
