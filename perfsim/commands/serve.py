"""`perfsim serve`: simulate an LLM serving fleet under a request load and report latency, throughput,
goodput, energy, carbon and cost. Also `plan_serve`, the body of `perfsim plan --task serve`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from perfsim.commands import WhatIfOpt
from perfsim.errors import InvalidInputError
from perfsim.units import format_quantity


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def _clean(value):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _seconds(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format_quantity(v, "s")


def serve_command(
    model: str = typer.Option(..., "--model", "-m", help="Model name, Hugging Face repository id, perfsim YAML or HF "
                                                              "config.json path."),
    hardware: str = typer.Option(..., "--hardware", "-H", help="System (e.g. dgx-h100) or device name."),
    num_gpus: int | None = typer.Option(None, "--num-gpus", "-n",
                                           help="GPUs in the fleet (default: one replica)."),
    tp: int = typer.Option(1, "--tp", help="Tensor-parallel degree of attention (per replica)."),
    ep: int = typer.Option(1, "--ep", help="Expert-parallel degree (MoE)."),
    pp: int = typer.Option(1, "--pp", help="Pipeline-parallel stages."),
    attention_dp: int | None = typer.Option(None, "--attention-dp",
                                               help="Attention data-parallel groups per replica (default: ep/tp "
                                                    "for MoE when ep > tp, else 1)."),
    dtype: str | None = typer.Option(None, "--dtype",
                                     help="Compute and weight dtype: bf16, fp16, fp8, fp4 (default: the checkpoint's, "
                                          "e.g. fp8 for DeepSeek-V3). At 16 bits a model whose checkpoint ships 4-bit "
                                          "experts (gpt-oss, Kimi K2.5) runs them as shipped."),
    weight_dtype: str | None = typer.Option(None, "--weight-dtype", help="Weight storage dtype if different."),
    kv_dtype: str | None = typer.Option(None, "--kv-dtype",
                                        help="KV-cache dtype (default: the checkpoint's as the engine reads it: fp8 "
                                             "for NVFP4 under TensorRT-LLM and vLLM and for ModelOpt FP8 under "
                                             "TensorRT-LLM, else the activation dtype, bf16 for fp8 and lower)."),
    state_dtype: str = typer.Option("fp32", "--state-dtype",
                                    help="Linear-recurrence (Gated DeltaNet, KDA, Mamba-2) state dtype: fp32, bf16, "
                                         "fp16."),
    isl: int = typer.Option(1024, "--isl", help="Input (prompt) tokens per request."),
    osl: int = typer.Option(256, "--osl", help="Output tokens per request."),
    length_spread: float = typer.Option(0.0, "--length-spread",
                                        help="Lengths uniform in [1-s, 1+s] x isl/osl (0: fixed)."),
    concurrency: str | None = typer.Option(None, "--concurrency", "-c",
                                           help="Closed loop: requests in flight; a comma-separated list (1,4,16,64) "
                                                "sweeps them."),
    rate: str | None = typer.Option(None, "--rate", "-r",
                                    help="Open loop: Poisson arrivals, requests/s; a comma-separated list sweeps "
                                         "them; 'max' finds the highest rate at which --slo-attainment of the "
                                         "requests meet the SLOs (capacity)."),
    trace: Path | None = typer.Option(None, "--trace", help="Arrival trace (CSV or JSONL: arrival_s, "
                                                               "input_len, output_len, or the Azure, BurstGPT and "
                                                               "Mooncake traces' own columns; without an arrival "
                                                               "column, an offline batch: all requests at once)."),
    trace_time_unit: str = typer.Option("s", "--trace-time-unit",
                                        help="Unit of the trace's numeric arrival times: s, ms (Mooncake) or us."),
    router: str = typer.Option("round_robin", "--router",
                               help="Where new requests go: round_robin (a closed-loop client keeps its engine) or "
                                    "least_loaded (the engine with the fewest requests)."),
    turns: int = typer.Option(1, "--turns", help="With --rate: requests come in chat sessions of this many turns, "
                                                  "each prompt the conversation so far (its earlier part cached)."),
    think_time: float | None = typer.Option(None, "--think-time",
                                            help="With --turns: mean seconds between a session's turns."),
    prefix_len: int = typer.Option(0, "--prefix-len",
                                   help="Prompt tokens every request shares (a system prompt), served from the "
                                        "prefix cache once an engine has computed them."),
    burstiness: float | None = typer.Option(None, "--burstiness",
                                               help="With --rate: gamma inter-arrivals of this coefficient of "
                                                    "variation, 0.001 to 1000 (1 = Poisson, > 1 burstier)."),
    ramp: str = typer.Option("0", "--ramp", help="Closed loop: start the clients spread over this many seconds, "
                                                 "or 'auto' (one request's expected latency)."),
    num_requests: int | None = typer.Option(None, "--num-requests", "-N",
                                               help="Requests to simulate, at most 10 million (default 1000; a "
                                                    "trace: all rows)."),
    disagg: str | None = typer.Option(None, "--disagg", help="Prefill/decode disaggregation: "
                                                               "PREFILL_GPUS:DECODE_GPUS."),
    prefill_tp: int | None = typer.Option(None, "--prefill-tp", help="Disagg: prefill instances' tp."),
    prefill_ep: int | None = typer.Option(None, "--prefill-ep", help="Disagg: prefill instances' ep."),
    decode_tp: int | None = typer.Option(None, "--decode-tp", help="Disagg: decode instances' tp."),
    decode_ep: int | None = typer.Option(None, "--decode-ep", help="Disagg: decode instances' ep."),
    disagg_handoff: float | None = typer.Option(None, "--disagg-handoff",
                                                help="Disagg: fixed seconds per request between its prefill and "
                                                     "its decode, beside the KV transfer (default: fitted on NVIDIA "
                                                     "Dynamo deployments; 0: none)."),
    policy: str | None = typer.Option(None, "--policy", help="Batching: chunked (Sarathi / vLLM V1), "
                                                                "continuous (prefill first: vLLM V0, SGLang) or "
                                                                "static (default: the engine's)."),
    admission: str | None = typer.Option(None, "--admission", help="KV admission: preempt (admit while blocks are "
                                                                       "free, preempt when they run out: vLLM, SGLang) "
                                                                       "or reserve (blocks for prompt plus output up "
                                                                       "front: TensorRT-LLM; default: the engine's)."),
    request_latency: float | None = typer.Option(None, "--request-latency",
                                                 help="Seconds each token takes between engine and client outside "
                                                      "the engine's steps (HTTP, tokenisation, detokenisation; "
                                                      "default: the engine's fitted one, 0 for none)."),
    recv_interval: int = typer.Option(1, "--recv-interval", help="The engine takes new requests every this many "
                                                                  "decode steps (SGLang --scheduler-recv-interval)."),
    max_num_seqs: int | None = typer.Option(None, "--max-num-seqs",
                                            help="Sequences per engine (per attention-DP rank; default: the "
                                                 "engine's on the GPU: vLLM 1024 on GPUs of >= 70 GiB but A100s, "
                                                 "else 256; TensorRT-LLM 256; SGLang 2048 per server, shared by "
                                                 "its attention-DP ranks; 256 for a model with recurrent states "
                                                 "whose engine reserves them up front, all but vLLM)."),
    max_num_batched_tokens: int | None = typer.Option(None, "--max-num-batched-tokens",
                                                         help="Token budget per step (default: the engine's on the "
                                                              "GPU: vLLM 8192 on GPUs of >= 70 GiB but A100s, else "
                                                              "2048; TensorRT-LLM 8192; SGLang its chunked prefill "
                                                              "size, 2048-16384 by GPU memory)."),
    gpu_memory_utilization: float | None = typer.Option(None, "--gpu-memory-utilization",
                                                        help="Share of GPU memory for weights, activations and KV "
                                                             "(default: the engine's: vLLM 0.9, SGLang its "
                                                             "mem_fraction_static formula)."),
    kv_free_fraction: float | None = typer.Option(None, "--kv-free-fraction",
                                                  help="KV cache as this share of the memory weights and "
                                                       "activations leave (TensorRT-LLM's "
                                                       "free_gpu_memory_fraction, 0.9 by default), instead of "
                                                       "--gpu-memory-utilization."),
    engine: str = typer.Option("vllm", "--engine", help="Serving engine whose default batching and host overhead "
                                                        "per step and sequence apply: vllm (fitted), trtllm "
                                                        "(measured by NVIDIA), sglang (no data yet: zero) or none "
                                                        "(GPU time only, vLLM's batching)."),
    async_scheduling: bool | None = typer.Option(None, "--async-scheduling/--no-async-scheduling",
                                                 help="Host work of the next step overlapped with the GPU's "
                                                      "current one (default: the engine's; vLLM >= 0.14 and "
                                                      "TensorRT-LLM do, not in TensorRT-LLM's pipeline loop)."),
    spec_tokens: int = typer.Option(0, "--spec-tokens", help="Speculative decoding: draft tokens per step "
                                                              "(MTP / draft heads; 0: off)."),
    spec_accept: str | None = typer.Option(None, "--spec-accept",
                                           help="Acceptance rate of each draft token given the ones before, e.g. "
                                                "0.85,0.3 (one value: all; default 0.85, DeepSeek-V3's MTP)."),
    power_limit: str | None = typer.Option(None, "--power-limit", help="Per-GPU power cap, e.g. 330W "
                                                                          "(default: TDP)."),
    price_per_gpu_hour: float | None = typer.Option(None, "--price-per-gpu-hour",
                                                       help="US$ per GPU-hour (default: the device's price)."),
    grid_intensity: float | None = typer.Option(None, "--grid-intensity",
                                                   help="kg CO2e per kWh (default: US average, EPA eGRID2022)."),
    pue: float = typer.Option(1.0, "--pue", help="Data-center power usage effectiveness."),
    slo_ttft: float | None = typer.Option(None, "--slo-ttft", help="TTFT SLO in seconds (for goodput)."),
    slo_tpot: float | None = typer.Option(None, "--slo-tpot", help="TPOT SLO in seconds (for goodput)."),
    slo_attainment: float | None = typer.Option(None, "--slo-attainment",
                                                help="With --rate max: the share of requests that must meet "
                                                     "every SLO (default 0.9, DistServe's goodput goal)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of arrivals and lengths."),
    profile: str = typer.Option("auto", "--profile", help="Cost model: auto, prior, none (roofline) or a "
                                                          "profile YAML."),
    requests_csv: Path | None = typer.Option(None, "--requests-csv", help="Write per-request results here."),
    out: Path | None = typer.Option(None, "--out", help="A sweep's latency-throughput chart (.png, .svg, .pdf): "
                                                        "tokens/s per GPU against tokens/s per user, and TTFT."),
    what_if: list[str] | None = WhatIfOpt,
    launch: bool = typer.Option(False, "--launch", help="Also print how to run the simulated deployment: each "
                                                        "engine instance's launch command (JSON: 'launch'); "
                                                        "--engine vllm, sglang or trtllm."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Simulate serving a model on a GPU fleet: TTFT, TPOT, throughput, goodput, energy, CO2e and cost."""
    from perfsim.serving import serve
    from perfsim.serving.energy import DEFAULT_GRID_KG_PER_KWH
    from perfsim.serving.launch import LAUNCH_ENGINES
    from perfsim.whatif import from_cli
    label = hardware
    hardware = from_cli(hardware, what_if)
    if launch and engine.lower() not in LAUNCH_ENGINES:
        raise InvalidInputError(f"launch: launch commands exist for --engine {', '.join(LAUNCH_ENGINES)}; "
                                f"got {engine!r}")

    if burstiness is not None and rate is None:
        raise InvalidInputError("burstiness: needs --rate")
    if (prefill_tp or prefill_ep or decode_tp or decode_ep or disagg_handoff is not None) and not disagg:
        raise InvalidInputError("disagg: --prefill-*/--decode-*/--disagg-handoff options need --disagg "
                                "PREFILL_GPUS:DECODE_GPUS")
    ramp_value: float | str = ramp
    if ramp != "auto":
        try:
            ramp_value = float(ramp)
        except ValueError:
            raise InvalidInputError(f"ramp: expected seconds or 'auto', got {ramp!r}") from None
    prefill = {k: v for k, v in (("tp", prefill_tp), ("ep", prefill_ep)) if v}
    decode = {k: v for k, v in (("tp", decode_tp), ("ep", decode_ep)) if v}
    options = dict(num_gpus=num_gpus, tp=tp, ep=ep, pp=pp, attn_dp=attention_dp, dtype=dtype,
                   weight_dtype=weight_dtype, kv_dtype=kv_dtype, state_dtype=state_dtype, isl=isl, osl=osl,
                   trace=str(trace) if trace else None,
                   trace_time_unit=trace_time_unit, prefix_len=prefix_len, router=router, turns=turns,
                   think_time=think_time, burstiness=burstiness,
                   ramp=ramp_value,
                   num_requests=num_requests, length_spread=length_spread, disagg=disagg,
                   prefill=prefill or None, decode=decode or None, disagg_handoff_s=disagg_handoff,
                   request_latency_s=request_latency,
                   policy=policy, admission=admission,
                   recv_interval=recv_interval, max_num_seqs=max_num_seqs,
                   max_num_batched_tokens=max_num_batched_tokens, gpu_memory_utilization=gpu_memory_utilization,
                   kv_free_fraction=kv_free_fraction,
                   engine=engine, async_scheduling=async_scheduling, spec_tokens=spec_tokens, spec_accept=spec_accept,
                   power_limit=power_limit,
                   price_per_gpu_hour=price_per_gpu_hour,
                   grid_intensity=DEFAULT_GRID_KG_PER_KWH if grid_intensity is None else grid_intensity, pue=pue,
                   slo_ttft=slo_ttft, slo_tpot=slo_tpot, seed=seed, profile=profile)

    def run(**load):
        return serve(model, hardware, **{**options, **load})

    def how_to_run(result) -> list[dict] | None:
        """The simulated deployment's launch commands (None without --launch)."""
        if not launch:
            return None
        from perfsim.serving.launch import launch_commands, settings_of
        systems = None if isinstance(hardware, str) else {hardware.name: hardware}   # as changed by --what-if
        return [x.to_dict() for x in launch_commands(model, settings_of(result.config), engine, dtype, systems)]

    load_name, loads = _loads(concurrency, rate, slo_ttft, slo_tpot, slo_attainment)
    if out is not None:
        from perfsim.report import check_figure_path
        if loads is None or len(loads) < 2:
            raise InvalidInputError("out: the chart is of a sweep: give --concurrency or --rate a comma-separated "
                                    "list of loads")
        check_figure_path(out)
    if loads is None:   # --rate max
        _capacity(run, options, 0.9 if slo_attainment is None else slo_attainment, requests_csv, as_json,
                  how_to_run)
        return
    if len(loads) == 1:
        result = run(**{load_name: loads[0]})
        commands = how_to_run(result)
        _write_requests(requests_csv, [result])
        if as_json:
            doc = result.to_json_dict() if commands is None else {**result.to_json_dict(), "launch": commands}
            sys.stdout.write(json.dumps(_clean(doc), indent=2) + "\n")
            return
        print_result(result)
        print_launch(_console(), "this deployment", engine, commands)
        return
    goal = (0.9 if slo_attainment is None else slo_attainment) if slo_ttft is not None or slo_tpot is not None \
        else None
    _sweep(run, load_name, loads, f"{model} on {label}{' (what-if)' if what_if else ''}, {isl} in / {osl} out",
           requests_csv, out, as_json, goal, how_to_run)


