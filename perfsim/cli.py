"""The perfsim command line: thin wrappers that parse, call the library and print tables or JSON."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from perfsim import hardware as hwlib
from perfsim import model as modellib
from perfsim.commands import WhatIfOpt
from perfsim.errors import InvalidInputError, PerfsimError, one_line
from perfsim.units import format_quantity

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Analytical performance simulator and roofline modeler for LLMs.")
hw_app = typer.Typer(no_args_is_help=True, help="The hardware library: devices, links, systems.")
models_app = typer.Typer(no_args_is_help=True, help="The model library.")
app.add_typer(hw_app, name="hw")
app.add_typer(models_app, name="models")
console = Console(width=None if sys.stdout.isatty() else 160)


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {one_line(message)}\n")
    return 2


class Task(str, Enum):
    prefill = "prefill"
    decode = "decode"
    train = "train"


class ActDtype(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    fp32 = "fp32"


class WeightDtype(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    int8 = "int8"
    int4 = "int4"
    int4_g32 = "int4_g32"
    fp4 = "fp4"
    mxfp4 = "mxfp4"


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ---- hardware ------------------------------------------------------------------------------------
def _hw_summary(h) -> dict:
    out = {"name": h.name, "kind": h.kind, "summary": h.summary}
    if isinstance(h, hwlib.Device):
        out.update(vendor=h.vendor, memory_bytes=h.memory_bytes, memory_bw_Bps=h.memory_bw_Bps,
                   peak_flops={k: v for k, v in h.compute.peak.items()}, tdp_w=h.power.tdp)
    elif isinstance(h, hwlib.Link):
        out.update(type=h.type, bandwidth_Bps=h.bandwidth, latency_s=h.latency)
    else:
        out.update(device=h.gpu.name, devices_per_node=h.devices_per_node, intra_node_link=h.intra_link.name,
                   nics_per_node=h.nics_per_node, nic_link=h.nic.name if h.nic else None)
    return out


@hw_app.command("list")
def hw_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List shipped devices, links and systems."""
    items = hwlib.list_hardware()
    if as_json:
        print_json([_hw_summary(h) for h in items])
        return
    table = Table("name", "kind", "memory", "bandwidth", "bf16 / fp8 peak", "summary")
    for h in items:
        if isinstance(h, hwlib.Device):
            peaks = " / ".join(format_quantity(h.peak_flops(d), "FLOP/s") for d in ("bf16", "fp8"))
            table.add_row(h.name, h.kind, format_quantity(h.memory_bytes, "B"),
                          format_quantity(h.memory_bw_Bps, "B/s"), peaks, h.summary)
        elif isinstance(h, hwlib.Link):
            table.add_row(h.name, h.kind, "", format_quantity(h.bandwidth, "B/s"), "", h.summary)
        else:
            table.add_row(h.name, h.kind, f"{h.devices_per_node}x {h.gpu.name}", h.intra_link.name, "", h.summary)
    console.print(table)


