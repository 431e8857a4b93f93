"""Time, memory and energy of one training step (or one multi-GPU prefill/decode step) under a parallel plan.

Training step (one optimizer step of `global_batch` sequences of `seq` tokens):
  per micro-batch, the work of stage i:  t_i = layers_i x (fwd + bwd + recompute + exposed comm per layer)
                                              + embedding (first stage) or head + loss (last stage)
                                              + 2 v t_p2p (activation and gradient sends; v chunks per rank)
  pipeline (1F1B, Narayanan et al. 2021):  T_pipe = m t_max + (sum_i t_i - t_max) / v
      = (m + (p-1)/v) t for equal stages: the bubble is (p-1)/(v m) of the ideal time
  data parallel: gradient all-reduce (ZeRO-0) or reduce-scatter (ZeRO-1/2) and parameter all-gather (ZeRO-1/2/3)
      over the dp x cp replicas; with dp_overlap the reduction hides under the backward pass of the last
      micro-batch (all but the last layer's bucket) and the all-gather under the next step's first forward;
      ZeRO-2 reduces every micro-batch, ZeRO-3 also gathers weights before each forward and backward
  step = T_pipe + exposed data-parallel communication + tied-embedding gradient all-reduce + optimizer step
with m = global_batch / (dp x micro_batch) micro-batches and per-layer costs from perfsim.parallel.costing.

MFU counts model FLOPs only (6 x active non-embedding parameters x tokens + 12 x layers x heads x head_dim x
seq x tokens for attention, the non-causal count of Narayanan et al. 2021 and PaLM), over GPUs x the dense
peak of the plan's GEMM dtype.

Multi-GPU inference step: a prefill (or decode step) of `batch` sequences split over dp replicas; each
replica's request passes its pp stages in turn: latency = sum of stage times + (pp-1) sends; throughput counts
the pipeline full (one request per stage): dp x tokens / slowest stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perfsim.errors import InvalidInputError, check_int
from perfsim.hardware import Device, Hardware, System, load_hardware
from perfsim.model import ModelSpec, load_model
from perfsim.ops import Elementwise
from perfsim.parallel import memory as pmem
from perfsim.parallel.costing import Costing
from perfsim.parallel.plan import Plan, check_plan, expert_layout
from perfsim.predict import EstimateBase

LAYER_FIELDS = ("fwd", "bwd", "rc_sel", "comm_fwd", "comm_bwd", "tp_fwd", "tp_bwd", "ep_fwd", "ep_bwd", "cp_fwd",
                "cp_bwd", "e_fwd", "e_bwd", "e_rc_sel", "flops_fwd")
ENDS_FIELDS = ("emb_fwd", "emb_bwd", "head_fwd", "head_bwd", "e_emb", "e_head")


@dataclass(frozen=True)
class Options:
    """Plan options shared by every plan of one evaluation (the search holds them fixed)."""
    sp: bool = True
    tp_overlap: bool = False
    dp_overlap: bool = True
    ep_overlap: bool = False
    dispatcher: str = "alltoall"
    attention: str = "flash"
    dtype: str = "bf16"
    optimizer_dtype: str = "fp32"
    stage_layout: str = "even"

    @classmethod
    def of(cls, plan: Plan) -> Options:
        return cls(sp=plan.sequence_parallel is None or bool(plan.sequence_parallel), tp_overlap=plan.tp_overlap,
                   dp_overlap=plan.dp_overlap, ep_overlap=plan.ep_overlap, dispatcher=plan.dispatcher,
                   attention=plan.attention, dtype=plan.dtype, optimizer_dtype=plan.optimizer_dtype,
                   stage_layout=plan.stage_layout)


class ParallelEstimate(EstimateBase):
    """One step of a parallel plan: training (one optimizer step) or a multi-GPU prefill/decode step."""
    plan: dict[str, Any]
    global_batch: int
    micro_batches: int = 1
    mfu: float
    cost_usd: float | None
    time_breakdown: dict[str, float]


# ------------------------------------------------------------------------------------------------ helpers
def _i(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.int64))


def _vec_per_node(stride, group, dpn) -> np.ndarray:
    stride, group = np.asarray(stride), np.asarray(group)
    return np.where(stride >= dpn, 1, np.maximum(1, np.minimum(group, dpn // np.maximum(stride, 1))))


def _collectives(costing: Costing, kind: str, size, group, dpn) -> np.ndarray:
    """costing.coll over arrays (call it on distinct rows: each element is priced)."""
    size, group, dpn = np.broadcast_arrays(np.asarray(size, float), np.asarray(group), np.asarray(dpn))
    rows = zip(size.ravel().tolist(), group.ravel().tolist(), dpn.ravel().tolist(), strict=True)
    return np.array([costing.coll(kind, s, int(g), int(d)) for s, g, d in rows]).reshape(size.shape)


def _unique_rows(*cols) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first plan of each distinct row, inverse) for integer columns, via one int64 key."""
    cols = [np.asarray(c, dtype=np.int64) for c in cols]
    dims = tuple(int(c.max()) + 1 for c in cols)
    key = np.ravel_multi_index(cols, dims)
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return first, inv.ravel()