def _loads(concurrency: str | None, rate: str | None, slo_ttft, slo_tpot, slo_attainment):
    """(serve() keyword, loads): the closed loop's concurrencies or the open loop's rates as given, one or a
    sweep; loads None for --rate max (capacity)."""
    from perfsim.serving.arrivals import MIN_RATE
    from perfsim.serving.sweep import parse_loads
    sweeping = "," in str(concurrency) or "," in str(rate)
    if slo_attainment is not None and str(rate).strip().lower() != "max" and not sweeping:
        raise InvalidInputError("slo-attainment: needs --rate max or a sweep (a list of loads)")
    if slo_attainment is not None and slo_ttft is None and slo_tpot is None:
        raise InvalidInputError("slo-attainment: needs an SLO: --slo-ttft and/or --slo-tpot")
    if concurrency is not None and rate is not None:
        raise InvalidInputError("concurrency: give exactly one of --concurrency, --rate or --trace")
    if rate is not None and str(rate).strip().lower() == "max":
        if slo_ttft is None and slo_tpot is None:
            raise InvalidInputError("rate: 'max' (capacity) needs an SLO: --slo-ttft and/or --slo-tpot")
        return "rate", None
    if concurrency is not None:
        return "concurrency", parse_loads(concurrency, "concurrency", True, 1)
    if rate is not None:
        return "rate", parse_loads(rate, "rate", False, MIN_RATE, "requests/s")
    return "concurrency", [None]   # a trace, or serve()'s own error for a missing load


