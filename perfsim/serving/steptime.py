"""Step-time model of one serving engine, tabulated once from the cost model and interpolated per step.

One engine step (a forward pass of a continuous-batching server) on one GPU rank takes

  t = t_gpu (+) t_host(n + prompts),
  t_gpu = lin(T) + head(S) + attn_dec(n, c) + sum_j attn_pre(q_j, kv_j) + t_p2p(T)

  lin(T)        every op whose size grows with the T tokens of the step (GEMMs, MoE experts, norms,
                collectives, linear attention: one state per decoding sequence, one chunked prompt in a
                prefill), summed over the layers: from the operator graph of the model, costed by
                perfsim.op_time (the calibrated model where a profile applies) at T on a geometric grid
  head(S)       final norm + LM head for the S sequences that sample a token
  attn_dec      decode attention of n sequences at mean context c (2-D table over n and c)
  attn_pre      prefill attention of one chunk of q new tokens whose last key is kv (2-D table)
  t_p2p         pipeline parallel: (pp - 1) activation sends of T x hidden between stages
  t_host        the engine's host overhead per step and per sequence in it (perfsim.serving.host), added to
                t_gpu, or overlapped with it (max) when the engine schedules asynchronously

With speculative decoding (perfsim.serving.speculative, k draft tokens) each decoding sequence puts 1 + k
tokens through lin and head, and the draft module adds k x (lin(n) / layers + attn_dec(n, c) / layers +
head(n)); attention verifies the 1 + k queries in one pass over the KV cache: the cache is read once and each
query does its dot products, a decode step with (1 + k) x the query heads per KV head (as FlashMLA and
TensorRT-LLM's speculative XQA pack them; MLA's absorbed attention, many heads on one latent, turns compute
bound with them).

and the same sums of the ops' dynamic energy give the step's switching energy per GPU. Between grid
points values are linear in the table's coordinates (op times are close to affine between them).

Parallel layout of a replica (aiconfigurator's convention): attention runs tensor parallel over `tp`
GPUs, `attn_dp` such groups side by side each holding its own sequences (attention data parallel, as
DeepSeek serves MLA), so tp x attn_dp GPUs per pipeline stage; the MoE experts are split over
ep x moe_tp of the same GPUs (moe_tp = tp x attn_dp / ep). A rank's MoE experts see the tokens of
all attn_dp groups (all-to-all dispatch), so its expert op runs on T x attn_dp tokens.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from perfsim import graph as graphs
from perfsim.cost.memory import weight_bytes
from perfsim.costmodel import op_time
from perfsim.dtypes import activation_dtype, check
from perfsim.errors import InvalidInputError, check_int
from perfsim.hardware import Device, Hardware, System, load_device, load_hardware
from perfsim.model import ModelSpec, load_model
from perfsim.ops import (
    Attention,
    Collective,
    Elementwise,
    Embedding,
    Gemm,
    LinearRecurrence,
    MoEExperts,
    Op,
    a2a_elem_bytes,
    dispatch_bytes,
)
from perfsim.serving.host import HostOverhead
from perfsim.serving.speculative import Speculation

# A prime that no model dimension equals: the graph is built once at this token count and each op's
# token dimension is found by it and rescaled (no graph rebuild per grid point).
TOKEN_PROBE = 997
HEAD_OPS = ("final_norm", "lm_head")


@dataclass(frozen=True)
class Deployment:
    """One model replica's parallel layout on a system (or a single device)."""
    model: ModelSpec
    hardware: Hardware
    tp: int = 1
    ep: int = 1
    pp: int = 1
    attn_dp: int = 1
    dtype: str = "bf16"
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    state_dtype: str = "fp32"   # linear-recurrence states

    @property
    def device(self) -> Device:
        return load_device(self.hardware)

    @property
    def system(self) -> System | None:
        return self.hardware if isinstance(self.hardware, System) else None

    @property
    def gpus(self) -> int:
        """GPUs of one replica."""
        return self.tp * self.attn_dp * self.pp

    @property
    def ranks_per_stage(self) -> int:
        return self.tp * self.attn_dp

    @property
    def moe_tp(self) -> int:
        return self.ranks_per_stage // self.ep

    @property
    def act_dtype(self) -> str:
        return activation_dtype(self.dtype)

    @property
    def kv_dtype_eff(self) -> str:
        return self.kv_dtype or self.act_dtype

    def weight_bytes_per_gpu(self) -> float:
        # dense weights split over tp (replicated over attn_dp), routed experts over all ranks of a stage
        return weight_bytes(self.model, self.dtype, self.tp, self.attn_dp, self.weight_dtype) / self.pp

    def label(self) -> str:
        parts = [f"tp{self.tp}"]
        if self.attn_dp > 1:
            parts.append(f"adp{self.attn_dp}")
        if self.ep > 1:
            parts.append(f"ep{self.ep}")
        if self.pp > 1:
            parts.append(f"pp{self.pp}")
        return "-".join(parts)