def balanced_stage_time(layer_t, layers: int, pp, first_extra, last_extra) -> np.ndarray:
    """Work of the busiest pipeline rank when L layers are split to balance the ranks, the first also holding
    `first_extra` (the embedding) and the last `last_extra` (the LM head): the smallest T at which
    floor((T - e) / l) + (pp - 2) floor(T / l) + floor((T - h) / l) >= L, trying T = k l, k l + e and k l + h."""
    lt, p, e, h = (np.asarray(x, float) for x in (layer_t, pp, first_extra, last_extra))
    k_max = int(np.max(np.ceil(layers / np.maximum(p, 1.0)) + np.ceil(np.maximum(e, h) / lt))) + 1
    k = np.arange(k_max + 1, dtype=float)[:, None]
    cands = np.concatenate([k * lt, k * lt + e, k * lt + h])

    def fit(t, extra):   # layers a rank can hold within t; -inf when its extra alone exceeds t
        return np.where(t >= extra - 1e-12, np.floor((t - extra) / lt + 1e-9), -np.inf)

    capacity = fit(cands, e) + (p - 2) * fit(cands, 0.0) + fit(cands, h)
    return np.where(capacity >= layers, cands, np.inf).min(axis=0)


def model_flops_per_token(model: ModelSpec, seq: int) -> float:
    """Training FLOPs per token: 6 N (active, non-embedding) + 6 heads (d_qk + d_v) x attended positions per
    layer (non-causal count, as Narayanan et al. 2021 and PaLM; sliding-window layers see at most the window;
    linear-attention layers' state updates are not counted, as their projections are in N)."""
    window = model.sliding_window or seq
    full = model.num_attention_layers - model.sliding_layers
    positions = model.sliding_layers * min(seq, window) + full * seq
    attn = 6.0 * model.num_heads * (model.qk_head_dim + model.v_head_dim) * positions
    return 6.0 * model.params_non_embedding + attn


def _optimizer_op(params: float, optimizer_dtype: str) -> Elementwise:
    """Adam on `params` local parameters (fp32 elements moved: read w, m, v, grad; write w, m, v, bf16 copy)."""
    if optimizer_dtype == "bf16":   # bf16 moments, fp32 master: 10 B read, 10 B written per parameter
        reads, writes = 2.5, 2.5
    else:
        reads, writes = 4.0, 3.5
    return Elementwise(elements=max(1, int(params)), reads=reads, writes=writes, flops_per_element=12,
                       dtype="fp32", op_kind="optimizer", name="adam_step")


