"""Operator types: each knows its FLOPs and the bytes it reads and writes in main memory.

Byte counts are compulsory traffic (each operand read once, each result written once); reuse inside
on-chip memory is the cost model's business, not the operator's.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from perfsim.dtypes import RECIPES, activation_dtype, check, nbytes
from perfsim.errors import InvalidInputError


def _positive(name: str, **values: float) -> None:
    for key, value in values.items():
        if value is None or value < 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise InvalidInputError(f"{name}.{key}: must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Op:
    """Base operator. `matrix` ops run on tensor/matrix units; the rest on vector units."""
    name: str = field(default="op", kw_only=True)

    kind = "op"
    matrix = False

    @property
    def dtype(self) -> str:  # compute dtype
        return "bf16"

    @property
    def flops(self) -> float:
        return 0.0

    @property
    def bytes_read(self) -> float:
        return 0.0

    @property
    def bytes_written(self) -> float:
        return 0.0

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte of main-memory traffic."""
        return self.flops / self.bytes if self.bytes else math.inf

    @property
    def cold_bytes(self) -> float:
        """Bytes that always come from main memory (weights, KV cache); the rest are activations,
        which the last-level cache serves when they fit in it."""
        return 0.0


@dataclass(frozen=True, slots=True)
class Gemm(Op):
    """C[m,n] = A[m,k] @ B[k,n], `batch` independent times. B is the weight when `weight_dtype` is set."""
    m: int
    n: int
    k: int
    dtype: str = "bf16"
    batch: int = 1
    weight_dtype: str | None = None  # storage dtype of B (weight-only quantization: int8, int4, fp4)
    out_dtype: str | None = None
    recipe: str | None = None   # the kernel recipe when not the plain dtype's (fp8_block: perfsim.dtypes.RECIPES)

    kind = "gemm"
    matrix = True

    def __post_init__(self) -> None:
        _positive("Gemm", m=self.m, n=self.n, k=self.k, batch=self.batch)
        check(self.dtype, "Gemm.dtype")
        if self.weight_dtype:
            check(self.weight_dtype, "Gemm.weight_dtype")
        if self.recipe is not None and self.recipe not in RECIPES:
            raise InvalidInputError(f"Gemm.recipe: unknown recipe {self.recipe!r}; accepted: {', '.join(RECIPES)}")

    @property
    def flops(self) -> float:
        return 2.0 * self.batch * self.m * self.n * self.k  # 2mnk: one multiply and one add per MAC

    @property
    def bytes_read(self) -> float:
        a = nbytes(self.dtype)
        w = nbytes(self.weight_dtype or self.dtype)
        return self.batch * (self.m * self.k * a + self.k * self.n * w)

    @property
    def bytes_written(self) -> float:
        return self.batch * self.m * self.n * nbytes(self.out_dtype or activation_dtype(self.dtype))

    @property
    def cold_bytes(self) -> float:
        return self.batch * self.k * self.n * nbytes(self.weight_dtype or self.dtype)


