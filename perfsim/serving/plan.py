"""Deployment search for serving: which GPUs, how many, split how, to serve a load within SLOs.

For each system and each replica layout (tp, and for MoE models ep with attention data parallel) that fits
in memory, the search sizes a fleet from a capacity estimate of the step-time model and then confirms it
by simulation, adding replicas until the SLOs hold (>= `attainment` of requests meet every SLO):

  aggregated     R replicas of one layout; the batch limit is the largest batch whose decode step meets
                 the TPOT SLO (or the default limit without one)
  disaggregated  Np prefill + Nd decode instances (Splitwise / DistServe), each pool sized on its own
                 bottleneck, the KV moving over NVLink within a node or the NICs between nodes
  mixed          disaggregated with prefill and decode on different systems (heterogeneous fleets as in
                 Melange and Splitwise), for every ordered pair of the given systems

Candidates are ranked by the objective: cost (fleet $ per hour, hence $ per token at the same load), energy
(J per output token) or gpus (count). The Pareto front is over throughput per GPU and p90 TPOT.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

from perfsim.errors import InvalidInputError, PerfsimError, check_number
from perfsim.graph import recurrent_heads
from perfsim.hardware import System
from perfsim.model import load_model
from perfsim.serving.arrivals import MIN_RATE, check_prefix_len
from perfsim.serving.host import DEFAULT_ENGINE, host_overhead
from perfsim.serving.launch import LAUNCH_ENGINES, launch_commands, settings_of
from perfsim.serving.metrics import check_slos
from perfsim.serving.scheduler import (
    engine_batching,
    engine_kv_dtype,
    engine_max_seqs,
    engine_memory,
    states_in_kv_pool,
)
from perfsim.whatif import what_if as apply_what_if

OBJECTIVES = ("cost", "energy", "gpus")


@dataclass
class ServePlan:
    rank: int
    fleet: str
    mode: str
    hardware: str
    layout: str
    num_gpus: int
    ttft_s: float
    ttft_p90_s: float
    tpot_s: float
    tpot_p90_s: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    slo_attainment: float
    meets_slo: bool
    energy_per_token_j: float
    avg_power_w: float
    cost_per_hour_usd: float | None
    cost_per_million_tokens_usd: float | None
    pareto: bool = False
    settings: dict = field(default_factory=dict)
    launch: list = field(default_factory=list)   # perfsim.serving.launch.Launch dicts: how to run it

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ServePlanResult:
    model: str
    plans: list
    candidates: list
    evaluated: int
    feasible: int
    seconds: float
    skipped: dict


def _layouts(spec, system: System, dtype: str | None) -> list[dict]:
    """tp (and ep / attention DP for MoE) within one node, those whose weights leave room for a KV cache."""
    from perfsim.serving.kvcache import capacity_blocks
    from perfsim.serving.steptime import make_deployment
    out = []
    node = system.devices_per_node if isinstance(system, System) else 1
    splits = [spec.num_heads] + [heads for heads, _ in recurrent_heads(spec)]
    tps = [t for t in (1, 2, 4, 8) if t <= node and all(n % t == 0 for n in splits)]
    for tp in tps:
        options = [{"tp": tp, "ep": 1}]
        if spec.moe and tp > 1 and spec.moe.num_experts % tp == 0:
            options.append({"tp": tp, "ep": tp})                       # TP attention, EP experts
        if spec.moe and spec.mla and tp == 1:
            for adp in (4, 8):
                if adp <= node and spec.moe.num_experts % adp == 0:
                    options.append({"tp": 1, "ep": adp, "attn_dp": adp})  # DeepSeek-style attention DP
        for opt in options:
            try:
                dep = make_deployment(spec, system, opt["tp"], opt["ep"], 1, opt.get("attn_dp"), dtype)
            except PerfsimError:
                continue
            if capacity_blocks(dep)["blocks"] > 0:
                out.append({**opt, "gpus": dep.gpus, "label": dep.label()})
    # keep the smallest few that fit: larger tp rarely wins on cost and each costs a step-model build
    seen, keep = set(), []
    for lay in sorted(out, key=lambda x: x["gpus"]):
        key = lay["label"]
        if key not in seen:
            seen.add(key)
            keep.append(lay)
    return keep[:4]


def _engine_steps(dep, max_seqs: int, isl: int, osl: int, profile, engine: str, async_scheduling: bool | None = None):
    """The step model of one engine of `dep` as `engine` batches (its token budget and host overhead)."""
    from perfsim.serving.simulate import step_model
    budget = engine_batching(engine, dep.device, dep.attn_dp)[1]
    host = host_overhead(engine, async_scheduling, dep.pp)
    return step_model(dep, budget * dep.attn_dp, max_seqs, isl + osl, profile, host)


def _capacity(dep, isl: int, osl: int, slo_tpot: float | None, max_seqs: int, profile,
              engine: str = DEFAULT_ENGINE, async_scheduling: bool | None = None,
              prefix_len: int = 0) -> tuple[float, int, float]:
    """(requests/s one engine sustains, batch limit, prefill seconds per request) from the step model; a
    prompt's first `prefix_len` tokens come from the prefix cache."""
    from perfsim.serving.kvcache import capacity_blocks
    util, free = engine_memory(engine, dep.device, dep.tp, dep.pp, dep.attn_dp)
    cap = capacity_blocks(dep, gpu_memory_utilization=util, max_seqs=max_seqs * dep.attn_dp, kv_free_fraction=free,
                          states_in_pool=states_in_kv_pool(engine))
    kv_batch = max(1, int(cap["tokens"] // (isl + osl + cap["state_blocks_per_seq"] * cap["block_size"])))
    limit = max(1, min(max_seqs * dep.attn_dp, kv_batch))
    sm = _engine_steps(dep, limit, isl, osl, profile, engine, async_scheduling)
    ctx = isl + osl / 2.0
    b = limit
    if slo_tpot is not None:
        while b > 1 and sm.decode(b, ctx)[0] > 0.8 * slo_tpot:  # headroom for prefill interference
            b = max(1, int(b * 0.8))
    t_dec = sm.decode(b, ctx)[0]
    t_pre = sm.mixed(0, 0.0, [(isl - prefix_len, isl)], 1)[0]
    per_request = t_pre + max(osl - 1, 1) * t_dec / b
    return 1.0 / per_request, b, t_pre


def _evaluate(model, spec_kwargs: dict, common: dict, systems: dict):
    """Simulate a candidate; its settings name systems, run as `systems` holds them (what-if changes applied)."""
    from perfsim.serving.simulate import serve
    kwargs = {**spec_kwargs, "hardware": systems[spec_kwargs["hardware"]]}
    for pool in ("prefill", "decode"):
        if "hardware" in (kwargs.get(pool) or {}):
            kwargs[pool] = {**kwargs[pool], "hardware": systems[kwargs[pool]["hardware"]]}
    return serve(model, **kwargs, **common)


def _plan_from(result, mode: str, fleet: str, hardware: str, layout: str, settings: dict, price_known: bool,
               attainment: float, how_to_run) -> ServePlan:
    """A candidate from its simulated run; `how_to_run(result)`: the run's launch commands."""
    s = result.summary
    gpus = result.config["num_gpus"]
    per_hour = s["cost_usd"] / s["makespan_s"] * 3600.0 if s["cost_usd"] is not None and s["makespan_s"] else None
    return ServePlan(0, fleet, mode, hardware, layout, gpus, s["ttft_s"], s["ttft_p90_s"], s["tpot_s"], s["tpot_p90_s"],
                     s["throughput_tokens_per_s"], s["throughput_tokens_per_s_per_gpu"], s["slo_attainment"],
                     s["slo_attainment"] >= attainment, s["energy_per_token_j"], s["avg_power_w"],
                     per_hour if price_known else None, s["cost_per_million_tokens_usd"] if price_known else None,
                     settings=settings, launch=how_to_run(result))


def plan_serving(model: str, hardware: str | list[str], isl: int, osl: int, rate: float,
                 slo_ttft: float | None = None, slo_tpot: float | None = None, objective: str = "cost",
                 max_gpus: int | None = None, top: int = 10, num_requests: int | None = None, dtype: str | None = None,
                 profile: str = "auto", attainment: float = 0.9, disagg: bool = True, mixed: bool = True,
                 seed: int = 0, engine: str = DEFAULT_ENGINE, async_scheduling: bool | None = None,
                 prefix_len: int = 0, what_if: dict | None = None) -> ServePlanResult:
    """Search deployments serving `rate` requests/s of isl/osl tokens, run by `engine` (its batching and host
    overhead, overlapped with the GPU's steps per `async_scheduling`, None: the engine's default), with the first
    `prefix_len` prompt tokens shared and served from the prefix cache; best first by `objective`. `what_if`
    ({key: value}, perfsim.whatif) changes every system searched; plans still name them."""
    t0 = time.perf_counter()
    if objective not in OBJECTIVES:
        raise InvalidInputError(f"objective: got {objective!r}; accepted for serving: {', '.join(OBJECTIVES)}")
    check_number("rate", rate, "requests/s", low=MIN_RATE, inclusive=True)
    if top < 1:
        raise InvalidInputError(f"top: must be >= 1, got {top}")
    check_slos(slo_ttft=slo_ttft, slo_tpot=slo_tpot)
    check_prefix_len(prefix_len, isl)
    names = [h.strip() for h in (hardware.split(",") if isinstance(hardware, str) else hardware) if h.strip()]
    if not names:
        raise InvalidInputError("hardware: give at least one system, e.g. dgx-h100,hgx-h200")
    systems = {n: apply_what_if(n, what_if or {}) for n in names}
    for n, h in systems.items():
        if not isinstance(h, System):
            raise InvalidInputError(f"hardware: {n!r} is a {h.kind}; plan --task serve needs systems (e.g. dgx-h100)")
    spec = load_model(model)
    host_overhead(engine)   # an unknown engine fails here, naming the flag
    n_req = num_requests or int(min(600, max(200, rate * 60)))
    common = dict(isl=isl, osl=osl, rate=rate, num_requests=n_req, slo_ttft=slo_ttft, slo_tpot=slo_tpot,
                  dtype=dtype, profile=profile, seed=seed, timeline_bins=1, engine=engine,
                  async_scheduling=async_scheduling, prefix_len=prefix_len)
    skipped: dict[str, int] = {}
    candidates: list[ServePlan] = []
    evaluated = 0

    def how_to_run(result) -> list[dict]:
        """The simulated run's launch commands, as resolved (none for an engine without them)."""
        if engine.lower() not in LAUNCH_ENGINES:
            return []
        return [x.to_dict() for x in launch_commands(model, settings_of(result.config), engine, dtype, systems)]

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    def run_until_ok(build, start: int, step_max: int = 4):
        """Simulate with `start` units, growing until the SLOs hold or the GPU limit is hit."""
        nonlocal evaluated
        units, best = start, None
        for _ in range(step_max):
            kwargs = build(units)
            if kwargs is None:
                break
            try:
                res = _evaluate(spec, kwargs, common, systems)
            except PerfsimError as exc:
                skip(str(exc).split(":")[0])
                return None, units
            evaluated += 1
            best = (res, kwargs, units)
            if res.summary["slo_attainment"] >= attainment:
                break
            units = max(units + 1, int(math.ceil(units * 1.5)))
        return best

    per_layout = {}
    for name, sysm in systems.items():
        layouts = _layouts(spec, sysm, dtype)
        if not layouts:
            skip(f"{name}: no layout within a node fits {spec.name}")
        limit_gpus = max_gpus or sysm.devices_per_node * 8
        for lay in layouts:
            from perfsim.serving.steptime import make_deployment
            dep = make_deployment(spec, sysm, lay["tp"], lay["ep"], 1, lay.get("attn_dp"), dtype,
                                  kv_dtype=engine_kv_dtype(spec, spec.run_dtype("serve", dtype), engine))
            try:
                seqs_default = engine_max_seqs(engine, dep.device, dep.attn_dp, any(spec.recurrent_state_elems()))
                per_engine, batch, t_pre = _capacity(dep, isl, osl, slo_tpot, seqs_default, profile, engine,
                                                     async_scheduling, prefix_len)
            except PerfsimError as exc:
                skip(str(exc).split(":")[0])
                continue
            per_layout[(name, lay["label"])] = (dep, lay, per_engine, batch, t_pre)
            seqs = max(1, batch // dep.attn_dp)
            # aggregated: R replicas
            r0 = max(1, math.ceil(rate / per_engine))

            def build_agg(units, lay=lay, dep=dep, seqs=seqs, limit_gpus=limit_gpus, name=name):
                if units * dep.gpus > limit_gpus:
                    return None
                return {"hardware": name, "num_gpus": units * dep.gpus, "tp": lay["tp"], "ep": lay["ep"],
                        "attn_dp": lay.get("attn_dp"), "max_num_seqs": seqs}

            got = run_until_ok(build_agg, r0)
            if got and got[0] is not None:
                res, kwargs, units = got
                candidates.append(_plan_from(res, "aggregated", f"{units} x {lay['label']} {name}", name,
                                             lay["label"], kwargs, _priced(sysm), attainment, how_to_run))
            elif r0 * dep.gpus > limit_gpus:
                skip(f"{name} {lay['label']}: needs more than {limit_gpus} GPUs (one replica serves about "
                     f"{per_engine:.2g} req/s)")

    if disagg:
        keys = list(per_layout)
        pairs = [(p, d) for p in keys for d in keys if p[0] == d[0] or mixed]
        # one layout per pool per system pair keeps the search small: the cheapest-per-throughput layouts
        best_by_sys = {}
        for key, (dep, _lay, per_engine, _batch, _t_pre) in per_layout.items():
            score = dep.gpus / per_engine
            if key[0] not in best_by_sys or score < best_by_sys[key[0]][0]:
                best_by_sys[key[0]] = (score, key)
        pref = {k for _, k in best_by_sys.values()}
        pairs = [(p, d) for p, d in pairs if p in pref and d in pref]
        for pkey, dkey in pairs:
            p_dep, p_lay, _, _, t_pre = per_layout[pkey]
            d_dep, d_lay, _, d_batch, _ = per_layout[dkey]
            sm = _engine_steps(d_dep, d_batch, isl, osl, profile, engine, async_scheduling)
            t_dec = sm.decode(d_batch, isl + osl / 2.0)[0]
            nd = max(1, math.ceil(rate / (d_batch / (max(osl - 1, 1) * t_dec))))
            np_ = max(1, math.ceil(rate * t_pre / 0.7))    # prefill engines at <= 70% busy keep TTFT queueing low
            limit_gpus = max_gpus or systems[pkey[0]].devices_per_node * 8
            mode = "disaggregated" if pkey[0] == dkey[0] else "mixed"

            def build_dis(units, np_=np_, nd=nd, p_dep=p_dep, d_dep=d_dep, p_lay=p_lay, d_lay=d_lay,
                          pkey=pkey, dkey=dkey, d_batch=d_batch, limit_gpus=limit_gpus):
                scale = units / 100.0
                n_p = max(1, math.ceil(np_ * scale))
                n_d = max(1, math.ceil(nd * scale))
                p_g, d_g = n_p * p_dep.gpus, n_d * d_dep.gpus
                if p_g + d_g > limit_gpus:
                    return None
                return {"hardware": pkey[0], "num_gpus": p_g + d_g, "tp": p_lay["tp"], "ep": p_lay["ep"],
                        "attn_dp": p_lay.get("attn_dp"), "disagg": f"{p_g}:{d_g}",
                        "prefill": {"tp": p_lay["tp"], "ep": p_lay["ep"], "attn_dp": p_lay.get("attn_dp") or 1,
                                    "hardware": pkey[0]},
                        "decode": {"tp": d_lay["tp"], "ep": d_lay["ep"], "attn_dp": d_lay.get("attn_dp") or 1,
                                   "hardware": dkey[0], "max_num_seqs": max(1, d_batch // d_dep.attn_dp)}}

            got = run_until_ok(build_dis, 100)
            if got and got[0] is not None:
                res, kwargs, _ = got
                p_g, d_g = (int(x) for x in kwargs["disagg"].split(":"))
                fleet = (f"P {p_g // p_dep.gpus} x {p_lay['label']} {pkey[0]} + "
                         f"D {d_g // d_dep.gpus} x {d_lay['label']} {dkey[0]}")
                hw = pkey[0] if pkey[0] == dkey[0] else f"{pkey[0]}+{dkey[0]}"
                candidates.append(_plan_from(res, mode, fleet, hw, f"P {p_lay['label']} / D {d_lay['label']}",
                                             kwargs, _priced(systems[pkey[0]]) and _priced(systems[dkey[0]]),
                                             attainment, how_to_run))
    _mark_pareto(candidates)
    key = {"cost": lambda p: (_cents(p.cost_per_hour_usd), p.tpot_p90_s),
           "energy": lambda p: (p.energy_per_token_j, p.num_gpus),
           "gpus": lambda p: (p.num_gpus, _cents(p.cost_per_hour_usd), p.tpot_p90_s)}[objective]
    feasible = sorted([p for p in candidates if p.meets_slo], key=key)
    for i, p in enumerate(feasible, 1):
        p.rank = i
    return ServePlanResult(spec.name, feasible[:top], candidates, evaluated, len(feasible),
                           time.perf_counter() - t0, skipped)


def _cents(usd: float | None) -> float:
    """A fleet price rounded to the cent, so equal fleets tie whatever the float order of their sums."""
    return round(usd, 2) if usd is not None else math.inf


def _priced(system) -> bool:
    return system.gpu.price is not None


def _mark_pareto(plans: list[ServePlan]) -> None:
    """Pareto over (throughput per GPU: higher better, p90 TPOT: lower better), among SLO-meeting plans."""
    pts = [p for p in plans if p.meets_slo]
    for p in pts:
        p.pareto = not any(q is not p and q.tokens_per_s_per_gpu >= p.tokens_per_s_per_gpu
                           and q.tpot_p90_s <= p.tpot_p90_s
                           and (q.tokens_per_s_per_gpu > p.tokens_per_s_per_gpu or q.tpot_p90_s < p.tpot_p90_s)
                           for q in pts)


def pareto_figure(result: ServePlanResult):
    """Throughput per GPU vs p90 TPOT of every simulated deployment; the Pareto front joined."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"aggregated": "o", "disaggregated": "s", "mixed": "D"}
    hws = sorted({p.hardware for p in result.candidates})
    colors = {h: f"C{i % 10}" for i, h in enumerate(hws)}
    for p in result.candidates:
        ax.scatter(p.tpot_p90_s * 1e3, p.tokens_per_s_per_gpu, marker=markers.get(p.mode, "o"),
                   color=colors[p.hardware], alpha=1.0 if p.meets_slo else 0.3,
                   edgecolors="black" if p.pareto else "none")
    front = sorted([p for p in result.candidates if p.pareto], key=lambda p: p.tpot_p90_s)
    if front:
        ax.plot([p.tpot_p90_s * 1e3 for p in front], [p.tokens_per_s_per_gpu for p in front], "k--", lw=1,
                label="Pareto front")
    for h in hws:
        ax.scatter([], [], color=colors[h], label=h)
    for m, mk in markers.items():
        ax.scatter([], [], marker=mk, color="gray", label=m)
    ax.set_xlabel("p90 TPOT (ms)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.set_title(f"{result.model}: deployments (faded: SLO missed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