# ------------------------------------------------------------------------------------------------ training
def evaluate_train(costing: Costing, arrays: dict[str, np.ndarray], global_batch: int, seq: int, opts: Options,
                   max_memory_fraction: float = 1.0, mm: pmem.ModelMemory | None = None) -> dict[str, np.ndarray]:
    """Vectorised training-step model: one entry per plan in `arrays` (tp, pp, dp, ep, cp, mb, rc, zero, v).

    rc is the recompute code (0 none, 1 selective, 2 full). Returns arrays: latency_s, tokens_per_s, mfu,
    memory_per_device_bytes (and its parts mem_*), fits, energy_j, cost_usd, and the time breakdown t_*.
    """
    model, dev = costing.model, costing.device
    mm = mm or pmem.ModelMemory(model, training=True)
    tp, pp, dp, ep_given, cp = (_i(arrays[k]) for k in ("tp", "pp", "dp", "ep", "cp"))
    mb, rc, zero, v = (_i(arrays[k]) for k in ("mb", "rc", "zero", "v"))
    ep, folded = expert_layout(tp, dp, cp, ep_given)     # ep: the data-parallel expert split
    n = tp * cp * pp * dp
    dpn = costing.dpn
    unfused = opts.attention == "unfused"
    sp = opts.sp

    # ---- per-layer tables, one row per distinct (tp, mb, cp, ep) --------------------------------
    first_k, inv = _unique_rows(tp, mb, cp, ep, folded)
    uk = np.stack([tp[first_k], mb[first_k], cp[first_k], ep[first_k], folded[first_k]], axis=1)
    tab_d = np.zeros((len(uk), len(LAYER_FIELDS)))
    tab_m = np.zeros_like(tab_d)
    tab_e = np.zeros((len(uk), len(ENDS_FIELDS)))
    p2p_tab = np.zeros((len(uk), 2))
    for i, (t, b, c, e, f) in enumerate(uk.tolist()):
        group, stride = (e * t, 1) if f else (e, t * c)
        dense, moe = costing.train_layer(t, b, c, e, seq, sp and t > 1, opts.tp_overlap, unfused, group, stride,
                                         opts.ep_overlap, opts.dispatcher)
        tab_d[i] = [getattr(dense, f) for f in LAYER_FIELDS]
        tab_m[i] = [getattr(moe, f) for f in LAYER_FIELDS]
        ends = costing.train_ends(t, b, c, seq, sp and t > 1)
        tab_e[i] = [getattr(ends, f) for f in ENDS_FIELDS]
        size = (seq // c) * b * model.hidden_size * 2.0 / t   # Megatron sends 1/tp of the activation per rank
        p2p_tab[i] = (costing.p2p(size, False), costing.p2p(size, True))
    D = {f: tab_d[inv, j] for j, f in enumerate(LAYER_FIELDS)}
    M = {f: tab_m[inv, j] for j, f in enumerate(LAYER_FIELDS)}
    E = {f: tab_e[inv, j] for j, f in enumerate(ENDS_FIELDS)}

    mtp, mtp_moe = pmem.mtp_layers(model)            # multi-token-prediction modules: extra layers ...
    L, n_moe = model.num_layers + mtp, model.num_moe_layers + mtp_moe
    n_dense = L - n_moe
    lps = pmem.stage_layers(L, pp, v)
    # ... and an LM-head pass each, with its 2h -> h projection (2h / V of the head's FLOPs)
    heads = 1.0 + mtp * (1.0 + 2.0 * model.hidden_size / model.vocab_size)
    st_moe = np.minimum(lps, n_moe)
    st_dense = lps - st_moe
    is_sel, is_full = (rc == 1), (rc == 2)

    def parts(T):
        fwd = T["fwd"] + T["comm_fwd"]
        bwd = T["bwd"] + T["comm_bwd"] + np.where(is_sel, T["rc_sel"], 0.0) + np.where(is_full, fwd, 0.0)
        return fwd, bwd

    fwd_d, bwd_d = parts(D)
    fwd_m, bwd_m = parts(M)
    stage_fwd = st_moe * fwd_m + st_dense * fwd_d
    stage_bwd = st_moe * bwd_m + st_dense * bwd_d
    inter = n > dpn
    t_p2p = np.where(inter, p2p_tab[inv, 1], p2p_tab[inv, 0])
    p2p_mb = np.where(pp > 1, 2.0 * v * t_p2p, 0.0)
    emb = E["emb_fwd"] + E["emb_bwd"]
    head = heads * (E["head_fwd"] + E["head_bwd"])
    first = stage_fwd + stage_bwd + emb + p2p_mb
    last = stage_fwd + stage_bwd + head + p2p_mb
    multi = pp > 1
    t_max = np.where(multi, np.maximum(first, last), stage_fwd + stage_bwd + emb + head)
    balanced = np.ones(len(tp))   # the busiest rank's share of the even layout's, for the time breakdown
    if opts.stage_layout == "balanced" and multi.any():
        even = t_max - p2p_mb
        t_bal = balanced_stage_time((stage_fwd + stage_bwd) / lps, L, pp, emb, head)
        balanced = np.where(multi, np.minimum(t_bal, even) / even, 1.0)
        t_max = np.where(multi, p2p_mb + balanced * even, t_max)
    layers_all = n_moe * (fwd_m + bwd_m) + n_dense * (fwd_d + bwd_d)
    sigma = layers_all + emb + head + pp * p2p_mb
    m = global_batch // (dp * mb)
    bubble = np.maximum(0.0, sigma - t_max) / v
    t_pipe = m * t_max + bubble

    # ---- data-parallel gradient and parameter traffic, one row per distinct (tp, pp, dp, ep, cp) ----
    first_g, ginv = _unique_rows(tp, pp, dp, ep, cp)
    utp, upp, udp, uep, ucp = tp[first_g], pp[first_g], dp[first_g], ep[first_g], cp[first_g]
    u_dense, u_expert = mm.stage_params(utp, upp, uep)
    ug = udp * ucp
    uge = np.maximum(1, ug // uep)
    dpn_g = _vec_per_node(utp, ug, dpn)
    dpn_ge = _vec_per_node(utp * ucp * uep, uge, dpn)

    def coll(kind, bytes_per_param):
        return (_collectives(costing, kind, np.where(ug > 1, u_dense * bytes_per_param, 0.0), ug, dpn_g)
                + _collectives(costing, kind, np.where(uge > 1, u_expert * bytes_per_param, 0.0), uge, dpn_ge))[ginv]

    dense_p, expert_p = u_dense[ginv], u_expert[ginv]
    g = dp * cp
    ge = np.maximum(1, g // ep)
    t_ar = np.where(zero == 0, coll("all_reduce", pmem.GRAD_BYTES), 0.0)
    t_rs = np.where(zero >= 1, coll("reduce_scatter", pmem.GRAD_BYTES), 0.0)
    t_ag = np.where(zero >= 1, coll("all_gather", pmem.WEIGHT_BYTES), 0.0)
    buckets = np.maximum(lps, 1.0)
    if opts.dp_overlap:
        def hide(t, window):
            return np.maximum(t - window, t / buckets)
        grad_once = np.where(zero == 0, hide(t_ar, stage_bwd), np.where(zero == 1, hide(t_rs, stage_bwd), 0.0))
        ag_once = np.where((zero == 1) | (zero == 2), np.maximum(0.0, t_ag - stage_fwd), 0.0)
        z2 = np.where(zero == 2, m * hide(t_rs, stage_bwd), 0.0)
        z3 = np.where(zero == 3, m * (hide(t_ag, stage_fwd) + hide(t_ag + t_rs, stage_bwd)), 0.0)
    else:
        grad_once = np.where(zero == 0, t_ar, np.where(zero == 1, t_rs, 0.0))
        ag_once = np.where((zero == 1) | (zero == 2), t_ag, 0.0)
        z2 = np.where(zero == 2, m * t_rs, 0.0)
        z3 = np.where(zero == 3, m * (2 * t_ag + t_rs), 0.0)
    t_dp = grad_once + ag_once + z2 + z3
    if model.tie_embeddings:
        emb_bytes = model.vocab_size * model.hidden_size / utp * pmem.GRAD_BYTES
        u_inter = (utp * ucp * udp * upp) > dpn
        t_tied = np.where(upp > 1, _collectives(costing, "all_reduce", emb_bytes, 2, np.where(u_inter, 1, 2)),
                          0.0)[ginv]
    else:
        t_tied = np.zeros(len(tp))

    # ---- optimizer -----------------------------------------------------------------------------
    local = np.where(zero >= 1, dense_p / g + expert_p / ge, dense_p + expert_p)
    uniq, oinv = np.unique(np.round(local), return_inverse=True)
    opt_costs = np.array([costing.op(_optimizer_op(p, opts.optimizer_dtype)) for p in uniq.tolist()])
    t_opt = opt_costs[oinv.ravel(), 0]
    e_opt = opt_costs[oinv.ravel(), 1]

    latency = t_pipe + t_dp + t_tied + t_opt

    # ---- memory, throughput, energy, cost -----------------------------------------------------
    mem = pmem.training_memory(model, tp, pp, dp, ep, cp, mb, rc, zero, v, global_batch, seq, sp=sp,
                               unfused=unfused, dtype=opts.dtype, optimizer_dtype=opts.optimizer_dtype, mm=mm)
    mem_total = sum(mem.values())
    tokens = float(global_batch) * seq
    flops = model_flops_per_token(model, seq) * tokens
    peak = dev.peak_flops(opts.dtype)
    mfu = flops / (n * peak * latency)
    e_layer_d = D["e_fwd"] + D["e_bwd"] + np.where(is_sel, D["e_rc_sel"], 0.0) + np.where(is_full, D["e_fwd"], 0.0)
    e_layer_m = M["e_fwd"] + M["e_bwd"] + np.where(is_sel, M["e_rc_sel"], 0.0) + np.where(is_full, M["e_fwd"], 0.0)
    e_rank = n_moe * e_layer_m + n_dense * e_layer_d + E["e_emb"] + heads * E["e_head"]   # one tp-cp rank
    dynamic = m * e_rank * tp * cp * dp + e_opt * n
    idle, tdp = dev.power.idle, dev.power.tdp
    energy = np.minimum(dynamic + idle * n * latency, tdp * n * latency)
    price = dev.price.per_hour if dev.price else np.nan
    out = {
        "latency_s": latency, "tokens_per_s": tokens / latency, "mfu": mfu, "flops": np.full(len(tp), flops),
        "memory_per_device_bytes": mem_total, "fits": mem_total <= max_memory_fraction * dev.memory_bytes,
        "energy_j": energy, "cost_usd": n * price * latency / 3600.0, "num_gpus": n, "micro_batches": m,
    }
    for k, val in mem.items():
        out["mem_" + k] = val

    # ---- time breakdown along the critical stage (sums to the latency) -------------------------
    crit_first = multi & (first >= last)
    head_f, head_b = heads * E["head_fwd"], heads * E["head_bwd"]
    ends_f = np.where(multi, np.where(crit_first, E["emb_fwd"], head_f), E["emb_fwd"] + head_f)
    ends_b = np.where(multi, np.where(crit_first, E["emb_bwd"], head_b), E["emb_bwd"] + head_b)

    def per_stage(field, full_too=False):
        val = st_moe * M[field] + st_dense * D[field]
        if full_too:
            val = val + np.where(is_full, val, 0.0)
        return val

    mb_share = m * balanced   # a balanced layout's busiest rank, split in the even layout's proportions
    out["t_forward"] = mb_share * (per_stage("fwd") + ends_f)
    out["t_backward"] = mb_share * (per_stage("bwd") + ends_b)
    out["t_recompute"] = mb_share * (np.where(is_sel, per_stage("rc_sel"), 0.0)
                                     + np.where(is_full, per_stage("fwd"), 0.0))
    out["t_tp_comm"] = mb_share * (per_stage("tp_fwd", True) + per_stage("tp_bwd"))
    out["t_ep_comm"] = mb_share * (per_stage("ep_fwd", True) + per_stage("ep_bwd"))
    out["t_cp_comm"] = mb_share * (per_stage("cp_fwd", True) + per_stage("cp_bwd"))
    out["t_pp_p2p"] = m * p2p_mb
    out["t_pp_bubble"] = bubble
    out["t_dp_comm"] = t_dp + t_tied
    out["t_optimizer"] = t_opt
    return out


RC_CODE = pmem.RECOMPUTE_CODE


def _arrays(plan: Plan) -> dict[str, np.ndarray]:
    return {"tp": plan.tp, "pp": plan.pp, "dp": plan.dp, "ep": plan.ep, "cp": plan.cp, "mb": plan.micro_batch,
            "rc": RC_CODE[plan.recompute], "zero": plan.zero, "v": plan.interleave}


def _costing(model: ModelSpec, hardware: Hardware, profile, dtype: str, num_gpus: int) -> Costing:
    if isinstance(hardware, System):
        return Costing(model, hardware, profile, dtype)
    if isinstance(hardware, Device):
        if num_gpus > 1:
            raise InvalidInputError(f"hardware: {num_gpus} GPUs need a system (e.g. dgx-h100), got device "
                                    f"{hardware.name!r}")
        return Costing(model, _single(hardware), profile, dtype)
    raise InvalidInputError(f"hardware: {getattr(hardware, 'name', hardware)!r} is a link; give a system or a device")


def _single(device: Device) -> System:
    """A one-GPU 'system' around a device: no collective ever runs on it."""
    return _OneGpu(device)


class _OneGpu:
    """Duck-typed System of one device (devices_per_node 1, no links)."""

    single_device = True

    def __init__(self, device: Device):
        self.gpu = device
        self.name = device.name
        self.devices_per_node = 1
        self.max_nodes = 1


def _assumptions(costing: Costing, plan: Plan, task: str) -> list[str]:
    out = [f"cost model: {costing.cost_model}",
           f"GEMMs in {plan.dtype}; bf16 activations and gradients; Adam moments in {plan.optimizer_dtype}",
           "rank layout tp-cp-ep-dp-pp (Megatron-Core): TP inside a node when it fits, DP and PP across nodes"]
    if task == "train":
        out += [f"schedule {plan.schedule}: bubble (p-1)/(v m) of the ideal time; stage sends exposed",
                "TP collectives exposed except Megatron's default overlaps (input-gradient reduction under the "
                "weight-gradient GEMM, SP re-all-gather under the input-gradient GEMM)"
                + ("; all others hidden behind their GEMMs (tp_overlap)" if plan.tp_overlap else ""),
                f"MoE all-to-all ({plan.dispatcher}) " + ("hidden behind another micro-batch's compute, up to its "
                                                          "time (ep_overlap)" if plan.ep_overlap else "exposed"),
                "DP gradient reduction " + ("overlapped with the last micro-batch's backward, but for the last "
                                            "layer's bucket" if plan.dp_overlap else "after the backward pass (not "
                                            "overlapped)"),
                "attention: " + ("unfused (QK^T GEMM, softmax, dropout, PV GEMM)" if plan.attention == "unfused"
                                 else "fused FlashAttention"),
                "activations after Korthikanti et al. 2022 per stored tensor; memory is the larger of the first "
                "and last pipeline stage",
                "energy: dynamic energy of the ops plus idle power of every GPU over the step, capped at TDP; "
                "communication costs idle power only",
                "MFU: model FLOPs (6 N tokens + non-causal attention) over GPUs x dense peak"]
    else:
        out += ["TP all-reduce after attention and MLP (peer-memory custom all-reduce inside an NVLink domain, "
                "as TensorRT-LLM and vLLM; NCCL across nodes), EP all-to-all dispatch and combine, exposed",
                "a request walks the pipeline stages in turn; throughput assumes one request in flight per stage"]
    return out


def train_step(model: str | Path | ModelSpec, hardware: str | Path | Hardware, plan: Plan, global_batch: int,
               seq: int, profile: str | Path | None = "auto", max_memory_fraction: float = 1.0) -> ParallelEstimate:
    """One optimizer step of `global_batch` sequences of `seq` tokens trained under `plan` on `hardware`.

    model: name, path or ModelSpec; hardware: a system name or System (a device only for a 1-GPU plan).
    plan: perfsim.parallel.Plan(tp=, pp=, dp=, ep=, cp=, micro_batch=, recompute=, zero=, interleave=, ...);
    GPUs used = tp x cp x pp x dp. Raises InvalidInputError (one line, naming the field) for an invalid plan.
    Returns latency_s (the step), tokens_per_s, mfu, memory_per_device_bytes with memory_breakdown,
    fits_in_memory (<= max_memory_fraction of device memory), energy_j, time_breakdown, assumptions.
    """
    spec = load_model(model)
    hw = load_hardware(hardware)
    costing = _costing(spec, hw, profile, plan.dtype, plan.num_gpus)
    dev = costing.device
    if not isinstance(seq, int) or seq < 1:
        raise InvalidInputError(f"seq: training needs --seq >= 1 (tokens per sequence), got {seq!r}")
    if seq > spec.max_seq_len:
        raise InvalidInputError(f"seq: {seq} exceeds {spec.name}'s maximum sequence length {spec.max_seq_len}")
    check_plan(plan, spec, task="train", global_batch=global_batch, seq=seq,
               max_gpus=costing.dpn * getattr(costing.system, "max_nodes", 1), has_fp8="fp8" in dev.compute.peak)
    r = evaluate_train(costing, _arrays(plan), global_batch, seq, Options.of(plan), max_memory_fraction)
    return _estimate(spec, hw, plan, "train", global_batch, seq, None, r, costing)


def _estimate(spec, hw, plan, task, batch, seq, context, r, costing) -> ParallelEstimate:
    lat = float(r["latency_s"][0])
    mem = {k[4:]: float(v[0]) for k, v in r.items() if k.startswith("mem_")}
    total = float(r["memory_per_device_bytes"][0])
    energy = float(r["energy_j"][0])
    cost = float(r["cost_usd"][0])
    return ParallelEstimate(
        model=spec.name, hardware=getattr(hw, "name", str(hw)), task=task, num_gpus=plan.num_gpus,
        plan=plan.to_dict(), global_batch=batch, seq=seq, context=context,
        micro_batches=int(r["micro_batches"][0]) if "micro_batches" in r else 1,
        latency_s=lat, tokens_per_s=float(r["tokens_per_s"][0]), mfu=float(r["mfu"][0]), flops=float(r["flops"][0]),
        memory_per_device_bytes=total, memory_breakdown=mem, fits_in_memory=bool(r["fits"][0]), energy_j=energy,
        avg_power_w=energy / lat if lat else 0.0, cost_usd=None if np.isnan(cost) else cost,
        time_breakdown={k[2:]: float(v[0]) for k, v in r.items() if k.startswith("t_")},
        assumptions=_assumptions(costing, plan, task))


# ------------------------------------------------------------------------------------------------ inference
def evaluate_infer(costing: Costing, arrays: dict[str, np.ndarray], task: str, batch: int, seq: int | None,
                   context: int | None, max_memory_fraction: float = 1.0, kv_dtype: str | None = None,
                   mm: pmem.ModelMemory | None = None) -> dict[str, np.ndarray]:
    """Vectorised prefill/decode step over plans (tp, pp, dp, ep); batch is the total over dp replicas."""
    model, dev = costing.model, costing.device
    mm = mm or pmem.ModelMemory(model)
    tp, pp, dp, ep_given = (_i(arrays[k]) for k in ("tp", "pp", "dp", "ep"))
    ep, folded = expert_layout(tp, dp, 1, ep_given)
    n = tp * pp * dp
    dpn = costing.dpn
    per = batch // dp
    q = 1 if task == "decode" else seq
    kv_tokens = (context + 1) if task == "decode" else seq
    keys = np.stack([tp, per, ep, dp, folded], axis=1)
    uk, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    tab = np.zeros((len(uk), 12))
    for i, (t, b, e, d, f) in enumerate(uk.tolist()):
        group, stride = (e * t, 1) if f else (e, t)
        dense, moe, ends = costing.infer_layer(task, t, b, seq, context, e, d, a2a_group=group, a2a_stride=stride)
        size = b * q * model.hidden_size * 2.0
        tab[i] = (dense.fwd + dense.comm_fwd, moe.fwd + moe.comm_fwd, ends.emb_fwd, ends.head_fwd,
                  costing.p2p(size, False), costing.p2p(size, True), dense.e_fwd, moe.e_fwd, ends.e_emb + ends.e_head,
                  dense.flops_fwd, moe.flops_fwd, dense.tp_fwd + moe.tp_fwd)
    T = tab[inv]
    lt_d, lt_m, emb, head = T[:, 0], T[:, 1], T[:, 2], T[:, 3]
    inter = n > dpn
    t_p2p = np.where(inter, T[:, 5], T[:, 4])
    L, n_moe = model.num_layers, model.num_moe_layers
    lps = pmem.stage_layers(L, pp)
    st_moe = np.minimum(lps, n_moe)
    stage = st_moe * lt_m + (lps - st_moe) * lt_d
    t_max = np.where(pp > 1, np.maximum(stage + emb, stage + head), stage + emb + head)
    total = n_moe * lt_m + (L - n_moe) * lt_d + emb + head
    latency = total + (pp - 1) * t_p2p
    tokens = float(batch * q)
    throughput = tokens / np.where(pp > 1, t_max + t_p2p, latency)

    mem_rows = np.stack([tp, pp, ep, per], axis=1)
    mu, minv = np.unique(mem_rows, axis=0, return_inverse=True)
    parts = [pmem.inference_memory(model, int(t), int(p), int(e), int(b), kv_tokens, q, dtype=costing.dtype,
                                   kv_dtype=kv_dtype, mm=mm) for t, p, e, b in mu.tolist()]
    names = list(parts[0])
    mem = {k: np.array([pt[k] for pt in parts])[minv.ravel()] for k in names}
    mem_total = sum(mem.values())
    flops_rank = n_moe * T[:, 10] + (L - n_moe) * T[:, 9]
    flops = flops_rank * tp * dp
    peak = dev.peak_flops(costing.dtype)
    e_rank = n_moe * T[:, 7] + (L - n_moe) * T[:, 6] + T[:, 8]
    dynamic = e_rank * tp * dp
    energy = np.minimum(dynamic + dev.power.idle * n * latency, dev.power.tdp * n * latency)
    price = dev.price.per_hour if dev.price else np.nan
    out = {"latency_s": latency, "tokens_per_s": throughput, "mfu": flops / (n * peak * latency), "flops": flops,
           "memory_per_device_bytes": mem_total, "fits": mem_total <= max_memory_fraction * dev.memory_bytes,
           "energy_j": energy, "cost_usd": n * price * latency / 3600.0, "num_gpus": n}
    for k, val in mem.items():
        out["mem_" + k] = val
    tp_comm = L * T[:, 11]
    out["t_compute"] = latency - tp_comm - (pp - 1) * t_p2p
    out["t_tp_ep_comm"] = tp_comm
    out["t_pp_p2p"] = (pp - 1) * t_p2p
    return out


def infer_step(model: str | Path | ModelSpec, hardware: str | Path | Hardware, plan: Plan, task: str, batch: int,
               seq: int | None = None, context: int | None = None, profile: str | Path | None = "auto",
               max_memory_fraction: float = 1.0, kv_dtype: str | None = None) -> ParallelEstimate:
    """One prefill (task='prefill', `seq` tokens per sequence) or decode step (task='decode', `context` cached
    tokens) of `batch` sequences over the plan's tp x pp x dp GPUs (ep divides dp; dp replicas share the batch).
    """
    spec = load_model(model)
    hw = load_hardware(hardware)
    if task not in ("prefill", "decode"):
        raise InvalidInputError(f"task: got {task!r}; accepted: prefill, decode (use train_step for training)")
    costing = _costing(spec, hw, profile, plan.dtype, plan.num_gpus)
    check_plan(plan, spec, task=task, global_batch=batch, seq=seq,
               max_gpus=costing.dpn * getattr(costing.system, "max_nodes", 1),
               has_fp8="fp8" in costing.device.compute.peak)
    from perfsim import graph as graphs
    graphs.workload(spec, task, max(1, batch // plan.dp), seq=seq, context=context, tp=plan.tp)  # validates seq/context
    r = evaluate_infer(costing, {"tp": plan.tp, "pp": plan.pp, "dp": plan.dp, "ep": plan.ep}, task, batch, seq,
                       context, max_memory_fraction, kv_dtype)
    return _estimate(spec, hw, plan, task, batch, seq, context, r, costing)


def predict_parallel(model: str | Path | ModelSpec, hardware: str | Path | Hardware, task: str,
                     num_gpus: int | None = None, tp: int = 1, pp: int = 1, dp: int | None = None, ep: int = 1,
                     cp: int = 1,
                     global_batch: int = 1, micro_batch: int = 1, seq: int | None = None,
                     context: int | None = None, recompute: str = "none", zero: int = 0, interleave: int = 1,
                     dtype: str | None = None, profile: str | Path | None = "auto", **options) -> ParallelEstimate:
    """`perfsim predict` over several GPUs: build the Plan from CLI-style degrees and run train_step (task
    'train': latency_s is one optimizer step of global_batch sequences) or infer_step ('prefill' | 'decode':
    one step of global_batch sequences). dp defaults to num_gpus / (tp x pp x cp), num_gpus to
    tp x pp x cp x dp (dp default 1); dtype defaults as ModelSpec.run_dtype says; options are further Plan fields
    (sequence_parallel, tp_overlap, dp_overlap, ep_overlap, dispatcher, attention, optimizer_dtype, stage_layout)."""
    dtype = load_model(model).run_dtype(task, dtype)
    if num_gpus is None:
        num_gpus = tp * pp * cp * (dp or 1) if all(isinstance(x, int) for x in (tp, pp, cp, dp or 1)) else 0
    for name, v in (("num_gpus", num_gpus), ("tp", tp), ("pp", pp), ("cp", cp)):
        check_int(name, v)
    if dp is None:
        if num_gpus % (tp * pp * cp):
            raise InvalidInputError(f"num_gpus: {num_gpus} is not a multiple of tp x pp x cp = {tp} x {pp} x {cp}")
        dp = num_gpus // (tp * pp * cp)
    plan = Plan(tp=tp, pp=pp, dp=dp, ep=ep, cp=cp, micro_batch=micro_batch, recompute=recompute, zero=zero,
                interleave=interleave, dtype=dtype, **options)
    if plan.num_gpus != num_gpus:
        raise InvalidInputError(f"num_gpus: tp x cp x pp x dp = {tp} x {cp} x {pp} x {dp} = {plan.num_gpus}, "
                                f"but --num-gpus is {num_gpus}")
    if task == "train":
        if seq is None:
            raise InvalidInputError("seq: training needs --seq (tokens per sequence)")
        return train_step(model, hardware, plan, global_batch, seq, profile=profile)
    return infer_step(model, hardware, plan, task, global_batch, seq=seq, context=context, profile=profile)