@dataclass(frozen=True, slots=True)
class Attention(Op):
    """Scaled dot-product attention over a KV cache (FlashAttention-style, fused softmax).

    q_len new queries per sequence attend to kv_len keys (prefill: q_len == kv_len; decode: q_len == 1).
    """
    batch: int
    q_len: int
    kv_len: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int | None = None
    causal: bool = True
    window: int | None = None
    dtype: str = "bf16"
    kv_dtype: str | None = None
    kv_shared_by_heads: bool = False  # MLA absorbed decode: one latent KV (K and V are the same tensor)
    rotary_dim: int | None = None     # head elements RoPE rotates (None: the whole head)

    kind = "attention"
    matrix = True

    def __post_init__(self) -> None:
        _positive("Attention", batch=self.batch, q_len=self.q_len, kv_len=self.kv_len,
                  num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim)
        check(self.dtype, "Attention.dtype")
        if self.num_kv_heads == 0 or self.num_heads % self.num_kv_heads:
            raise InvalidInputError("Attention.num_kv_heads: must divide num_heads")

    @property
    def dv(self) -> int:
        return self.v_head_dim or self.head_dim

    @property
    def phase(self) -> str:
        return "decode" if self.q_len == 1 else "prefill"

    @property
    def attended_pairs(self) -> float:
        """Query-key pairs actually scored per head: causal mask and sliding window applied."""
        q, kv, w = self.q_len, self.kv_len, self.window or self.kv_len
        past = kv - q  # cached tokens before the first new query
        total = 0.0
        # query i (0-based among the new ones) sees keys [0, past + i], clipped to the last w
        if not self.causal:
            return float(q * min(kv, w))
        full = min(q, max(0, w - past))        # queries whose whole visible prefix fits the window
        # visible keys for query i: past + i + 1, for i < full; then w
        total += full * (past + 1) + full * (full - 1) / 2.0
        total += (q - full) * w
        return float(total)

    @property
    def flops(self) -> float:
        # QK^T and PV: 2 * pairs * d each (softmax exp/max/sum are vector work, negligible vs GEMMs)
        return 2.0 * self.batch * self.num_heads * self.attended_pairs * (self.head_dim + self.dv)

    @property
    def kv_tokens_read(self) -> int:
        return min(self.kv_len, (self.window or self.kv_len) + self.q_len - 1)

    @property
    def bytes_read(self) -> float:
        a = nbytes(self.dtype)
        kv = nbytes(self.kv_dtype or self.dtype)
        q_bytes = self.batch * self.q_len * self.num_heads * self.head_dim * a
        per_token = self.head_dim if self.kv_shared_by_heads else self.head_dim + self.dv
        kv_bytes = self.batch * self.kv_tokens_read * self.num_kv_heads * per_token * kv
        return q_bytes + kv_bytes

    @property
    def bytes_written(self) -> float:
        return self.batch * self.q_len * self.num_heads * self.dv * nbytes(activation_dtype(self.dtype))

    @property
    def cold_bytes(self) -> float:
        if self.phase == "prefill":
            return 0.0
        per_token = self.head_dim if self.kv_shared_by_heads else self.head_dim + self.dv
        return self.batch * self.kv_tokens_read * self.num_kv_heads * per_token * nbytes(self.kv_dtype or self.dtype)


@dataclass(frozen=True, slots=True)
class IndexerScores(Attention):
    """DeepSeek Sparse Attention's lightning indexer (DeepSeek-V3.2): num_heads FP8 query heads of head_dim per new
    token score every visible cached index key (one per token, kv_shared_by_heads), I = sum_h w_h ReLU(q_h . k),
    FLOPs as attention with a one-wide value; the fp32 scores of every query-key pair are written and read back by
    the top-k selection (DeepGEMM's fp8_mqa_logits, then a per-row top-k)."""

    @property
    def flops(self) -> float:
        # the q . k products: 2 * pairs * head_dim per head (ReLU, weighting and the sum over heads are vector work)
        return 2.0 * self.batch * self.num_heads * self.attended_pairs * self.head_dim

    @property
    def _scores_bytes(self) -> float:
        return 4.0 * self.batch * self.attended_pairs

    @property
    def bytes_read(self) -> float:
        return Attention.bytes_read.fget(self) + self._scores_bytes

    @property
    def bytes_written(self) -> float:
        return self._scores_bytes


