"""`perfsim plan`: search every valid parallel plan, rank the feasible ones, print a table or JSON."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from perfsim.commands import WhatIfOpt
from perfsim.units import format_quantity


class PlanTask(str, Enum):
    train = "train"
    prefill = "prefill"
    decode = "decode"
    serve = "serve"


class Objective(str, Enum):
    time = "time"
    cost = "cost"
    energy = "energy"
    gpus = "gpus"


def plan_command(
    task: PlanTask = typer.Option(PlanTask.train, "--task", help="train, prefill, decode or serve."),
    model: str = typer.Option(..., "--model", "-m", help="Model name, Hugging Face repository id, perfsim YAML or HF "
                                                              "config.json path."),
    hardware: str = typer.Option(..., "--hardware", "-H", help="System name (e.g. dgx-a100-80gb) or YAML path."),
    num_gpus: int | None = typer.Option(None, "--num-gpus", "-n", help="GPUs available (serve: the most to use)."),
    global_batch: int | None = typer.Option(None, "--global-batch", "-b",
                                               help="Sequences per step (train default: --num-gpus; else 1)."),
    seq: int | None = typer.Option(None, "--seq", help="Tokens per sequence (default: min(max_seq_len, 4096))."),
    context: int | None = typer.Option(None, "--context", help="Cached tokens per sequence (decode)."),
    objective: Objective = typer.Option(Objective.time, "--objective", help="Rank by time, cost or energy per step."),
    max_memory_fraction: float = typer.Option(0.9, "--max-memory-fraction",
                                              help="Share of GPU memory a plan may use."),
    top: int = typer.Option(10, "--top", help="Plans to print."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Pareto chart (.png, .svg, .pdf)."),
    profile: str = typer.Option("auto", "--profile", help="Calibration profile: auto, none, or a YAML path."),
    isl: int = typer.Option(1024, "--isl", help="serve: input tokens per request."),
    osl: int = typer.Option(256, "--osl", help="serve: output tokens per request."),
    rate: float | None = typer.Option(None, "--rate", "-r", help="serve: requests per second."),
    slo_ttft: float | None = typer.Option(None, "--slo-ttft", help="serve: time-to-first-token SLO, seconds."),
    slo_tpot: float | None = typer.Option(None, "--slo-tpot", help="serve: time-per-output-token SLO, seconds."),
    dtype: str | None = typer.Option(None, "--dtype", help="bf16 or fp8 (default: the checkpoint's for inference, "
                                                           "bf16 for training)."),
    engine: str = typer.Option("vllm", "--engine", help="serve: the engine that runs every deployment (its "
                                                        "batching and host overhead): vllm, trtllm, sglang, none."),
    async_scheduling: bool | None = typer.Option(None, "--async-scheduling/--no-async-scheduling",
                                                 help="serve: host work of the next step overlapped with the GPU's "
                                                      "current one (default: the engine's; vLLM >= 0.14 and "
                                                      "TensorRT-LLM do)."),
    prefix_len: int = typer.Option(0, "--prefix-len", help="serve: prompt tokens every request shares, served "
                                                             "from the prefix cache."),
    what_if: list[str] | None = WhatIfOpt,
    launch: bool = typer.Option(False, "--launch", help="serve: also print how to run the best deployment, each "
                                                        "engine instance's launch command (JSON: every plan's "
                                                        "'launch')."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: the plans, best first."),
) -> None:
    """Search every valid parallel plan (TP, PP, DP, EP, CP, micro-batch, recompute, ZeRO, interleaving),
    or with --task serve the cheapest deployments that meet the SLOs."""
    from perfsim.dtypes import check
    from perfsim.errors import InvalidInputError
    from perfsim.parallel.step import Options
    from perfsim.search import pareto_figure, plan

    if task == PlanTask.serve:
        if rate is None:
            raise InvalidInputError("rate: plan --task serve needs --rate REQUESTS_PER_S")
        from perfsim.commands.serve import plan_serve
        plan_serve(model, hardware, isl, osl, rate, slo_ttft, slo_tpot,
                   "cost" if objective.value == "time" else objective.value, max_gpus=num_gpus, top=top, out=out,
                   as_json=as_json, dtype=dtype, profile=profile, engine=engine, async_scheduling=async_scheduling,
                   prefix_len=prefix_len, what_if=what_if, launch=launch)
        return
    if launch:
        raise InvalidInputError(f"launch: launch commands are for --task serve, not {task.value}")
    if num_gpus is None:
        raise InvalidInputError(f"num-gpus: plan --task {task.value} needs --num-gpus N")

    if top < 1:
        raise InvalidInputError(f"top: must be >= 1, got {top}")
    if out is not None:
        from perfsim.report import check_figure_path
        check_figure_path(out)
    from perfsim.whatif import from_cli
    result = plan(model, from_cli(hardware, what_if), num_gpus, task=task.value, global_batch=global_batch, seq=seq,
                  context=context,
                  objective=objective.value, max_memory_fraction=max_memory_fraction, top=top,
                  profile=None if profile == "none" else profile, full=out is not None,
                  options=Options(dtype=check(dtype, "dtype")) if dtype else None)
    if out is not None:
        from perfsim.report import save_figure
        save_figure(pareto_figure(result), out)
    if as_json:
        sys.stdout.write(json.dumps([p.to_dict() for p in result.plans], indent=2) + "\n")
        return
    console = Console(width=None if sys.stdout.isatty() else 160)
    first = "step" if task == PlanTask.train else "latency"
    table = Table("#", "GPUs", "tp", "pp", "dp", "ep", "cp", "mb", "recompute", "zero", "v", first, "tokens/s",
                  "MFU", "mem/GPU", "energy", "cost", "pareto",
                  title=f"{model} {task.value} on {num_gpus} x {hardware}, by {objective.value}")
    for p in result.plans:
        table.add_row(str(p.rank), str(p.num_gpus), str(p.tp), str(p.pp), str(p.dp), str(p.ep), str(p.cp),
                      str(p.micro_batch), p.recompute, str(p.zero), str(p.interleave),
                      format_quantity(p.latency_s, "s"), f"{p.tokens_per_s:,.0f}", f"{100 * p.mfu:.1f}%",
                      format_quantity(p.memory_per_device_bytes, "B", binary=True),
                      format_quantity(p.energy_j, "J"), "" if p.cost is None else f"${p.cost:.4g}",
                      "*" if p.pareto else "")
    console.print(table)
    dropped = ", ".join(f"{k} {v}" for k, v in result.dropped.items() if v)
    console.print(f"{result.evaluated:,} plans evaluated, {result.feasible:,} fit, in {result.seconds:.2f} s; "
                  f"dropped: {dropped or 'none'}")
    if out is not None:
        console.print(f"wrote {out}")


def print_parallel_estimate(est, console: Console | None = None) -> None:
    """Rich output of a perfsim.parallel.ParallelEstimate (for `perfsim predict` over several GPUs)."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    degrees = ", ".join(f"{k} {est.plan[k]}" for k in ("tp", "pp", "dp", "ep", "cp", "micro_batch", "recompute",
                                                       "zero", "interleave") if k in est.plan)
    console.print(f"{est.model} {est.task} on {est.num_gpus} x {est.hardware}: {degrees}; "
                  f"{'global batch' if est.task == 'train' else 'batch'} {est.global_batch}")
    table = Table("part", "time", "share")
    for name, value in sorted(est.time_breakdown.items(), key=lambda kv: -kv[1]):
        if value > 0:
            table.add_row(name, format_quantity(value, "s"), f"{100 * value / est.latency_s:.1f}%")
    console.print(table)
    mem = ", ".join(f"{k} {format_quantity(v, 'B', binary=True)}" for k, v in est.memory_breakdown.items() if v)
    step = "step" if est.task == "train" else "latency"
    console.print(f"{step} {format_quantity(est.latency_s, 's')} | {est.tokens_per_s:,.1f} tokens/s | "
                  f"MFU {100 * est.mfu:.1f}% | memory/GPU "
                  f"{format_quantity(est.memory_per_device_bytes, 'B', binary=True)} ({mem})"
                  f"{'' if est.fits_in_memory else ' [DOES NOT FIT]'} | energy {est.energy_j:.4g} J | "
                  f"avg power {est.avg_power_w:.0f} W")


def register(app: typer.Typer) -> None:
    """Add the `plan` command to the perfsim CLI."""
    app.command("plan")(plan_command)