def make_deployment(model: str | ModelSpec, hardware: str | Hardware, tp: int = 1, ep: int = 1, pp: int = 1,
                    attn_dp: int | None = None, dtype: str | None = None, weight_dtype: str | None = None,
                    kv_dtype: str | None = None, state_dtype: str = "fp32") -> Deployment:
    """Validate a layout; errors name the flag. attn_dp defaults to ep / tp when a MoE model has ep > tp; dtype to
    the model's checkpoint format."""
    spec = load_model(model)
    hw = load_hardware(hardware)
    dtype = check(spec.run_dtype("serve", dtype), "dtype")
    graphs.check_state_dtype(state_dtype)
    for name, v in (("tp", tp), ("ep", ep), ("pp", pp)):
        check_int(name, v)
    graphs.check_split(spec, tp, ep)
    if attn_dp is None:
        attn_dp = ep // tp if (spec.moe and ep > tp) else 1
    if attn_dp < 1:
        raise InvalidInputError(f"attention-dp: must be >= 1, got {attn_dp!r}")
    if (tp * attn_dp) % ep:
        raise InvalidInputError(f"ep: {ep} must divide tp x attention-dp = {tp * attn_dp} (the GPUs of a stage)")
    if pp > spec.num_layers:
        raise InvalidInputError(f"pp: {pp} exceeds the {spec.num_layers} layers of {spec.name}")
    dep = Deployment(spec, hw, tp, ep, pp, attn_dp, dtype, weight_dtype, kv_dtype, state_dtype)
    if dep.gpus > 1 and not isinstance(hw, System):
        raise InvalidInputError(f"hardware: {dep.gpus} GPUs per replica need a system (e.g. dgx-h100), "
                                f"got device {getattr(hw, 'name', hw)!r}")
    if isinstance(hw, System) and dep.gpus > hw.devices_per_node * hw.max_nodes:
        raise InvalidInputError(f"num-gpus: a replica of {dep.gpus} GPUs exceeds {hw.name}")
    return dep


def serving_profile(profile, device: Device):
    """The calibration a step model uses. 'auto': the device's shipped profile (or the transfer profile)
    when there is one, else the efficiency model with its prior parameters ('prior'; a roofline is an ideal
    lower bound, not a serving estimate); 'none' the pure roofline; or a path / Profile."""
    from perfsim.calibrate.profile import Profile, resolve, shipped_profile
    if profile == "prior" or (profile == "auto" and shipped_profile(device.name) is None):
        return Profile(device=device.name, fitted_on=["prior parameters (no fit)"])
    return resolve(profile, device.name)


# Token counts are tabulated from 1 to the step's budget, geometrically, neighbours r apart. A chord across a
# sharp roofline knee (weights read -> compute bound) overestimates by at most (s - 1)(1 - 1/s)/(s - 1/s),
# s = sqrt(r): 8% with 32 points up to 16384 tokens (14% with 18); on DeepSeek-V3 prefill 4% (6.6%) at worst.
TABLE_POINTS = 32