def _write_requests(path: Path | None, results: list, loads: list | None = None, load_name: str = "") -> None:
    """Per-request results (a sweep's with its load in a column), written whole or not at all."""
    if path is None:
        return
    import pandas as pd
    frames = [r.to_frame() for r in results]
    if loads is not None:
        frames = [f.assign(**{load_name: load}) for f, load in zip(frames, loads, strict=True)]
    tmp = path.with_suffix(path.suffix + ".tmp")
    pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
    tmp.replace(path)


def _sweep(run, load_name: str, loads: list, what: str, requests_csv: Path | None, out: Path | None,
           as_json: bool, goal: float | None, how_to_run) -> None:
    """Run one simulation per load; a table (or JSON) and the chart; with SLOs (`goal`: the attainment asked for)
    the load with the most tokens/s per GPU that meets them; `how_to_run(result)`: the deployment's launch
    commands or None."""
    from perfsim.errors import check_number
    from perfsim.serving.sweep import best_within_slo, curve_figure, sweep
    if goal is not None:
        check_number("slo-attainment", goal, "(a share of the requests)", high=1.0)
    points = sweep(lambda load: run(**{load_name: load}), loads)
    commands = how_to_run(points[0].result)
    best = best_within_slo(points, goal) if goal is not None else None
    _write_requests(requests_csv, [p.result for p in points], loads, load_name)
    title = f"{what}: {load_name} sweep"
    if out is not None:
        from perfsim.report import save_figure
        save_figure(curve_figure(points, load_name, title), out)
    if as_json:
        doc = {"load": load_name, "points": [{load_name: p.load, **p.result.to_json_dict()} for p in points]}
        if goal is not None:
            doc.update(slo_attainment_goal=goal, best_load_within_slo=None if best is None else best.load)
        if commands is not None:
            doc["launch"] = commands
        sys.stdout.write(json.dumps(_clean(doc), indent=2) + "\n")
        return
    table = Table(load_name, "TTFT", "TTFT p99", "TPOT", "TPOT p99", "tok/s", "tok/s/GPU", "tok/s/user", "req/s",
                  "SLO met", "J/token", "$/M tok", title=title)
    for p in points:
        r = p.row()
        table.add_row(f"{p.load:g}", _seconds(r["ttft_s"]), _seconds(r["ttft_p99_s"]), _seconds(r["tpot_s"]),
                      _seconds(r["tpot_p99_s"]), f"{r['throughput_tokens_per_s']:,.0f}",
                      f"{r['throughput_tokens_per_s_per_gpu']:,.0f}",
                      "-" if r["tokens_per_s_per_user"] is None else f"{r['tokens_per_s_per_user']:,.1f}",
                      f"{r['requests_per_s']:.3g}", f"{100 * r['slo_attainment']:.0f}%",
                      f"{r['energy_per_token_j']:.3g}",
                      "-" if r["cost_per_million_tokens_usd"] is None else f"{r['cost_per_million_tokens_usd']:.3g}")
    console = _console()
    console.print(table)
    wall = sum(p.result.summary["sim_wall_s"] for p in points)
    if goal is not None:
        console.print(f"best within the SLOs ({100 * goal:g}% of requests): " + (
            "none of these loads" if best is None else
            f"{load_name} {best.load:g}, {best.result.summary['throughput_tokens_per_s_per_gpu']:,.0f} tokens/s per "
            f"GPU"))
    console.print(f"simulated {len(points)} loads in {wall:.2f} s" + (f"; wrote {out}" if out is not None else ""))
    print_launch(console, "this deployment", points[0].result.config["engine"], commands)


