"""Per-layer costs of a parallel plan, each distinct operator shape costed once.

A plan's step time is composed from a few per-layer quantities that depend only on (tp, micro-batch, cp, ep)
and the plan's options: the forward and backward compute of one decoder layer (dense and MoE kinds), the
recomputation it adds, and the communication it exposes. `Costing` builds the ops of one layer with
perfsim.graph's builder (the same shapes `perfsim predict` costs), prices each distinct op once through
perfsim.op_time (calibrated profile of the device when there is one), and caches every table, so a search
over a hundred thousand plans costs a few hundred operators.

Communication per layer (Korthikanti et al. 2022, Sec. 4.2.2; Narayanan et al. 2021):
  tensor parallel, no SP   fwd: all-reduce after the attention and MLP output projections (exposed)
                           bwd: all-reduce of the input gradient of the QKV and MLP-up projections, overlapped
                                with their weight-gradient GEMMs (Megatron's async all-reduce)
  tensor parallel with SP  fwd: all-gather before QKV / MLP-up, reduce-scatter after the output projections
                           bwd: reduce-scatter of the input gradients (under the weight-gradient GEMMs), all-gather
                                of the output-projection gradients (exposed), and the re-all-gather of the
                                QKV / MLP-up inputs for their weight gradients (under the input-gradient GEMMs)
  tp_overlap               every TP collective hidden behind its neighbouring GEMM, up to that GEMM's time
  expert parallel          all-to-all dispatch and combine per MoE layer, forward and backward (exposed; with
                           ep_overlap hidden behind the layer's compute of another micro-batch, as DualPipe does)
  context parallel         ring attention: cp-1 exchanges of the K/V chunk per layer forward, of K/V and their
                           gradients backward, each overlapped with the attention of the previous chunk
An exposed collective adds its time; an overlapped one adds max(0, t_comm - t_compute it hides under).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from perfsim import graph as graphs
from perfsim.calibrate.profile import resolve
from perfsim.cost.comm import collective_time
from perfsim.costmodel import op_time
from perfsim.hardware import Device, System
from perfsim.model import ModelSpec
from perfsim.ops import (
    Attention,
    Collective,
    Elementwise,
    Embedding,
    Gemm,
    IndexerScores,
    LinearRecurrence,
    MoEExperts,
    Op,
    a2a_elem_bytes,
    dispatch_bytes,
    nodes_reached,
    ranks_reached,
)

# SMs DeepEP's all-to-all kernels occupy while they overlap computation (DeepSeek-V3 Technical Report, Sec. 3.2.2:
# 20 of the H800's 132 SMs suffice to saturate InfiniBand and NVLink)
DEEPEP_SMS = 20

RESIDUAL_OPS = ("input_norm", "attn_residual_add", "post_attn_norm", "mlp_residual_add", "post_mixer_norm",
                "post_mlp_norm")


def per_node(stride: int, group: int, devices_per_node: int) -> int:
    """Devices of a group of `group` ranks spaced `stride` apart that share one node."""
    if stride >= devices_per_node:
        return 1
    return max(1, min(group, devices_per_node // stride))


@dataclass
class LayerCost:
    """Seconds and joules of one decoder layer (one kind: dense or MoE) for one micro-batch on one rank."""
    fwd: float = 0.0          # forward compute
    bwd: float = 0.0          # backward compute (input and weight gradients)
    rc_sel: float = 0.0       # compute that selective recomputation adds (the attention core again)
    comm_fwd: float = 0.0     # exposed communication, forward
    comm_bwd: float = 0.0     # exposed communication, backward
    tp_fwd: float = 0.0       # of which tensor-parallel
    tp_bwd: float = 0.0
    ep_fwd: float = 0.0       # of which expert-parallel all-to-all
    ep_bwd: float = 0.0
    cp_fwd: float = 0.0       # of which context-parallel ring exchange
    cp_bwd: float = 0.0
    e_fwd: float = 0.0        # dynamic energy, forward
    e_bwd: float = 0.0
    e_rc_sel: float = 0.0
    flops_fwd: float = 0.0


@dataclass
class EndsCost:
    """Embedding (first stage) and head + loss (last stage) for one micro-batch on one rank."""
    emb_fwd: float = 0.0
    emb_bwd: float = 0.0
    head_fwd: float = 0.0
    head_bwd: float = 0.0
    e_emb: float = 0.0
    e_head: float = 0.0


@dataclass
class Costing:
    """Op and collective costs of one model on one system, cached."""
    model: ModelSpec
    system: System
    profile: object = "auto"
    dtype: str = "bf16"
    _ops: dict = field(default_factory=dict, repr=False)
    _colls: dict = field(default_factory=dict, repr=False)
    _layers: dict = field(default_factory=dict, repr=False)
    _kinds: list | None = field(default=None, repr=False)
    _fb: dict = field(default_factory=dict, repr=False)
    _fwd: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.device: Device = self.system.gpu
        self.prof = resolve(self.profile, self.device.name)
        self.dpn = self.system.devices_per_node
        # collectives use the profile's fitted NCCL parameters when it has them (as perfsim.op_time does)
        self.comm_params = getattr(self.prof.params, "comm", None) if self.prof is not None else None

    @property
    def cost_model(self) -> str:
        if self.prof is None:
            return "roofline (no calibration profile for this device)"
        return f"calibrated profile of {self.prof.device}" if getattr(self.prof, "device", "") else "calibrated"

    # ---- primitive costs -------------------------------------------------------------------------
    def op(self, op: Op) -> tuple[float, float]:
        """(seconds, dynamic joules) of one op; the op's name does not change its cost."""
        hit = self._ops.get(op)
        if hit is None:
            key = replace(op, name="op")
            hit = self._ops.get(key)
            if hit is None:
                c = op_time(key, self.device, self.prof)
                hit = self._ops[key] = (c.time_s, c.energy_j)
            self._ops[op] = hit
        return hit

    def op_fb(self, op: Op) -> tuple[float, float, float, float, float, float]:
        """(fwd s, fwd J, bwd s, bwd J, first gradient op s, second gradient op s) of one op, cached."""
        hit = self._fb.get(op)
        if hit is None:
            t, e = self.op(op)
            grads = [self.op(g) for g in graphs._gradient_ops(op)]
            hit = self._fb[op] = (t, e, sum(g[0] for g in grads), sum(g[1] for g in grads),
                                  grads[0][0] if grads else 0.0, grads[1][0] if len(grads) > 1 else 0.0)
        return hit

    def coll(self, collective: str, size_bytes: float, group: int, devices_per_node: int | None = None,
             implementation: str = "nccl") -> float:
        """Seconds of one collective over `group` ranks, `devices_per_node` of them per node (NCCL by default;
        'trtllm' is the peer-memory custom all-reduce inside one NVLink domain, NCCL elsewhere)."""
        if group <= 1 or size_bytes <= 0 or getattr(self.system, "single_device", False):
            return 0.0
        dpn = min(group, devices_per_node or self.dpn, self.dpn)
        key = (collective, float(size_bytes), int(group), int(dpn), implementation)
        hit = self._colls.get(key)
        if hit is None:
            hit = self._colls[key] = collective_time(collective, size_bytes, group, self.system,
                                                     params=self.comm_params, implementation=implementation,
                                                     devices_per_node=dpn)
        return hit

    def p2p(self, size_bytes: float, inter_node: bool) -> float:
        return self.coll("send_recv", size_bytes, 2, 1 if inter_node else 2)

    # ---- layer kinds -----------------------------------------------------------------------------
    def kinds(self) -> list[tuple[int, bool, int]]:
        """(representative layer index, is MoE, layer count) per distinct layer kind (window x mixer x MLP)."""
        if self._kinds is None:
            m, groups = self.model, {}
            for i in range(m.num_layers):
                key = (i < m.sliding_layers, m.mixer(i), m.mlp_kind(i))
                if key not in groups:
                    groups[key] = [i, 0]
                groups[key][1] += 1
            self._kinds = [(i, key[2] == "moe", n) for key, (i, n) in groups.items()]
        return self._kinds

    def _forward_ops(self, task: str, batch: int, seq: int | None, context: int | None, tp: int, layer: int,
                     ep: int, sp: bool, unfused: bool) -> list[Op]:
        key = (task, batch, seq, context, tp, layer, sp, unfused)
        ops = self._fwd.get(key)
        if ops is None:
            ops = self._fwd[key] = self._build_forward_ops(task, batch, seq, context, tp, layer, sp, unfused)
        if ep > 1 and self.model.moe:
            # tokens of the ep data-parallel replicas meet on the experts this rank holds; the all-to-all delivers
            # only their routes here, so the routing and permutation passes read this rank's own tokens
            E = self.model.moe.num_experts
            ops = [replace(op, tokens=op.tokens * ep, num_experts=E // ep, scanned_tokens=op.tokens)
                   if isinstance(op, MoEExperts) else op for op in ops]
        return ops

    def _build_forward_ops(self, task, batch, seq, context, tp, layer, sp, unfused) -> list[Op]:
        w = graphs.workload(self.model, task, batch, seq=seq, context=context, dtype=self.dtype, tp=tp)
        b = graphs._Builder(self.model, w)
        b.layer(layer)
        ops: list[Op] = []
        for _, _, op in b.forward:
            if isinstance(op, Collective):
                continue   # communication is priced by the plan's own rules
            if sp and op.name in RESIDUAL_OPS and isinstance(op, Elementwise):
                op = replace(op, elements=max(1, op.elements // tp))
            if isinstance(op, Attention) and unfused and not isinstance(op, IndexerScores):
                ops.extend(_unfused_attention(op))
                continue
            ops.append(op)
        return ops

    # ---- training layer table ------------------------------------------------------------------
    def train_layer(self, tp: int, micro_batch: int, cp: int, ep: int, seq: int, sp: bool, tp_overlap: bool,
                    unfused: bool, a2a_group: int | None = None, a2a_stride: int | None = None,
                    ep_overlap: bool = False, dispatcher: str = "alltoall") -> tuple[LayerCost, LayerCost]:
        """(dense, MoE) per-layer costs for one micro-batch of `micro_batch` sequences of `seq` tokens.

        ep: the data-parallel expert split (expert_layout's ep_data); a2a_group / a2a_stride: the ranks of the
        all-to-all and their spacing (default ep ranks spaced tp x cp apart)."""
        a2a_group = ep if a2a_group is None else a2a_group
        a2a_stride = tp * cp if a2a_stride is None else a2a_stride
        key = ("train", tp, micro_batch, cp, ep, seq, sp, tp_overlap, unfused, a2a_group, a2a_stride, ep_overlap,
               dispatcher)
        hit = self._layers.get(key)
        if hit is not None:
            return hit
        sums = {False: [LayerCost(), 0], True: [LayerCost(), 0]}
        for index, is_moe, count in self.kinds():
            a2a = (a2a_group, a2a_stride) if is_moe else (1, 1)
            kkey = ("kind", tp, micro_batch, cp, ep if is_moe else 1, seq, sp, tp_overlap, unfused, index) + a2a \
                + (ep_overlap, dispatcher)
            c = self._layers.get(kkey)
            if c is None:
                c = self._layers[kkey] = self._train_layer_kind(tp, micro_batch, cp, ep if is_moe else 1, seq, sp,
                                                                tp_overlap, unfused, index, *a2a, ep_overlap,
                                                                dispatcher)
            _accumulate(sums[is_moe], c, count)
        out = [_mean(sums[False]), _mean(sums[True])]
        hit = self._layers[key] = (out[0], out[1])
        return hit

    def _train_layer_kind(self, tp, b, cp, ep, seq, sp, tp_overlap, unfused, index, a2a_group,
                          a2a_stride, ep_overlap=False, dispatcher="alltoall") -> LayerCost:
        m = self.model
        s_loc = seq // cp
        fwd_ops = self._forward_ops("train", b, s_loc, None, tp, index, ep, sp, unfused)
        c = LayerCost()
        roles = {"attn_in": [0.0, 0.0, 0.0], "attn_out": [0.0, 0.0, 0.0], "mlp_in": [0.0, 0.0, 0.0],
                 "mlp_out": [0.0, 0.0, 0.0]}   # (fwd, dgrad, wgrad) seconds of the GEMMs next to TP collectives
        attn_fwd = attn_bwd = 0.0
        seen_attention = m.mixer(index) is None   # an MLP-only layer: its GEMMs sit at the MLP's collectives
        for op in fwd_ops:
            scale = 1.0
            core = isinstance(op, Attention) or op.name.startswith("attn_core")
            if isinstance(op, Attention):
                # ring attention: each rank scores its chunk against the whole sequence, load-balanced
                op = replace(op, q_len=seq, kv_len=seq)
                scale = 1.0 / cp
                seen_attention = True
            if op.name == "attn_core_pv" or isinstance(op, LinearRecurrence):
                seen_attention = True
            t, e, tb, eb, g0, g1 = self.op_fb(op)
            t, e, tb, eb = t * scale, e * scale, tb * scale, eb * scale
            c.fwd += t
            c.e_fwd += e
            c.bwd += tb
            c.e_bwd += eb
            c.flops_fwd += op.flops * scale
            if core:
                c.rc_sel += t
                c.e_rc_sel += e
                attn_fwd += t
                attn_bwd += tb
            if isinstance(op, Gemm) and not core:
                role = _role(op.name, seen_attention)
                if role:
                    r = roles[role]
                    r[0] += t
                    r[1] += g0
                    r[2] += g1
            if isinstance(op, MoEExperts):
                for role in ("mlp_in", "mlp_out"):
                    r = roles[role]
                    r[0] += t / 2
                    r[1] += tb / 4
                    r[2] += tb / 4

        is_moe = m.is_moe_layer(index)
        if tp > 1:
            S = s_loc * b * m.hidden_size * 2.0      # one activation tensor of the residual stream, bf16
            d = per_node(1, tp, self.dpn)
            ag, rs, ar = (self.coll(k, S, tp, d) for k in ("all_gather", "reduce_scatter", "all_reduce"))

            def hide(comm, under, always=False):
                return max(0.0, comm - under) if (tp_overlap or always) else comm

            fwd = bwd = 0.0
            for block, present in (("attn", m.mixer(index) is not None), ("mlp", m.mlp_kind(index) is not None)):
                if not present:   # a one-block layer of a layer pattern
                    continue
                into, out = roles[f"{block}_in"], roles[f"{block}_out"]
                if sp:
                    fwd += hide(ag, into[0]) + hide(rs, out[0])
                    bwd += hide(rs, into[2], True) + hide(ag, out[1]) + hide(ag, into[1], True)
                else:
                    fwd += hide(ar, out[0])
                    bwd += hide(ar, into[2], True)
            c.tp_fwd, c.tp_bwd = fwd, bwd
        if is_moe and a2a_group > 1:
            mo = m.moe
            d = per_node(a2a_stride, a2a_group, self.dpn)
            if dispatcher == "deepep":
                tokens = s_loc * b / (tp if sp else 1)
                dispatch = self.deepep_all_to_all(tokens, a2a_group, d, 1.0 if self.dtype == "fp8" else 2.0)
                combine = self.deepep_all_to_all(tokens, a2a_group, d, 2.0)
                fwd, bwd = dispatch + combine, 2 * combine   # gradients travel in bf16
            else:
                size = dispatch_bytes(s_loc * b, mo.top_k, mo.num_experts, m.hidden_size, ep, "train") \
                    / (tp if sp else 1)
                fwd = bwd = 2 * self.coll("all_to_all", size, a2a_group, d)   # dispatch and combine
            if dispatcher == "deepep" and ep_overlap:
                # DeepEP's kernels hold their SMs while the paired micro-batch computes on the rest
                share = self.device.compute.units / max(1.0, self.device.compute.units - DEEPEP_SMS)
                c.fwd, c.bwd, c.rc_sel = c.fwd * share, c.bwd * share, c.rc_sel * share
            # overlapped: under the same layer's compute of the paired micro-batch
            c.ep_fwd = max(0.0, fwd - c.fwd) if ep_overlap else fwd
            c.ep_bwd = max(0.0, bwd - c.bwd) if ep_overlap else bwd
        if cp > 1 and m.mixer(index) == "attention":
            kv_rank = max(1, m.kv_heads // tp) if not m.mla else m.num_heads // tp
            width = (m.qk_head_dim + m.v_head_dim) if m.mla else 2 * m.dim_head
            chunk = s_loc * b * kv_rank * width * 2.0
            inter = tp * cp > self.dpn
            step = self.p2p(chunk, inter)
            step2 = self.p2p(2 * chunk, inter)
            c.cp_fwd = max(0.0, (cp - 1) * step - attn_fwd * (cp - 1) / cp)
            c.cp_bwd = max(0.0, (cp - 1) * step2 - attn_bwd * (cp - 1) / cp)
        c.comm_fwd = c.tp_fwd + c.ep_fwd + c.cp_fwd
        c.comm_bwd = c.tp_bwd + c.ep_bwd + c.cp_bwd
        return c

    def deepep_all_to_all(self, tokens: float, group: int, per_node_ranks: int, elem_bytes: float) -> float:
        """One DeepEP dispatch (or combine) of `tokens` tokens over `group` ranks, `per_node_ranks` per node: each
        token crosses the network once per other node holding any of its experts (node-limited routing where the
        model has route groups), then NVLink once per rank holding any of them."""
        mo, h = self.model.moe, self.model.hidden_size
        ranks = ranks_reached(mo.top_k, mo.num_experts, group)
        nvlink = self.coll("all_to_all", tokens * ranks * h * elem_bytes, per_node_ranks, per_node_ranks)
        nodes = group // per_node_ranks
        if nodes <= 1:
            return nvlink
        remote = nodes_reached(mo.top_k, mo.num_experts, nodes, mo.route_groups, mo.route_group_limit) \
            * (1.0 - 1.0 / nodes)
        # the network carries (group - per_node) / group of an all-to-all's bytes: the size whose share is `remote`
        size = tokens * remote * h * elem_bytes * group / (group - per_node_ranks)
        return max(nvlink, self.coll("all_to_all", size, group, per_node_ranks))

    def train_ends(self, tp: int, micro_batch: int, cp: int, seq: int, sp: bool) -> EndsCost:
        """Embedding and head + cross-entropy for one micro-batch, with their TP collectives."""
        key = ("ends", tp, micro_batch, cp, seq, sp)
        hit = self._layers.get(key)
        if hit is not None:
            return hit
        m = self.model
        s_loc = seq // cp
        w = graphs.workload(m, "train", micro_batch, seq=s_loc, dtype=self.dtype, tp=tp)
        bld = graphs._Builder(m, w)
        bld.add(Embedding(tokens=w.tokens, hidden=m.hidden_size, dtype=bld.act_dtype, name="embedding"))
        bld.head()
        e = EndsCost()
        for _, _, op in bld.forward:
            if sp and op.name == "final_norm":
                op = replace(op, elements=max(1, op.elements // tp))
            t, en = self.op(op)
            grads = [self.op(g) for g in graphs._gradient_ops(op)]
            tb, eb = sum(x[0] for x in grads), sum(x[1] for x in grads)
            if isinstance(op, Embedding):
                e.emb_fwd += t
                e.emb_bwd += tb
                e.e_emb += en + eb
            else:
                e.head_fwd += t
                e.head_bwd += tb
                e.e_head += en + eb
        if tp > 1:
            S = s_loc * micro_batch * m.hidden_size * 2.0
            d = per_node(1, tp, self.dpn)
            if sp:   # embedding output reduce-scattered, head input all-gathered; conjugates backward
                e.emb_fwd += self.coll("reduce_scatter", S, tp, d)
                e.emb_bwd += self.coll("all_gather", S, tp, d)
                e.head_fwd += self.coll("all_gather", S, tp, d)
                e.head_bwd += self.coll("reduce_scatter", S, tp, d)
            else:    # vocab-parallel embedding all-reduce; head input-gradient all-reduce
                e.emb_fwd += self.coll("all_reduce", S, tp, d)
                e.head_bwd += self.coll("all_reduce", S, tp, d)
        self._layers[key] = e
        return e

    # ---- inference layer table -----------------------------------------------------------------
    def infer_layer(self, task: str, tp: int, batch: int, seq: int | None, context: int | None, ep: int,
                    dp: int, implementation: str = "trtllm", a2a_group: int | None = None,
                    a2a_stride: int | None = None) -> tuple[LayerCost, LayerCost, EndsCost]:
        """(dense, MoE, ends) forward costs of one prefill or decode step of `batch` sequences per replica."""
        a2a_group = ep if a2a_group is None else a2a_group
        a2a_stride = tp if a2a_stride is None else a2a_stride
        key = ("infer", task, tp, batch, seq, context, ep, dp, implementation, a2a_group, a2a_stride)
        hit = self._layers.get(key)
        if hit is not None:
            return hit
        m = self.model
        sums = {False: [LayerCost(), 0], True: [LayerCost(), 0]}
        q = 1 if task == "decode" else seq
        tokens = batch * q
        for index, is_moe, count in self.kinds():
            c = LayerCost()
            for op in self._forward_ops(task, batch, seq, context, tp, index, ep, False, False):
                t, e = self.op(op)
                c.fwd += t
                c.e_fwd += e
                c.flops_fwd += op.flops
            if tp > 1:
                c.tp_fwd = m.blocks(index) * self.coll("all_reduce", tokens * m.hidden_size * 2.0, tp,
                                                       per_node(1, tp, self.dpn), implementation)
            if is_moe and a2a_group > 1:
                c.ep_fwd = sum(self.coll("all_to_all", dispatch_bytes(tokens, m.moe.top_k, m.moe.num_experts,
                                                                      m.hidden_size, ep, task, b),
                                         a2a_group, per_node(a2a_stride, a2a_group, self.dpn))
                               for b in a2a_elem_bytes(self.dtype, task))   # dispatch and combine
            c.comm_fwd = c.tp_fwd + c.ep_fwd
            _accumulate(sums[is_moe], c, count)
        out = [_mean(sums[False]), _mean(sums[True])]
        w = graphs.workload(m, task, batch, seq=seq, context=context, dtype=self.dtype, tp=tp)
        bld = graphs._Builder(m, w)
        bld.add(Embedding(tokens=w.tokens, hidden=m.hidden_size, dtype=bld.act_dtype, name="embedding"))
        bld.head()
        ends = EndsCost()
        for _, _, op in bld.forward:
            t, e = self.op(op)
            if isinstance(op, Embedding):
                ends.emb_fwd += t
                ends.e_emb += e
            else:
                ends.head_fwd += t
                ends.e_head += e
        if tp > 1:
            ends.emb_fwd += self.coll("all_reduce", tokens * m.hidden_size * 2.0, tp, per_node(1, tp, self.dpn),
                                      implementation)
        hit = self._layers[key] = (out[0], out[1], ends)
        return hit


def _role(name: str, after_attention: bool) -> str | None:
    """Which TP collective a GEMM sits next to: the column-parallel inputs or the row-parallel outputs."""
    if name in ("router", "lm_head"):
        return None
    if not after_attention:
        return "attn_in"
    if name == "o_proj" or name == "mla_v_up":
        return "attn_out"
    if name.endswith("_up"):
        return "mlp_in"
    if name.endswith("_down"):
        return "mlp_out"
    return None


def _unfused_attention(op: Attention) -> list[Op]:
    """Megatron's 2022 attention core: QK^T batched GEMM, fused scale-mask-softmax, dropout, PV batched GEMM.

    The full s x s score matrix is computed (the causal mask is applied, not skipped); dropout writes its
    output and a one-byte mask (half a bf16 element).
    """
    heads = op.batch * op.num_heads
    scores = heads * op.q_len * op.kv_len
    return [
        Gemm(m=op.q_len, n=op.kv_len, k=op.head_dim, batch=heads, dtype=op.dtype, name="attn_core_qk"),
        Elementwise(elements=scores, reads=1, writes=1, flops_per_element=5, dtype="bf16", op_kind="softmax",
                    name="attn_core_softmax"),
        Elementwise(elements=scores, reads=1, writes=1.5, flops_per_element=2, dtype="bf16", op_kind="elementwise",
                    name="attn_core_dropout"),
        Gemm(m=op.q_len, n=op.dv, k=op.kv_len, batch=heads, dtype=op.dtype, name="attn_core_pv"),
    ]


def _accumulate(acc: list, layer, count: float) -> None:
    """Add `count` layers' costs to a running [sum, count] pair of one layer kind (dense or MoE)."""
    for name in layer.__dataclass_fields__:
        setattr(acc[0], name, getattr(acc[0], name) + count * getattr(layer, name))
    acc[1] += count


def _mean(acc: list):
    """The mean layer of a running [sum, count] pair (the sum itself when no layer was added)."""
    total, n = acc
    if n:
        for name in total.__dataclass_fields__:
            setattr(total, name, getattr(total, name) / n)
    return total