def _geomspace_int(lo: int, hi: int, n: int) -> list[int]:
    hi = max(hi, lo)
    pts = np.unique(np.round(np.geomspace(lo, hi, n)).astype(int))
    return [int(p) for p in pts]


def _interp1(xs: list[float], ys: list[float], x: float) -> float:
    """Piecewise-linear, extrapolating linearly beyond the ends."""
    n = len(xs)
    if n == 1:
        return ys[0]
    i = bisect_right(xs, x) - 1
    i = 0 if i < 0 else (n - 2 if i > n - 2 else i)
    x0, x1 = xs[i], xs[i + 1]
    return ys[i] + (ys[i + 1] - ys[i]) * (x - x0) / (x1 - x0)


def _interp2(xs: list[float], ys: list[float], z: list[list[float]], x: float, y: float) -> float:
    """Bilinear on a rectangular grid z[i][j] at (xs[i], ys[j]); linear extrapolation outside."""
    nx, ny = len(xs), len(ys)
    i = bisect_right(xs, x) - 1
    i = 0 if i < 0 else (nx - 2 if i > nx - 2 else i)
    j = bisect_right(ys, y) - 1
    j = 0 if j < 0 else (ny - 2 if j > ny - 2 else j)
    if nx == 1:
        return _interp1(ys, z[0], y)
    if ny == 1:
        return _interp1(xs, [row[0] for row in z], x)
    fx = (x - xs[i]) / (xs[i + 1] - xs[i])
    fy = (y - ys[j]) / (ys[j + 1] - ys[j])
    a = z[i][j] + (z[i][j + 1] - z[i][j]) * fy
    b = z[i + 1][j] + (z[i + 1][j + 1] - z[i + 1][j]) * fy
    return a + (b - a) * fx


def _interp2_pair(xs: list[float], ys: list[float], z1: list[list[float]], z2: list[list[float]], x: float,
                  y: float) -> tuple[float, float]:
    """_interp2 of two tables on the same grid (grids of at least 2 x 2)."""
    nx, ny = len(xs), len(ys)
    i = bisect_right(xs, x) - 1
    i = 0 if i < 0 else (nx - 2 if i > nx - 2 else i)
    j = bisect_right(ys, y) - 1
    j = 0 if j < 0 else (ny - 2 if j > ny - 2 else j)
    fx = (x - xs[i]) / (xs[i + 1] - xs[i])
    fy = (y - ys[j]) / (ys[j + 1] - ys[j])
    r0, r1 = z1[i], z1[i + 1]
    a = r0[j] + (r0[j + 1] - r0[j]) * fy
    b = r1[j] + (r1[j + 1] - r1[j]) * fy
    r0, r1 = z2[i], z2[i + 1]
    c = r0[j] + (r0[j + 1] - r0[j]) * fy
    d = r1[j] + (r1[j + 1] - r1[j]) * fy
    return a + (b - a) * fx, c + (d - c) * fx