@dataclass(frozen=True, slots=True)
class LinearRecurrence(Op):
    """A linear recurrence over `tokens` new tokens of `batch` sequences (linear attention, state-space scan):
    each of num_v_heads heads keeps a k_dim x v_dim state S in place of a KV cache; num_k_heads heads (groups) of
    k_dim-wide inputs are shared by the value heads. Subclasses give the FLOPs per token and head.

    recurrent (decode): one token per sequence, S read and written once per sequence.
    chunked (prefill, chunks of C tokens): every chunk's starting state is written in the activations' dtype and
    read back once; each sequence's state read at the start and written at the end.
    """
    tokens: int
    batch: int
    num_k_heads: int
    num_v_heads: int
    k_dim: int
    v_dim: int
    recurrent: bool = False
    chunk: int = 64
    dtype: str = "bf16"
    state_dtype: str = "fp32"
    gates: int = 2     # per-token gate values of each value head read beside q, k and v

    kind = "linear_attention"
    matrix = True
    chunk_kernels = 6  # kernels of one chunked pass

    def __post_init__(self) -> None:
        name = type(self).__name__
        _positive(name, tokens=self.tokens, batch=self.batch, num_k_heads=self.num_k_heads,
                  num_v_heads=self.num_v_heads, k_dim=self.k_dim, v_dim=self.v_dim, chunk=self.chunk)
        check(self.dtype, f"{name}.dtype")
        check(self.state_dtype, f"{name}.state_dtype")

    def flops_per_token_head(self) -> float:
        raise NotImplementedError

    @property
    def state_bytes(self) -> float:
        """One sequence's state, all heads."""
        return self.num_v_heads * self.k_dim * self.v_dim * nbytes(self.state_dtype)

    @property
    def chunks(self) -> int:
        """Chunks over all sequences (each sequence's tokens cut into chunks of C)."""
        return self.batch * -(-self.tokens // (self.batch * self.chunk))

    @property
    def flops(self) -> float:
        return float(self.tokens) * self.num_v_heads * self.flops_per_token_head()

    @property
    def _activations_in(self) -> float:
        # q and k (B and C) per key head, v (x) and the gates per value head
        per_token = 2 * self.num_k_heads * self.k_dim + self.num_v_heads * (self.v_dim + self.gates)
        return self.tokens * per_token * nbytes(activation_dtype(self.dtype))

    @property
    def _chunk_state_bytes(self) -> float:
        if self.recurrent:
            return 0.0
        return self.chunks * self.num_v_heads * self.k_dim * self.v_dim * nbytes(activation_dtype(self.dtype))

    @property
    def bytes_read(self) -> float:
        return self._activations_in + self.batch * self.state_bytes + self._chunk_state_bytes

    @property
    def bytes_written(self) -> float:
        return self.tokens * self.num_v_heads * self.v_dim * nbytes(activation_dtype(self.dtype)) \
            + self.batch * self.state_bytes + self._chunk_state_bytes

    @property
    def cold_bytes(self) -> float:
        """The sequences' states live in main memory between steps, as a KV cache does."""
        return self.batch * self.state_bytes


@dataclass(frozen=True, slots=True)
class GatedDeltaRule(LinearRecurrence):
    """Gated delta-rule linear attention (Gated DeltaNet; Yang, Kautz & Hatamizadeh 2025), chunks of C = 64.

    recurrent: S <- a S + b k (v - S^T k)^T, o = S^T q: 7 k_dim v_dim FLOPs per token and head.
    chunked (the chunkwise-parallel delta rule of Yang et al. 2024, DeltaNet): 2C(3 k_dim + 2 v_dim) inside the
      chunk (K K^T for the WY transform, W = A K, U = A V, Q K^T, (Q K^T) U) plus 6 k_dim v_dim across chunks
      (W S, Q S, the state update K^T U); flash-linear-attention's chunk_gated_delta_rule_fwd (6 kernels: gate
      cumsum, K K^T, triangular solve, W and U, chunk states, output).
    """

    def flops_per_token_head(self) -> float:
        dk, dv = self.k_dim, self.v_dim
        if self.recurrent:
            return 7.0 * dk * dv
        return 2.0 * self.chunk * (3 * dk + 2 * dv) + 6.0 * dk * dv


@dataclass(frozen=True, slots=True)
class SSDScan(LinearRecurrence):
    """Mamba-2's state-space duality scan (Dao & Gu 2024, "Transformers are SSMs", SSD algorithm): heads of
    v_dim = head_dim channels with a state of k_dim = ssm_state_size per channel; B and C per group (num_k_heads
    = n_groups); one gate (dt) per head (gates=1).

    Lightning attention (MiniMax-01; Qin et al. 2024) is the same scan with a fixed decay per head, keys for B and
    queries for C (gates=0, chunks of 256).

    recurrent: S <- exp(dt A) S + dt B x^T, y = C^T S: 5 k_dim v_dim FLOPs per token and head.
    chunked: 2Q(k_dim + v_dim) inside the chunk (C B^T, its masked product with x) plus 4 k_dim v_dim across
      chunks (the chunk state B^T x, the output C S); mamba_ssm's mamba_chunk_scan_combined (5 kernels: dt
      cumsum, chunk states, state passing, C B^T, chunk scan).
    """
    chunk_kernels = 5

    def flops_per_token_head(self) -> float:
        n, p = self.k_dim, self.v_dim
        if self.recurrent:
            return 5.0 * n * p
        return 2.0 * self.chunk * (n + p) + 4.0 * n * p


@dataclass(frozen=True, slots=True)
class Elementwise(Op):
    """A bandwidth-bound op over `elements` outputs: activation, residual add, rotary, softmax, copy.

    reads: input tensors of the same size read per output element; flops_per_element: vector FLOPs.
    """
    elements: int
    reads: float = 1.0
    writes: float = 1.0
    flops_per_element: float = 1.0
    dtype: str = "bf16"
    op_kind: str = "elementwise"

    matrix = False

    def __post_init__(self) -> None:
        _positive("Elementwise", elements=self.elements, reads=self.reads, writes=self.writes)
        check(self.dtype, "Elementwise.dtype")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.op_kind

    @property
    def flops(self) -> float:
        return self.flops_per_element * self.elements

    @property
    def bytes_read(self) -> float:
        return self.reads * self.elements * nbytes(self.dtype)

    @property
    def bytes_written(self) -> float:
        return self.writes * self.elements * nbytes(self.dtype)


def norm(rows: int, cols: int, dtype: str = "bf16", name: str = "norm") -> Elementwise:
    """RMSNorm/LayerNorm: read x, write y; ~5 FLOPs per element (square, sum, scale, shift)."""
    return Elementwise(elements=rows * cols, reads=1, writes=1, flops_per_element=5, dtype=dtype,
                       op_kind="norm", name=name)


def softmax(rows: int, cols: int, dtype: str = "bf16", name: str = "softmax") -> Elementwise:
    """Row softmax: max, exp, sum, divide: ~5 FLOPs per element."""
    return Elementwise(elements=rows * cols, flops_per_element=5, dtype=dtype, op_kind="softmax", name=name)


@dataclass(frozen=True, slots=True)
class Embedding(Op):
    """Gather `tokens` rows of width `hidden` from a table."""
    tokens: int
    hidden: int
    dtype: str = "bf16"

    kind = "embedding"

    @property
    def bytes_read(self) -> float:
        return self.tokens * self.hidden * nbytes(self.dtype)

    @property
    def bytes_written(self) -> float:
        return self.tokens * self.hidden * nbytes(self.dtype)

    @property
    def cold_bytes(self) -> float:
        return self.bytes_read


POWER_LAW_DRAWS = 64  # seeded draws of the collector's power-law expert loads, averaged per shape


@functools.lru_cache(maxsize=4096)
def routing_loads(top_k: float, experts_total: int, experts_local: int, distribution: str, tokens: float = 1.0):
    """Token-expert assignments of each expert on this device, most loaded first: an array (draws, experts_local).

    balanced, uniform: T k / E each (one draw). power_law_alpha (aiconfigurator's MoE collector, helper.py
    power_law_logits_v3): per-expert loads are draws from a bounded Pareto(alpha) on [1, 0.8 T] (on [0.01, 2]
    when T k <= E), scaled to T k assignments and rounded (the rounding error to the largest draws); experts sit
    on the expert-parallel ranks in index order and the device is the busiest rank. POWER_LAW_DRAWS seeded
    draws stand for the distribution; no expert takes a token twice (load <= T)."""
    import numpy as np
    if not distribution.startswith("power_law"):
        return _frozen(np.full((1, experts_local), tokens * top_k / experts_total))
    alpha = float(distribution.rsplit("_", 1)[-1])
    lo, hi = (1.0, 0.8 * tokens) if tokens * top_k > experts_total else (0.01, 2.0)
    hi = max(hi, lo * (1 + 1e-9))
    a = 1.0 - alpha if abs(alpha - 1.0) > 1e-9 else 1e-9
    u = np.random.default_rng(0).random((POWER_LAW_DRAWS, experts_total))
    x = ((hi ** a - lo ** a) * u + lo ** a) ** (1.0 / a)          # inverse CDF of the bounded Pareto
    loads = np.round(x / x.sum(axis=1, keepdims=True) * tokens * top_k)
    delta = np.round(tokens * top_k - loads.sum(axis=1, keepdims=True))
    largest_first = np.argsort(np.argsort(-x, axis=1), axis=1)                 # rank of each draw, largest 0
    loads += np.maximum(delta, 0) // experts_total + (largest_first < np.maximum(delta, 0) % experts_total)
    filled = loads > 0
    smallest_filled_first = np.argsort(np.argsort(np.where(filled, x, np.inf), axis=1), axis=1)
    loads -= filled & (smallest_filled_first < np.maximum(-delta, 0))
    ranks = experts_total // experts_local
    by_rank = loads[:, :ranks * experts_local].reshape(POWER_LAW_DRAWS, ranks, experts_local)
    busiest = by_rank[np.arange(POWER_LAW_DRAWS), by_rank.sum(axis=2).argmax(axis=1)]
    return _frozen(np.minimum(tokens, -np.sort(-busiest, axis=1)))


def routing_probabilities(top_k: float, experts_total: int, experts_local: int, distribution: str,
                          tokens: float = 1.0):
    """Per-token probability p_e that each expert on this device is chosen (the most loaded first): the mean
    load of routing_loads over T."""
    return routing_loads(top_k, experts_total, experts_local, distribution, tokens).mean(axis=0) / max(tokens, 1e-12)


def ranks_reached(top_k: int, experts_total: int, ep: int) -> float:
    """Expected distinct expert-parallel ranks among one token's top-k experts under uniform routing:
    ep * (1 - C(E - E/ep, k) / C(E, k)) (each rank holds E/ep experts; hypergeometric miss probability)."""
    if ep <= 1:
        return 1.0
    k = min(int(top_k), experts_total)
    miss = math.comb(experts_total - experts_total // ep, k) / math.comb(experts_total, k)
    return ep * (1.0 - miss)


def nodes_reached(top_k: int, experts_total: int, nodes: int, groups: int = 1, group_limit: int | None = None) -> float:
    """Expected distinct nodes among one token's experts, the experts laid out over `nodes` nodes in equal
    contiguous shares. Group-limited routing with whole groups per node (DeepSeek-V3: 8 groups, at most 4 per
    token) reaches N (1 - C(G - G/N, M) / C(G, M)) nodes; otherwise as ranks_reached over the nodes."""
    if nodes <= 1:
        return 1.0
    if group_limit is not None and group_limit < groups and groups % nodes == 0:
        per_node = groups // nodes
        return nodes * (1.0 - math.comb(groups - per_node, group_limit) / math.comb(groups, group_limit))
    return ranks_reached(top_k, experts_total, nodes)


def dispatch_bytes(tokens: float, top_k: int, experts_total: int, hidden: int, ep: int, task: str,
                   elem_bytes: float = 2.0) -> float:
    """Bytes one rank's expert-parallel all-to-all sends for `tokens` tokens, `elem_bytes` per hidden element
    (see a2a_elem_bytes). Copies per token: training's dispatcher (Megatron's all-to-all) one per routed expert;
    inference kernels (DeepEP, TensorRT-LLM) one per rank holding any of its experts."""
    copies = float(top_k) if task == "train" else ranks_reached(top_k, experts_total, ep)
    return tokens * copies * hidden * elem_bytes


QUANTIZED_DISPATCH = ("fp8", "int8", "fp4")   # expert GEMM inputs that inference engines quantize before dispatch


def a2a_elem_bytes(dtype: str, task: str) -> tuple[float, float]:
    """(dispatch, combine) bytes per hidden element of an expert-parallel all-to-all. Inference engines quantize
    tokens before dispatching them when the expert GEMMs take quantized inputs (TensorRT-LLM's post-quant
    all-to-all, on by default: TRTLLM_MOE_POST_QUANT_ALLTOALLV; vLLM's FlashInfer and DeepEP prepare steps;
    DeepSeek-V3 report 3.3.2: FP8 dispatch) and combine the expert outputs in 16 bits; training's dispatcher
    moves 16-bit activations both ways."""
    act = nbytes(activation_dtype(dtype))
    return (nbytes(dtype) if task != "train" and dtype in QUANTIZED_DISPATCH else act), act


def _frozen(a):
    a.flags.writeable = False  # cached: shared by every caller
    return a


@dataclass(frozen=True, slots=True)
class MoEExperts(Op):
    """Fused routed-expert MLP over `tokens` tokens, each sent to `top_k` of `num_experts` experts.

    `num_experts` is the experts held on this device (after expert parallelism); `total_experts` the
    model's. With p_e the routing probability of local expert e (see routing_probabilities), the device
    computes T * sum(p_e) token-expert pairs and reads the weights of sum(1 - (1 - p_e)^T) experts.
    `scanned_tokens`: the tokens its routing and permutation passes read, when fewer than `tokens` (an
    all-to-all dispatch delivers each rank only its own tokens' routes; default: all `tokens`).
    """
    tokens: int
    hidden: int
    inter: int
    top_k: int
    num_experts: int
    total_experts: int | None = None
    gated: bool = True
    dtype: str = "bf16"
    weight_dtype: str | None = None
    distribution: str = "balanced"
    scanned_tokens: int | None = None

    kind = "moe"
    matrix = True

    def __post_init__(self) -> None:
        _positive("MoEExperts", tokens=self.tokens, hidden=self.hidden, inter=self.inter)
        check(self.dtype, "MoEExperts.dtype")

    @property
    def experts_total(self) -> int:
        return self.total_experts or self.num_experts

    @property
    def routing(self):
        return routing_probabilities(self.top_k, self.experts_total, self.num_experts, self.distribution, self.tokens)

    @property
    def local_assignments(self) -> float:
        """Token-expert pairs computed on this device."""
        return float(self.tokens * self.routing.sum())

    @property
    def matrices(self) -> int:
        return 3 if self.gated else 2

    @property
    def flops(self) -> float:
        return 2.0 * self.local_assignments * self.hidden * self.inter * self.matrices

    @property
    def experts_touched(self) -> float:
        """Expected distinct local experts that receive at least one token."""
        return float((1.0 - (1.0 - self.routing) ** self.tokens).sum())

    @property
    def bytes_read(self) -> float:
        acts = self.local_assignments * self.hidden * nbytes(activation_dtype(self.dtype))
        return self.weight_bytes + acts

    @property
    def bytes_written(self) -> float:
        return self.local_assignments * self.hidden * nbytes(activation_dtype(self.dtype))

    @property
    def weight_bytes(self) -> float:
        return self.experts_touched * self.matrices * self.hidden * self.inter * nbytes(self.weight_dtype or self.dtype)

    @property
    def cold_bytes(self) -> float:
        return self.weight_bytes


@dataclass(frozen=True, slots=True)
class Collective(Op):
    """A communication op over `group` devices moving a `size_bytes` buffer (per device)."""
    collective: str       # all_reduce | all_gather | reduce_scatter | all_to_all | broadcast | send_recv
    size_bytes: float
    group: int
    scope: str = "intra"  # intra | inter | hierarchical
    implementation: str = "nccl"   # or 'custom': an engine's peer-memory all-reduce in one NVLink domain (cost.comm)

    kind = "collective"

    @property
    def bytes(self) -> float:
        return 0.0