def _capacity(run, options: dict, goal: float, requests_csv: Path | None, as_json: bool, how_to_run) -> None:
    """--rate max: the highest Poisson rate meeting the SLO attainment goal, bracketed by the rate with every
    request waiting at once (a closed loop of all of them); `how_to_run(result)`: launch commands or None."""
    from perfsim.serving.arrivals import MAX_REQUESTS
    from perfsim.serving.sweep import BISECTIONS, capacity, saturated_rate
    if options["trace"] is not None:
        raise InvalidInputError("concurrency: give exactly one of --concurrency, --rate or --trace")
    n = min(options["num_requests"] or 1000, MAX_REQUESTS)
    full = run(concurrency=n, num_requests=n, turns=1, think_time=None, burstiness=None)
    commands = how_to_run(full)
    found = capacity(lambda r: run(rate=r), saturated_rate(full.summary), goal)
    if found.result is not None:
        _write_requests(requests_csv, [found.result])
    slos = ", ".join(f"{name} <= {_seconds(v)}" for name, v in (("TTFT", options["slo_ttft"]),
                                                                 ("TPOT", options["slo_tpot"])) if v is not None)
    if as_json:
        doc = {"capacity_requests_per_s": found.rate, "slo_attainment_goal": found.attainment_goal,
               "search_top_requests_per_s": 2 * found.saturated_rate, "capacity_at_search_top": found.at_top,
               "at_capacity": None if found.result is None else found.result.to_json_dict()}
        if commands is not None:
            doc["launch"] = commands
        sys.stdout.write(json.dumps(_clean(doc), indent=2) + "\n")
        return
    console = _console()
    if found.result is None:
        console.print(f"capacity: no rate down to {found.saturated_rate * 2 / 2 ** BISECTIONS:.3g} req/s has "
                      f"{100 * goal:g}% of requests within {slos}")
    else:
        console.print(f"capacity: {'at least ' if found.at_top else ''}{found.rate:.3g} req/s with {100 * goal:g}% "
                      f"of requests within {slos} (searched up to {2 * found.saturated_rate:.3g} req/s, twice the "
                      f"rate with every request waiting)")
        print_result(found.result)
    print_launch(console, "this deployment", full.config["engine"], commands)