@dataclass
class StepModel:
    """Tabulated step time (s) and dynamic energy per GPU (J) of one engine; see the module docstring."""
    dep: Deployment
    max_tokens: int
    max_seqs: int
    max_context: int
    profile: object = "auto"
    host: HostOverhead = field(default_factory=HostOverhead)
    grid: int = TABLE_POINTS
    spec: Speculation = field(default_factory=Speculation)
    tables: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cache: dict[Op, tuple[float, float]] = {}
        self._hw = self.dep.hardware
        self._profile = serving_profile(self.profile, self.dep.device)
        d = self.dep
        self.adp = d.attn_dp
        rank_tokens = max(1, math.ceil(self.max_tokens / self.adp))
        rank_seqs = max(1, math.ceil(self.max_seqs / self.adp))
        self.tok = _geomspace_int(1, rank_tokens, self.grid)
        self.seq = _geomspace_int(1, rank_seqs, max(6, self.grid * 2 // 3))
        self.ctx = _geomspace_int(1, max(2, self.max_context), max(8, self.grid * 2 // 3))
        dec_ops, dec_head, dec_attn = self._ops("decode")
        pre_ops, _, pre_attn = self._ops("prefill")
        p2p = [self._p2p(t) for t in self.tok]
        self.lin_dec = self._sweep(dec_ops, self.tok, p2p)
        self.lin_pre = self._sweep(pre_ops, self.tok, p2p)
        self.head = self._sweep(dec_head, self.seq, [0.0] * len(self.seq))
        self.attn_dec = [[self._attn(dec_attn, b, 1, c + 1) for c in self.ctx] for b in self.seq]
        k = self.spec.draft_tokens
        ver_attn = Counter({replace(op, num_heads=op.num_heads * (1 + k)): n for op, n in dec_attn.items()})
        self.attn_ver = [[self._attn(ver_attn, b, 1, c + 1) for c in self.ctx] for b in self.seq] if k else \
            self.attn_dec
        self.qgrid = _geomspace_int(1, rank_tokens, max(6, self.grid * 2 // 3))
        self.attn_pre = [[self._attn(pre_attn, 1, q, max(q, kv)) for kv in self.ctx] for q in self.qgrid]
        # python lists for the hot path
        self._tok = [float(x) for x in self.tok]
        self._seq = [float(x) for x in self.seq]
        self._ctx = [float(x) for x in self.ctx]
        self._q = [float(x) for x in self.qgrid]
        self._lin_dec_t, self._lin_dec_e = [v[0] for v in self.lin_dec], [v[1] for v in self.lin_dec]
        self._lin_pre_t, self._lin_pre_e = [v[0] for v in self.lin_pre], [v[1] for v in self.lin_pre]
        self._head_t, self._head_e = [v[0] for v in self.head], [v[1] for v in self.head]
        self._ad_t = [[v[0] for v in row] for row in self.attn_dec]
        self._ad_e = [[v[1] for v in row] for row in self.attn_dec]
        self._av_t = [[v[0] for v in row] for row in self.attn_ver]
        self._av_e = [[v[1] for v in row] for row in self.attn_ver]
        self._ap_t = [[v[0] for v in row] for row in self.attn_pre]
        self._ap_e = [[v[1] for v in row] for row in self.attn_pre]
        self._direct()

    # ---- building the tables ---------------------------------------------------------------------
    def _cost(self, op: Op) -> tuple[float, float]:
        hit = self._cache.get(op)
        if hit is None:
            c = op_time(op, self._hw, self._profile)
            hit = self._cache[op] = (c.time_s, c.energy_j)
        return hit

    def _ops(self, task: str):
        """(token-linear ops, head ops, attention ops) with counts, from one graph at TOKEN_PROBE tokens."""
        d = self.dep
        ep_graph = 1  # experts are re-split below; dispatch collectives only where attention is data parallel
        if task == "decode":
            g = graphs.build(d.model, "decode", TOKEN_PROBE, context=0, dtype=d.dtype, weight_dtype=d.weight_dtype,
                             kv_dtype=d.kv_dtype, tp=d.tp, ep=ep_graph,
                             state_dtype=d.state_dtype)
        else:
            g = graphs.build(d.model, "prefill", TOKEN_PROBE, seq=1, dtype=d.dtype, weight_dtype=d.weight_dtype,
                             kv_dtype=d.kv_dtype, tp=d.tp, ep=ep_graph,
                             state_dtype=d.state_dtype)
        counts = Counter(data["op"] for _, data in g.nodes(data=True))
        lin, head, attn = Counter(), Counter(), Counter()
        for op, n in counts.items():
            if isinstance(op, Attention):
                attn[op] += n
            elif op.name in HEAD_OPS:
                head[op] += n
            else:
                lin[op] += n
        if d.attn_dp > 1 and d.model.moe:
            # tokens live on their own attention-DP rank: all-to-all dispatch to the experts and combine back.
            # Serving engines' all-to-all kernels (DeepEP, TensorRT-LLM's) send a token once to each rank that
            # holds any of its experts, and combine each rank's expert outputs before sending them back
            moe = d.model.moe
            for name, b in zip(("moe_dispatch", "moe_combine"), a2a_elem_bytes(d.dtype, task), strict=True):
                size = dispatch_bytes(TOKEN_PROBE, moe.top_k, moe.num_experts, d.model.hidden_size, d.ep, task, b)
                op = Collective(collective="all_to_all", size_bytes=size, group=d.ep, name=name)
                lin[op] += d.model.num_moe_layers
        if task == "prefill":  # prefill attention shapes: rebuild the attention op from a short sequence
            s0 = min(64, d.model.max_seq_len)
            g = graphs.build(d.model, "prefill", 1, seq=s0, dtype=d.dtype, weight_dtype=d.weight_dtype,
                             kv_dtype=d.kv_dtype, tp=d.tp, ep=ep_graph,
                             state_dtype=d.state_dtype)
            attn = Counter(data["op"] for _, data in g.nodes(data=True) if isinstance(data["op"], Attention))
        return lin, head, attn

    def _scale(self, op: Op, tokens: int) -> Op:
        """The op at `tokens` tokens on this rank (the graph was built at TOKEN_PROBE)."""
        d, t0 = self.dep, TOKEN_PROBE
        if isinstance(op, Gemm):
            return replace(op, m=tokens) if op.m == t0 else op
        if isinstance(op, Elementwise):
            return replace(op, elements=op.elements // t0 * tokens) if op.elements % t0 == 0 else op
        if isinstance(op, Embedding):
            return replace(op, tokens=tokens)
        if isinstance(op, LinearRecurrence):  # decode: one token per sequence; prefill: chunks of one sequence
            return replace(op, tokens=tokens, batch=tokens if op.recurrent else 1)
        if isinstance(op, MoEExperts):
            moe = d.model.moe
            return replace(op, tokens=tokens * d.attn_dp, inter=moe.expert_intermediate_size // d.moe_tp,
                           num_experts=moe.num_experts // d.ep)
        if isinstance(op, Collective):
            return replace(op, size_bytes=op.size_bytes / t0 * tokens)
        return op

    def _sweep(self, ops: Counter, grid: list[int], extra_t: list[float]) -> list[tuple[float, float]]:
        out = []
        for tokens, extra in zip(grid, extra_t, strict=False):
            t = e = 0.0
            for op, n in ops.items():
                ct, ce = self._cost(self._scale(op, tokens))
                t += n * ct
                e += n * ce
            out.append((t + extra, e))
        return out

    def _attn(self, ops: Counter, batch: int, q: int, kv: int) -> tuple[float, float]:
        t = e = 0.0
        for op, n in ops.items():
            ct, ce = self._cost(replace(op, batch=batch, q_len=q, kv_len=kv))
            t += n * ct
            e += n * ce
        return t, e

    def _p2p(self, tokens: int) -> float:
        """Pipeline sends: (pp - 1) hops of tokens x hidden activations (bf16) over the stage link."""
        d = self.dep
        if d.pp <= 1 or d.system is None:
            return 0.0
        sysm = d.system
        link = sysm.intra_link if d.gpus <= sysm.devices_per_node else (sysm.nic or sysm.intra_link)
        nbytes = tokens * d.model.hidden_size * 2.0
        return (d.pp - 1) * (link.latency + nbytes / link.bandwidth)

    # ---- evaluation (hot path) -------------------------------------------------------------------
    DIRECT_MAX = 16384  # token and sequence counts up to this are looked up in precomputed lists

    def _direct(self) -> None:
        """Per-integer lookups: lin + head of a decode step of n sequences, lin of T tokens."""
        n_seq = min(self.DIRECT_MAX, max(self.seq) + 1)
        n_tok = min(self.DIRECT_MAX, max(self.tok) + 1)
        seqs = np.arange(n_seq, dtype=float)
        toks = np.arange(n_tok, dtype=float)
        lin_dt = np.interp(seqs, self.tok, self._lin_dec_t)
        lin_de = np.interp(seqs, self.tok, self._lin_dec_e)
        head_t = np.interp(seqs, self.seq, self._head_t)
        head_e = np.interp(seqs, self.seq, self._head_e)
        self._dec_base_t = (lin_dt + head_t).tolist()
        self._dec_base_e = (lin_de + head_e).tolist()
        self._head_t_n, self._head_e_n = head_t.tolist(), head_e.tolist()
        self._pre_t_n = np.interp(toks, self.tok, self._lin_pre_t).tolist()
        self._pre_e_n = np.interp(toks, self.tok, self._lin_pre_e).tolist()
        self._rows: dict[int, tuple[list[float], list[float]]] = {}
        self._ver_rows: dict[int, tuple[list[float], list[float]]] = {}

    def _row(self, n: int, rows: dict, table_t: list, table_e: list) -> tuple[list[float], list[float]]:
        """A decode-attention table's time and energy over the context grid at exactly n sequences."""
        xs = self._seq
        t = [_interp1(xs, [r[j] for r in table_t], n) for j in range(len(self._ctx))]
        e = [_interp1(xs, [r[j] for r in table_e], n) for j in range(len(self._ctx))]
        row = rows[n] = (t, e)
        return row

    def _attn_dec(self, n: int, ctx: float) -> tuple[float, float]:
        """Decode attention of n sequences, one query each, at mean context ctx."""
        return self._at_ctx(self._rows.get(n) or self._row(n, self._rows, self._ad_t, self._ad_e), ctx)

    def _attn_verify(self, n: int, ctx: float) -> tuple[float, float]:
        """Speculative verification's attention: 1 + k queries of each of n sequences in one pass."""
        return self._at_ctx(self._ver_rows.get(n) or self._row(n, self._ver_rows, self._av_t, self._av_e), ctx)

    def _at_ctx(self, row: tuple[list[float], list[float]], ctx: float) -> tuple[float, float]:
        rt, re_ = row
        xs = self._ctx
        m = len(xs)
        i = bisect_right(xs, ctx) - 1
        i = 0 if i < 0 else (m - 2 if i > m - 2 else i)
        f = (ctx - xs[i]) / (xs[i + 1] - xs[i])
        return rt[i] + (rt[i + 1] - rt[i]) * f, re_[i] + (re_[i + 1] - re_[i]) * f

    def decode(self, n: int, ctx_mean: float) -> tuple[float, float]:
        """(seconds, dynamic J per GPU) of a decode-only step of n sequences at mean context ctx_mean."""
        adp = self.adp
        nr = -(-n // adp) if adp > 1 else n
        at, ae = self._attn_dec(nr, ctx_mean)
        if self.spec.active:
            k = self.spec.draft_tokens
            tokens = nr * (1 + k)
            t = _interp1(self._tok, self._lin_dec_t, tokens) + _interp1(self._seq, self._head_t, tokens)
            e = _interp1(self._tok, self._lin_dec_e, tokens) + _interp1(self._seq, self._head_e, tokens)
            dt, de = self._draft(nr, at, ae)
            vt, ve = self._attn_verify(nr, ctx_mean)
            return self.host.step(t + vt + dt, nr), e + ve + de
        if nr < len(self._dec_base_t):
            return self.host.step(self._dec_base_t[nr] + at, nr), self._dec_base_e[nr] + ae
        t = _interp1(self._tok, self._lin_dec_t, nr) + _interp1(self._seq, self._head_t, nr)
        e = _interp1(self._tok, self._lin_dec_e, nr) + _interp1(self._seq, self._head_e, nr)
        return self.host.step(t + at, nr), e + ae

    def _draft(self, nr: int, attn_t: float, attn_e: float) -> tuple[float, float]:
        """The draft module's k passes of one decoder layer and the LM head over nr sequences."""
        k, layers = self.spec.draft_tokens, self.dep.model.num_layers
        t = _interp1(self._tok, self._lin_dec_t, nr) / layers + attn_t / layers + _interp1(self._seq, self._head_t, nr)
        e = _interp1(self._tok, self._lin_dec_e, nr) / layers + attn_e / layers + _interp1(self._seq, self._head_e, nr)
        return k * t, k * e

    def mixed(self, n: int, ctx_mean: float, chunks: list[tuple[int, int]], samples: int) -> tuple[float, float]:
        """A step with n decode sequences and prefill chunks [(q new tokens, last key position)];
        `samples` sequences sample a token (decodes plus prefills that finish)."""
        adp = self.adp
        tokens = n * (1 + self.spec.draft_tokens)
        for q, _ in chunks:
            tokens += q
        tr = -(-tokens // adp) if adp > 1 else tokens
        if tr < len(self._pre_t_n):
            t, e = self._pre_t_n[tr], self._pre_e_n[tr]
        else:
            t = _interp1(self._tok, self._lin_pre_t, tr)
            e = _interp1(self._tok, self._lin_pre_e, tr)
        seqs = n + len(chunks)
        samples += n * self.spec.draft_tokens  # verified positions also go through the LM head
        if samples:
            sr = -(-samples // adp) if adp > 1 else samples
            if sr < len(self._head_t_n):
                t += self._head_t_n[sr]
                e += self._head_e_n[sr]
            else:
                t += _interp1(self._seq, self._head_t, sr)
                e += _interp1(self._seq, self._head_e, sr)
        if n:
            nr = -(-n // adp) if adp > 1 else n
            at, ae = self._attn_dec(nr, ctx_mean)
            if self.spec.active:
                dt, de = self._draft(nr, at, ae)
                vt, ve = self._attn_verify(nr, ctx_mean)
                t += vt + dt
                e += ve + de
            else:
                t += at
                e += ae
        if chunks:
            at = ae = 0.0
            q_, c_, zt, ze = self._q, self._ctx, self._ap_t, self._ap_e
            if len(q_) > 1 and len(c_) > 1:
                for q, kv in chunks:
                    a, b = _interp2_pair(q_, c_, zt, ze, q, kv)
                    at += a
                    ae += b
            else:
                for q, kv in chunks:
                    at += _interp2(q_, c_, zt, q, kv)
                    ae += _interp2(q_, c_, ze, q, kv)
            t += at / adp
            e += ae / adp
        return self.host.step(t, -(-seqs // adp) if adp > 1 else seqs), e

    def prefill(self, prompt_lens: list[int]) -> tuple[float, float]:
        """A prefill-only step over whole prompts."""
        return self.mixed(0, 0.0, [(q, q) for q in prompt_lens], len(prompt_lens))

    def to_frame(self):
        """The tables as a tidy frame (kind, tokens or batch, context, time_s, energy_j)."""
        import pandas as pd
        rows = [("lin_decode", t, None, v[0], v[1]) for t, v in zip(self.tok, self.lin_dec, strict=False)]
        rows += [("lin_prefill", t, None, v[0], v[1]) for t, v in zip(self.tok, self.lin_pre, strict=False)]
        rows += [("head", s, None, v[0], v[1]) for s, v in zip(self.seq, self.head, strict=False)]
        rows += [("attn_decode", b, c, v[0], v[1]) for b, row in zip(self.seq, self.attn_dec, strict=False)
                 for c, v in zip(self.ctx, row, strict=False)]
        rows += [("attn_prefill", q, c, v[0], v[1]) for q, row in zip(self.qgrid, self.attn_pre, strict=False)
                 for c, v in zip(self.ctx, row, strict=False)]
        return pd.DataFrame(rows, columns=["kind", "size", "context", "time_s", "energy_j"])
