"""predict(): latency, throughput, memory and energy of one workload on one device (or a TP/EP group)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from perfsim import graph as graphs
from perfsim.calibrate.profile import resolve
from perfsim.cost import memory
from perfsim.cost.energy import run_energy
from perfsim.costmodel import op_time
from perfsim.dtypes import activation_dtype
from perfsim.errors import InvalidInputError
from perfsim.hardware import Hardware, System, load_device, load_hardware
from perfsim.model import ModelSpec, load_model


class OpBreakdown(BaseModel):
    name: str
    kind: str
    count: int
    time_s: float
    flops: float
    bytes: float
    intensity: float
    bound: str
    level: str


class EstimateBase(BaseModel):
    """What every prediction reports, with the assumptions it rests on."""
    model_config = ConfigDict(frozen=True)

    model: str
    hardware: str
    task: str
    seq: int | None
    context: int | None = None
    num_gpus: int
    latency_s: float
    tokens_per_s: float
    flops: float
    memory_per_device_bytes: float
    memory_breakdown: dict[str, float]
    fits_in_memory: bool
    energy_j: float
    avg_power_w: float
    assumptions: list[str]

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump()


class Estimate(EstimateBase):
    """One device (or a TP/EP group): a prefill, a decode step or a training step, with its per-op breakdown."""
    batch: int
    breakdown: list[OpBreakdown]

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame([b.model_dump() for b in self.breakdown])


def predict(model: str | Path | ModelSpec, hardware: str | Path | Hardware, task: str = "decode", batch: int = 1,
            seq: int | None = None, context: int | None = None, dtype: str | None = None,
            weight_dtype: str | None = None, kv_dtype: str | None = None, tp: int = 1, ep: int = 1,
            profile: str | None = "auto", state_dtype: str = "fp32") -> Estimate:
    """Predict one prefill of `batch` x `seq` tokens, one decode step of `batch` sequences at `context`
    cached tokens, or one training step, on a device (tp = ep = 1) or a TP x EP group of a system. dtype: the
    model's checkpoint format for inference (ModelSpec.checkpoint_dtype), BF16 for training, unless given."""
    spec = load_model(model)
    dtype = spec.run_dtype(task, dtype)
    hw = load_hardware(hardware)
    device = load_device(hw)
    gpus = tp * ep
    if gpus > 1 and not isinstance(hw, System):
        raise InvalidInputError(f"hardware: tp x ep = {gpus} devices needs a system (e.g. dgx-h100), "
                                f"got device {device.name!r}")
    g = graphs.build(spec, task, batch, seq=seq, context=context, dtype=dtype, weight_dtype=weight_dtype,
                     kv_dtype=kv_dtype, tp=tp, ep=ep, state_dtype=state_dtype)
    w: graphs.Workload = g.graph["workload"]
    prof = resolve(profile, device.name)
    cache: dict = {}  # layers repeat the same op shapes: cost each distinct op once
    costs = []
    for _, data in g.nodes(data=True):
        op = data["op"]
        if op not in cache:
            cache[op] = op_time(op, hw, prof)
        costs.append(cache[op])
    dynamic_j = sum(c.energy_j for c in costs) * gpus
    # one stream: ops run back to back; a calibrated run stretches where its power would pass the TDP (clock
    # throttling), the pure roofline (no profile) stays the ideal bound
    energy_j, power_w, latency = run_energy(dynamic_j, sum(c.time_s for c in costs), device, gpus,
                                            throttle=prof is not None)

    mem = _memory(spec, w, task, dtype, weight_dtype, kv_dtype)
    total_mem = sum(mem.values())
    tokens = w.batch if task == "decode" else w.tokens
    return Estimate(
        model=spec.name, hardware=getattr(hw, "name", str(hardware)), task=task, batch=batch, seq=seq,
        context=context, num_gpus=gpus, latency_s=latency, tokens_per_s=tokens / latency if latency else 0.0,
        flops=sum(c.flops for c in costs) * gpus, memory_per_device_bytes=total_mem, memory_breakdown=mem,
        fits_in_memory=total_mem <= device.memory_bytes, energy_j=energy_j, avg_power_w=power_w,
        breakdown=_breakdown(costs),
        assumptions=_assumptions(task, dtype, weight_dtype, kv_dtype, prof, device, w.expert_weight_dtype,
                                 w.gemm_recipe),
    )


def _memory(spec: ModelSpec, w: graphs.Workload, task: str, dtype: str, weight_dtype: str | None,
            kv_dtype: str | None) -> dict[str, float]:
    act_dtype = activation_dtype(dtype)
    mem = {"weights": memory.weight_bytes(spec, dtype, w.tp, w.ep, weight_dtype)}
    if task == "train":
        from perfsim.parallel.memory import training_memory
        parts = training_memory(spec, tp=w.tp, pp=1, dp=1, ep=w.ep, cp=1, micro_batch=w.batch, recompute="none",
                                zero=0, interleave=1, global_batch=w.batch, seq=w.q_len, dtype=dtype)
        mem = {k: float(v) for k, v in parts.items()}
    else:
        mem["kv_cache"] = memory.kv_cache_bytes(spec, w.batch, w.kv_len, kv_dtype or act_dtype, w.tp)
        if any(spec.recurrent_state_elems()):
            mem["recurrent_state"] = memory.recurrent_state_bytes(spec, w.batch, w.state_dtype, w.tp)
        mem["activations"] = memory.inference_activation_bytes(spec, w.tokens, act_dtype, w.tp)
    return mem


def _breakdown(costs) -> list[OpBreakdown]:
    """Costs summed per op name over layers, slowest first."""
    groups: dict[str, list] = defaultdict(list)
    for c in costs:
        groups[c.op.name].append(c)
    rows = []
    for name, cs in groups.items():
        t = sum(c.time_s for c in cs)
        flops = sum(c.flops for c in cs)
        nbytes = sum(c.bytes for c in cs)
        slowest = max(cs, key=lambda c: c.time_s)
        rows.append(OpBreakdown(name=name, kind=cs[0].op.kind, count=len(cs), time_s=t, flops=flops, bytes=nbytes,
                                intensity=flops / nbytes if nbytes else 0.0, bound=slowest.bound,
                                level=slowest.level))
    return sorted(rows, key=lambda r: -r.time_s)


def _assumptions(task, dtype, weight_dtype, kv_dtype, prof, device, experts=None, recipe=None) -> list[str]:
    runs_as = device.compute_dtype(dtype)
    promoted = f" (runs at the {runs_as} rate: {device.name} has no {dtype} matrix units)" if runs_as != dtype else ""
    routed = f", routed experts {experts} as the checkpoint ships them" if experts and experts != weight_dtype else ""
    scaled = f", linears {recipe} as the checkpoint ships them" if recipe else ""
    out = [f"compute dtype {dtype}{promoted}; weights {weight_dtype or dtype}{routed}{scaled}; "
           f"KV cache {kv_dtype or activation_dtype(dtype)}",
           "ops run back to back on one stream; communication is not overlapped with compute",
           "energy: sourced pJ/FLOP and pJ/byte where the device gives them, else dynamic power at peak = "
           "TDP - idle; average power capped at TDP"]
    if task == "prefill":
        out.append("prefill computes logits for the last token of each sequence only")
    out.append("cost model: " + ("roofline (ideal peaks)" if prof is None else
                                 f"calibrated efficiency model, profile fitted for {prof.device} on "
                                 f"{', '.join(prof.fitted_on) or 'priors'}"))
    return out