def print_result(result) -> None:
    s, c = result.summary, result.config
    console = _console()
    pools = "; ".join(f"{p['role']} {p['gpus']} GPUs = {p['replicas']} x {p['layout']} {p['dtype']} "
                      f"({p['kv_tokens_per_engine']:,} {p['kv_dtype']} KV tokens/engine)" for p in c["pools"])
    memory = f"KV {c['kv_free_fraction']:g} of the free memory" if c.get("kv_free_fraction") is not None \
        else f"memory utilization {c['gpu_memory_utilization']:g}"
    limits = f" | limits {c['max_num_seqs']} sequences, {c['max_num_batched_tokens']:,} tokens per step, {memory}"
    host = c["host_overhead"]
    engine = c["engine"] + (" (host overlapped: async scheduling)" if host["overlapped"] and host["step_s"] else "")
    table = Table("metric", "mean", "p50", "p90", "p99",
                  title=f"{c['model']} on {c['num_gpus']} x {c['hardware']}: {c['workload']}, {c['policy']} batching, "
                        f"engine {engine}")
    for name, key in (("TTFT", "ttft"), ("TPOT", "tpot"), ("ITL", "itl"), ("E2E latency", "e2e")):
        mean = s.get(f"{key}_s", s.get(f"{key}_mean_s"))
        table.add_row(name, _seconds(mean), _seconds(s[f"{key}_p50_s"]), _seconds(s[f"{key}_p90_s"]),
                      _seconds(s[f"{key}_p99_s"]))
    console.print(table)
    routing = f" | router {c['router']}" if c.get("router", "round_robin") != "round_robin" else ""
    hits = s.get("prefix_cache_hit_rate") or 0.0
    cache = f" | prefix cache serves {100 * hits:.0f}% of prompt tokens" if hits else ""
    console.print(f"fleet: {pools}{routing}{cache}{limits}")
    good = f" | goodput {s['goodput_requests_per_s']:.3g} req/s ({100 * s['slo_attainment']:.1f}% within SLO)" \
        if s["slo_ttft_s"] is not None or s["slo_tpot_s"] is not None else ""
    saturated = s.get("saturated_tokens_per_s")
    steady = f" ({saturated:,.0f} while saturated)" if saturated and math.isfinite(saturated) else ""
    console.print(f"throughput {s['throughput_tokens_per_s']:,.0f} output tokens/s{steady} "
                  f"({s['throughput_tokens_per_s_per_gpu']:,.0f}/GPU), {s['requests_per_s']:.3g} req/s{good} | "
                  f"busy {100 * s['utilization']:.0f}% | preemptions {s['preemptions']}")
    cost = "-" if s["cost_usd"] is None else f"${s['cost_usd']:.4g} (${s['cost_per_million_tokens_usd']:.3g}/M tokens)"
    console.print(f"energy {s['energy_per_token_j']:.3g} J/token, {s['energy_per_request_j']:.4g} J/request | "
                  f"avg power {s['avg_power_w']:,.0f} W ({s['avg_power_per_gpu_w']:.0f} W/GPU, cap "
                  f"{s['power_cap_w']:.0f} W, throttling x{s['throttle_slowdown']:.2f}) | {s['kwh']:.4g} kWh, "
                  f"{s['co2e_kg']:.4g} kg CO2e | {cost}")
    console.print(f"simulated {s['num_requests']:,} requests over {s['makespan_s']:.4g} s in {s['sim_wall_s']:.2f} s")