@hw_app.command("show")
def hw_show(name: str = typer.Argument(..., help="Hardware name or YAML path."),
            what_if: list[str] | None = WhatIfOpt,
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show one device, link or system with its sources (with --what-if: as changed)."""
    from perfsim.whatif import from_cli
    h = hwlib.load_hardware(from_cli(name, what_if))
    data = h.model_dump()
    if as_json:
        print_json(data)
        return
    table = Table("field", "value", title=f"{h.name} ({h.kind})")
    for key, value in data.items():
        table.add_row(key, json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value))
    console.print(table)


# ---- models --------------------------------------------------------------------------------------
def _mixers(m: modellib.ModelSpec) -> dict[str, int]:
    """Layers by token mixer: attention, linear (linear attention), mamba."""
    counts = (("attention", m.num_attention_layers), ("linear", m.num_linear_layers), ("mamba", m.num_mamba_layers))
    return {kind: n for kind, n in counts if n}


def _model_summary(m: modellib.ModelSpec) -> dict:
    return {"name": m.name, "family": m.family, "params_total": m.params_total, "params_active": m.params_active,
            "attention": m.attention_kind, "moe": m.is_moe, "layers": m.num_layers, "layers_by_mixer": _mixers(m),
            "hidden_size": m.hidden_size, "max_seq_len": m.max_seq_len, "checkpoint_dtype": m.checkpoint_dtype,
            "checkpoint_block_scaled": m.checkpoint_block_scaled,
            "hf_repos": m.hf_repos}


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List shipped models."""
    specs = [modellib.load_model(n) for n in modellib.model_names()]
    if as_json:
        print_json([_model_summary(m) for m in specs])
        return
    table = Table("name", "params total", "active", "attention", "layers", "mixers", "hidden", "max seq",
                  "Hugging Face repos")
    for m in specs:
        mixers = " + ".join(f"{n} {kind}" for kind, n in _mixers(m).items())
        table.add_row(m.name, f"{m.params_total / 1e9:.2f}B", f"{m.params_active / 1e9:.2f}B", m.attention_kind,
                      str(m.num_layers), mixers, str(m.hidden_size), str(m.max_seq_len), ", ".join(m.hf_repos))
    console.print(table)


@models_app.command("show")
def models_show(model: str = typer.Argument(..., help="Model name, Hugging Face repository id, perfsim YAML or HF "
                                                     "config.json path."),
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show one model's architecture and parameter counts."""
    from perfsim.cost.memory import kv_cache_bytes, recurrent_state_bytes
    m = modellib.load_model(model)
    data = {**m.model_dump(), "hf_repos": m.hf_repos, "params_total": m.params_total, "params_active": m.params_active,
            "attention": m.attention_kind,
            "layers_by_mixer": _mixers(m),
            "kv_cache_bytes_per_token": kv_cache_bytes(m, 1, 1),            # bf16, all layers, one GPU
            "recurrent_state_bytes_per_sequence": recurrent_state_bytes(m, 1)}
    if as_json:
        print_json(data)
        return
    table = Table("field", "value", title=m.name)
    for key, value in data.items():
        table.add_row(key, str(value))
    console.print(table)


# ---- predict / roofline --------------------------------------------------------------------------
ModelOpt = typer.Option(..., "--model", "-m", help="Model name, Hugging Face repository id (see `perfsim models "
                                                   "list`), perfsim YAML or HF config.json path.")
HardwareOpt = typer.Option(..., "--hardware", "-H", help="Device or system name, or a YAML path.")
TaskOpt = typer.Option(Task.decode, "--task", help="prefill, decode or train.")
BatchOpt = typer.Option(1, "--batch", "-b", help="Sequences in the batch.")
SeqOpt = typer.Option(None, "--seq", help="Tokens per sequence (prefill, train).")
ContextOpt = typer.Option(None, "--context", help="Tokens already in the KV cache (decode).")
DtypeOpt = typer.Option(None, "--dtype", help="Compute dtype (default: the model's checkpoint format for inference, "
                                                "e.g. fp8 for DeepSeek-V3; bf16 for training).")
WeightOpt = typer.Option(None, "--weight-dtype", help="Weight storage dtype (weight-only quantization; "
                                                                  "default: --dtype, 4-bit experts as the checkpoint "
                                                                  "ships them).")
KvOpt = typer.Option(None, "--kv-dtype", help="KV-cache dtype (default: the activation dtype, bf16 for fp8 and lower).")
TpOpt = typer.Option(1, "--tp", help="Tensor-parallel degree (needs a system).")
EpOpt = typer.Option(1, "--ep", help="Expert-parallel degree (needs a system).")
ProfileOpt = typer.Option("auto", "--profile", help="Calibration profile: auto, none, or a YAML path.")
StateOpt = typer.Option("fp32", "--state-dtype",
                        help="Linear-recurrence (Gated DeltaNet, KDA, Mamba-2) state dtype: fp32, bf16 or fp16.")


def _predict(model, hardware, task, batch, seq, context, dtype, weight_dtype, kv_dtype, tp, ep, profile,
             state_dtype="fp32"):
    from perfsim.predict import predict
    return predict(model, hardware, task=task.value, batch=batch, seq=seq, context=context,
                   dtype=dtype.value if dtype else None, weight_dtype=weight_dtype.value if weight_dtype else None,
                   kv_dtype=kv_dtype.value if kv_dtype else None, tp=tp, ep=ep,
                   profile=None if profile == "none" else profile, state_dtype=state_dtype)


def _print_estimate(est, top: int = 15) -> None:
    table = Table("op", "kind", "count", "time", "share", "GFLOP", "MB", "FLOP/B", "bound",
                  title=f"{est.model} {est.task} on {est.hardware} (batch {est.batch})")
    for b in est.breakdown[:top]:
        table.add_row(b.name, b.kind, str(b.count), format_quantity(b.time_s, "s"),
                      f"{100 * b.time_s / est.latency_s:.1f}%", f"{b.flops / 1e9:.3g}", f"{b.bytes / 1e6:.4g}",
                      f"{b.intensity:.3g}", b.bound)
    console.print(table)
    mem = ", ".join(f"{k} {format_quantity(v, 'B', binary=True)}" for k, v in est.memory_breakdown.items())
    console.print(f"latency {format_quantity(est.latency_s, 's')} | {est.tokens_per_s:,.1f} tokens/s | "
                  f"memory/device {format_quantity(est.memory_per_device_bytes, 'B', binary=True)} ({mem})"
                  f"{'' if est.fits_in_memory else ' [DOES NOT FIT]'} | energy {est.energy_j:.4g} J | "
                  f"avg power {est.avg_power_w:.0f} W")


@app.command()
def predict(model: str = ModelOpt,
            hardware: str = typer.Option(..., "--hardware", "-H",
                                         help="Device or system name, or a YAML path; several, comma-separated "
                                              "(h100-sxm,h200-sxm,b200), compare them."),
            task: Task = TaskOpt, batch: int = BatchOpt,
            seq: int | None = SeqOpt, context: int | None = ContextOpt, dtype: ActDtype | None = DtypeOpt,
            weight_dtype: WeightDtype | None = WeightOpt, kv_dtype: ActDtype | None = KvOpt,
            tp: int = TpOpt, ep: int = EpOpt, profile: str = ProfileOpt, state_dtype: str = StateOpt,
            num_gpus: int | None = typer.Option(None, "--num-gpus", "-n", help="GPUs (default tp x pp x cp x dp)."),
            pp: int = typer.Option(1, "--pp", help="Pipeline stages."),
            dp: int | None = typer.Option(None, "--dp", help="Data-parallel replicas (default num_gpus/(tp pp cp))."),
            cp: int = typer.Option(1, "--cp", help="Context-parallel degree."),
            global_batch: int | None = typer.Option(None, "--global-batch", help="Sequences per step (def. --batch)."),
            micro_batch: int = typer.Option(1, "--micro-batch", help="Sequences per micro-batch (train)."),
            recompute: str = typer.Option("none", "--recompute", help="none, selective or full (train)."),
            zero: int = typer.Option(0, "--zero", help="ZeRO stage 0-3 (train)."),
            interleave: int = typer.Option(1, "--interleave", help="Virtual pipeline stages per rank (train)."),
            ep_overlap: bool = typer.Option(False, "--ep-overlap",
                                            help="train: MoE all-to-all hidden behind another micro-batch's "
                                                 "compute (DualPipe)."),
            dispatcher: str = typer.Option("alltoall", "--dispatcher",
                                           help="train: MoE token dispatch, alltoall (Megatron) or deepep (one "
                                                "copy per node over the network, FP8 with --dtype fp8)."),
            stage_layout: str = typer.Option("even", "--stage-layout",
                                             help="train: pipeline layers even (L/pp on every rank) or balanced "
                                                  "(fewer on the ranks holding the embedding and the LM head)."),
            steps: int = typer.Option(1, "--steps", help="train: optimizer steps for the energy/cost footprint."),
            power_limit: str | None = typer.Option(None, "--power-limit", help="Per-GPU power cap, e.g. 330W."),
            price_per_gpu_hour: float | None = typer.Option(None, "--price-per-gpu-hour",
                                                            help="$ per GPU-hour (default: the device's)."),
            grid_intensity: float | None = typer.Option(None, "--grid-intensity", help="kg CO2e per kWh."),
            what_if: list[str] | None = WhatIfOpt,
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Predict latency, throughput, memory and energy of a prefill, a decode step or a training step; with several
    --hardware names (h100-sxm,h200-sxm,b200) the same work on each, side by side."""
    from perfsim.whatif import from_cli
    names = [h.strip() for h in hardware.split(",")] if "," in hardware else [hardware]
    if any(not n for n in names):
        raise InvalidInputError(f"hardware: expected a name or comma-separated names, got {hardware!r}")
    parallel = task == Task.train or (num_gpus or 1) > 1 or pp > 1 or (dp or 1) > 1 or cp > 1
    if parallel and steps < 1:
        raise InvalidInputError(f"steps: must be >= 1, got {steps}")

    def one(hw):
        """(estimate, training/multi-GPU footprint or None) on one hardware."""
        if not parallel:
            return _predict(model, hw, task, batch, seq, context, dtype, weight_dtype, kv_dtype, tp, ep, profile,
                            state_dtype), None
        from perfsim.parallel import predict_parallel
        from perfsim.serving.energy import DEFAULT_GRID_KG_PER_KWH, run_footprint
        est = predict_parallel(model, hw, task.value, num_gpus, tp=tp, pp=pp, dp=dp, ep=ep, cp=cp,
                               global_batch=global_batch or batch, micro_batch=micro_batch, seq=seq, context=context,
                               recompute=recompute, zero=zero, interleave=interleave,
                               dtype=dtype.value if dtype else None,
                               profile=None if profile == "none" else profile, ep_overlap=ep_overlap,
                               dispatcher=dispatcher, stage_layout=stage_layout)
        return est, run_footprint(est, steps, power_limit, price_per_gpu_hour,
                                  DEFAULT_GRID_KG_PER_KWH if grid_intensity is None else grid_intensity)

    results = [one(from_cli(n, what_if)) for n in names]
    if len(results) > 1:
        _print_comparison(names, results, as_json)
        return
    est, footprint = results[0]
    if footprint is not None:
        if as_json:
            print_json({**est.to_json_dict(), "footprint": footprint})
        else:
            from perfsim.commands.plan import print_parallel_estimate
            print_parallel_estimate(est, console)
            console.print(f"{steps} step(s): {footprint['kwh']:.4g} kWh, {footprint['co2e_kg']:.4g} kg CO2e"
                          + (f", ${footprint['cost_usd']:,.2f}" if footprint.get("cost_usd") is not None else "")
                          + (f" (power-capped: x{footprint['slowdown']:.2f} slower)" if footprint["throttled"] else ""))
        return
    if as_json:
        print_json(est.to_json_dict())
    else:
        _print_estimate(est)


def _print_comparison(names: list[str], results: list, as_json: bool) -> None:
    """The same prediction on several hardware: a list of each one's JSON, or a table with the speedup over the
    first."""
    if as_json:
        print_json([{**est.to_json_dict(), **({"footprint": fp} if fp is not None else {})} for est, fp in results])
        return
    first = results[0][0].latency_s
    est0 = results[0][0]
    table = Table("hardware", "GPUs", "latency", "speedup", "tokens/s", "tokens/s/GPU", "memory/GPU", "fits",
                  "energy", "avg power", title=f"{est0.model} {est0.task}: the same work on each hardware")
    for name, (est, _) in zip(names, results, strict=True):
        table.add_row(name, str(est.num_gpus), format_quantity(est.latency_s, "s"), f"{first / est.latency_s:.2f}x",
                      f"{est.tokens_per_s:,.0f}", f"{est.tokens_per_s / est.num_gpus:,.0f}",
                      format_quantity(est.memory_per_device_bytes, "B", binary=True),
                      "yes" if est.fits_in_memory else "NO", f"{est.energy_j:.4g} J", f"{est.avg_power_w:,.0f} W")
    console.print(table)


@app.command()
def roofline(model: str = ModelOpt, hardware: str = HardwareOpt, task: Task = TaskOpt, batch: int = BatchOpt,
             seq: int | None = SeqOpt, context: int | None = ContextOpt, dtype: ActDtype | None = DtypeOpt,
             weight_dtype: WeightDtype | None = WeightOpt, kv_dtype: ActDtype | None = KvOpt,
             profile: str = ProfileOpt, state_dtype: str = StateOpt, what_if: list[str] | None = WhatIfOpt,
             out: Path = typer.Option(Path("roofline.png"), "--out", "-o", help="Chart file (.png, .svg, .pdf).")):
    """Draw the device roofline with the workload's ops placed by arithmetic intensity."""
    from perfsim.report import check_figure_path, roofline_figure, save_figure
    from perfsim.whatif import from_cli
    check_figure_path(out)
    hardware = from_cli(hardware, what_if)
    est = _predict(model, hardware, task, batch, seq, context, dtype, weight_dtype, kv_dtype, 1, 1, profile,
                   state_dtype)
    _print_estimate(est, top=40)
    save_figure(roofline_figure(hwlib.load_device(hardware), est), out)
    console.print(f"wrote {out}")


def _measured_gpu(path: str, frame) -> str:
    """The one GPU a measured file names in its rows, else a one-line error asking for --hardware."""
    named = sorted({str(h) for h in frame.get("hardware", []) if str(h) not in ("", "unknown", "nan")})
    if len(named) != 1:
        raise InvalidInputError(f"hardware: {path} names {'GPUs ' + ', '.join(named) if named else 'no GPU'}; "
                                "pass --hardware (the GPU it was measured on)")
    return named[0]


@app.command()
def validate(dataset: list[str] | None = typer.Option(None, "--dataset", "-d",
                                                      help="Data set name (see --list) or a measured file path; "
                                                           "repeatable. Default: every data set."),
             hardware: str | None = typer.Option(None, "--hardware", "-H",
                                                    help="The GPU a measured file (a path) was taken on."),
             quick: bool = typer.Option(False, "--quick", help="Fit on fewer rows and score a sample of the rest."),
             list_sets: bool = typer.Option(False, "--list", help="List the data sets and exit."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Score the cost model on measured kernels: MAPE and p90 error, uncalibrated, calibrated, transfer."""
    from perfsim import measured
    from perfsim import validate as val
    if list_sets:
        for name in val.validated_datasets():
            ds = measured.DATASETS[name]
            sys.stdout.write(f"{name}\t{ds.family}\t{','.join(ds.hardware)}\t{ds.description}\n")
        return
    from perfsim.specfiles import looks_like_path
    paths = [d for d in (dataset or []) if d not in measured.DATASETS and (looks_like_path(d) or Path(d).is_file())]
    names = [d for d in (dataset or []) if d not in paths]
    kwargs = dict(max_rows=1500, max_test_rows=4000) if quick else {}
    from perfsim.serving.validation import serving_dataset_of
    frames = {path: measured.load(path) for path in paths}
    devices = {path: None if serving_dataset_of(frame) else hwlib.load_device(hardware or _measured_gpu(path, frame))
               for path, frame in frames.items()}
    with _progress() as step:
        report = val.validate(names or (None if not paths else []), progress=step, **kwargs) if (names or not paths) \
            else val.Report(split=val.SPLIT)
        for path, frame in frames.items():
            step(path)
            report.scores.extend(val.score_file(path, frame, devices[path], **({"max_rows": 1500} if quick else {})))
    if as_json:
        print_json(report.to_dict())
        return
    table = Table("dataset", "op", "GPU", "rows", "MAPE uncal.", "p90 uncal.", "MAPE cal.", "p90 cal.",
                  "MAPE transfer", title="perfsim validate: error on held-out rows")
    shown = None
    for sc in report.scores:
        tr = "" if sc.mape_transfer is None else f"{100 * sc.mape_transfer:.1f}%"
        name, shown = ("" if sc.dataset == shown else sc.dataset), sc.dataset   # named on its first row
        table.add_row(name, sc.group, sc.hardware, str(sc.n_test),
                      f"{100 * sc.mape_uncalibrated:.1f}%", f"{100 * sc.p90_uncalibrated:.1f}%",
                      f"{100 * sc.mape_calibrated:.1f}%", f"{100 * sc.p90_calibrated:.1f}%", tr)
    console.print(table)
    console.print(f"split: {report.split}. transfer: parameters fitted on H100 data only, applied through the "
                  f"target GPU's specs.")
    for name, why in report.skipped.items():
        console.print(f"skipped {name}: {why}")


@app.command()
def calibrate(sources: list[str] | None = typer.Option(None, "--from", help="Measured tables (names or paths)."),
              hardware: str | None = typer.Option(None, "--hardware", "-H", help="Device the tables measure."),
              device: str | None = typer.Option(None, "--device", help="Measure this machine: cpu or cuda."),
              out: Path = typer.Option(..., "--out", "-o", help="Profile YAML (--from) or output folder (--device)."),
              quick: bool = typer.Option(False, "--quick", help="A shorter sweep (--device) or fit (--from)."),
              as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Fit cost-model parameters to measured tables, or measure this machine, and write a profile."""
    if bool(sources) == bool(device):
        raise InvalidInputError("from: give either --from FILE... with --hardware, or --device cpu|cuda")
    if sources:
        if not hardware:
            raise InvalidInputError("hardware: --from needs --hardware (the device the tables were measured on)")
        if out.suffix not in (".yaml", ".yml"):
            raise InvalidInputError(f"out: {str(out)!r} must be a .yaml file for --from")
        from perfsim.calibrate.from_tables import calibrate_from_tables
        with _progress() as step:
            profile = calibrate_from_tables(list(sources), hwlib.load_device(hardware), out, progress=step,
                                            **({"max_rows": 1500} if quick else {}))
        if as_json:
            print_json(profile.model_dump(mode="json"))
            return
        table = Table("table", "held-out rows", "MAPE", "p90", title=f"profile for {profile.device} -> {out}")
        for src, sc in profile.scores.items():
            table.add_row(src, str(int(sc["rows"])), f"{100 * sc['mape']:.1f}%", f"{100 * sc['p90']:.1f}%")
        console.print(table)
        return
    if device not in ("cpu", "cuda"):
        raise InvalidInputError(f"device: got {device!r}; accepted: cpu, cuda")
    from perfsim.calibrate.device import calibrate_device
    with _progress() as step:
        result = calibrate_device(device, out, progress=lambda msg, frac=0.0: step(msg), quick=quick)
    if as_json:
        print_json(result)
        return
    console.print_json(data=result, default=str)


class _progress:
    """A rich progress bar whose step(label) advances it; silent when stdout is not a terminal."""

    def __enter__(self):
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                            console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True)
        self.bar.__enter__()
        self.task = self.bar.add_task("starting", total=None)
        return self.step

    def step(self, label: str) -> None:
        self.bar.update(self.task, description=str(label), advance=1)

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)


def _register_commands() -> None:
    from perfsim.commands import plan as plan_command
    plan_command.register(app)
    try:
        from perfsim.commands import serve as serve_command
    except ImportError:  # the serving simulator is optional until it lands
        return
    serve_command.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors and exit code 2 on bad input, never a traceback."""
    try:
        app(args=argv, prog_name="perfsim", standalone_mode=False)
    except PerfsimError as exc:
        return _fail(str(exc))
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 130
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: show its help
            sys.stdout.write(exc.format_message() + "\n")
            return 0
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click/typer usage errors
            return _fail(exc.format_message())
        raise
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