# ---------------------------------------------------------------------------------- plan --task serve
def plan_serve(model: str, hardware: str, isl: int, osl: int, rate: float, slo_ttft: float | None = None,
               slo_tpot: float | None = None, objective: str = "cost", max_gpus: int | None = None,
               top: int = 10, out: Path | None = None, as_json: bool = False, num_requests: int | None = None,
               dtype: str | None = None, profile: str = "auto", engine: str = "vllm",
               async_scheduling: bool | None = None, prefix_len: int = 0, what_if: list[str] | None = None,
               launch: bool = False) -> None:
    """The body of `perfsim plan --task serve`: search deployments, print a table or JSON, draw the Pareto chart,
    and with `launch` the best one's launch commands."""
    from perfsim.serving.plan import pareto_figure, plan_serving
    from perfsim.whatif import parse_items
    if out is not None:
        from perfsim.report import check_figure_path
        check_figure_path(out)
    result = plan_serving(model, hardware, isl=isl, osl=osl, rate=rate, slo_ttft=slo_ttft, slo_tpot=slo_tpot,
                          objective=objective, max_gpus=max_gpus, top=top, num_requests=num_requests, dtype=dtype,
                          profile=profile, engine=engine, async_scheduling=async_scheduling,
                          prefix_len=prefix_len, what_if=parse_items(what_if or []))
    if out is not None:
        from perfsim.report import save_figure
        save_figure(pareto_figure(result), out)
    if as_json:
        sys.stdout.write(json.dumps(_clean([p.to_dict() for p in result.plans]), indent=2) + "\n")
        return
    console = _console()
    table = Table("#", "fleet", "GPUs", "mode", "layout", "TTFT p90", "TPOT p90", "tok/s/GPU", "$/M tok",
                  "J/token", "SLO met", "pareto",
                  title=f"{result.model} at {rate:g} req/s ({isl} in / {osl} out), by {objective}"
                        + (f" (what-if: {', '.join(what_if)})" if what_if else ""))
    for p in result.plans:
        table.add_row(str(p.rank), p.fleet, str(p.num_gpus), p.mode, p.layout, _seconds(p.ttft_p90_s),
                      _seconds(p.tpot_p90_s), f"{p.tokens_per_s_per_gpu:,.0f}",
                      "-" if p.cost_per_million_tokens_usd is None else f"{p.cost_per_million_tokens_usd:.3g}",
                      f"{p.energy_per_token_j:.3g}", f"{100 * p.slo_attainment:.0f}%", "*" if p.pareto else "")
    console.print(table)
    skipped = ", ".join(f"{k} {v}" for k, v in result.skipped.items()) or "none"
    console.print(f"{result.evaluated} deployments simulated, {result.feasible} meet the SLOs, in "
                  f"{result.seconds:.1f} s; skipped: {skipped}")
    if launch and result.plans:
        print_launch(console, f"#{result.plans[0].rank}", engine, result.plans[0].launch)
    if out is not None:
        console.print(f"wrote {out}")


def print_launch(console, what: str, engine: str, commands: list[dict] | None) -> None:
    """How to run a deployment (`commands`: its launch dicts; None: not asked for): per kind of engine instance,
    its count, GPUs and command (unwrapped, to copy), the options file it reads and any notes."""
    from perfsim.serving.launch import LAUNCH_ENGINES
    if commands is None:
        return
    if not commands:
        console.print(f"--launch: no launch commands for engine {engine!r} (they exist for --engine "
                      f"{', '.join(LAUNCH_ENGINES)})")
        return
    console.print(f"How to run {what} with {engine}:")
    for item in commands:
        console.print(f"  {item['role']}: {item['instances']} x {item['gpus']} GPUs of {item['hardware']}")
        console.print(f"    {item['command']}", markup=False, highlight=False, soft_wrap=True)
        if item["config"]:
            console.print(f"    {item['config_file']}:", markup=False, highlight=False)
            for line in item["config"].splitlines():
                console.print(f"      {line}", markup=False, highlight=False, soft_wrap=True)
        for note in item["notes"]:
            console.print(f"    # {note}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the perfsim CLI."""
    app.command("serve")(serve_command)
