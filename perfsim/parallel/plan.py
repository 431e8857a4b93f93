"""Plan: how a model is split over GPUs (TP, SP, PP, DP, EP, CP), and the rules that make a plan valid.

Rank layout follows Megatron-Core ("tp-cp-ep-dp-pp"): tensor-parallel ranks are adjacent (inside one node
when tp <= devices per node), then context-parallel, then data-parallel, then pipeline stages, so
GPUs = tp x cp x pp x dp. Expert parallelism draws its ranks from the data-parallel (x context-parallel)
replicas, the expert FFN split over tp, when ep divides dp x cp; otherwise, when ep is a multiple of tp, the
experts spread over the tensor-parallel group too (expert tensor parallelism 1, Megatron-Core's "MoE parallel
folding"; vLLM's expert parallelism over its TP group): see `expert_layout`.

Every rule gives its reason: `plan_problems(...)` returns one line per broken rule, naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from perfsim import graph as graphs
from perfsim.cost.attention import BLOCK_Q
from perfsim.errors import InvalidInputError
from perfsim.model import ModelSpec

RECOMPUTE = ("none", "selective", "full")
ZERO = (0, 1, 2, 3)
ATTENTION = ("flash", "unfused")
DISPATCHERS = ("alltoall", "deepep")
STAGE_LAYOUTS = ("even", "balanced")
TRAIN_DTYPES = ("bf16", "fp16", "fp8")
OPTIMIZER_DTYPES = ("fp32", "bf16")
TASKS = ("train", "prefill", "decode")


@dataclass(frozen=True)
class Plan:
    """One parallel configuration.

    tp: tensor-parallel degree (Megatron column/row splits); sequence_parallel (default: on when tp > 1)
        shards norms, dropouts and the stored activations over the tp ranks (Korthikanti et al. 2022).
    pp: pipeline stages; interleave: virtual stages (model chunks) per pipeline rank (1 = plain 1F1B).
    dp: data-parallel replicas; zero: 0 (none), 1 (optimizer states), 2 (+ gradients), 3 (+ weights, FSDP).
    ep: expert-parallel degree (MoE); cp: context parallel (ring attention over sequence chunks).
    micro_batch: sequences per micro-batch; recompute: none | selective (attention core) | full (whole layer).
    dtype: GEMM dtype (bf16, fp16, or fp8 with bf16 activations); optimizer_dtype: dtype of Adam's moments.
    tp_overlap: TP collectives overlapped with the adjacent GEMMs (TransformerEngine userbuffers); off,
        only Megatron's default overlaps (backward input-grad reduction under the weight-grad GEMM) apply.
    dp_overlap: gradient reduce-scatter / all-reduce overlapped with the backward pass, parameter
        all-gather with the next forward.
    ep_overlap: each MoE layer's all-to-all dispatch and combine hidden behind the compute of another
        micro-batch (DeepSeek-V3's DualPipe, Megatron-Core's overlapped 1F1B all-to-all), up to that compute's time.
    dispatcher: alltoall (Megatron's all-to-all: one bf16 copy per routed expert) or deepep (DeepEP: one copy per
        destination node over the network, forwarded over NVLink to the ranks holding the experts; FP8 dispatch
        when the GEMMs are FP8; node-limited routing where the model has route groups).
    attention: flash (fused, FlashAttention) or unfused (QK^T GEMM, softmax, dropout, PV GEMM: Megatron 2022).
    stage_layout: even (every pipeline rank holds the heaviest rank's layers, L / pp rounded up; Megatron's
        default) or balanced (fewer layers on the ranks that also hold the embedding and the LM head, as
        Megatron's --decoder-first/last-pipeline-num-layers set them: Llama 3 405B took a layer off each).
    """
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    cp: int = 1
    micro_batch: int = 1
    recompute: str = "none"
    zero: int = 0
    interleave: int = 1
    sequence_parallel: bool | None = None
    dtype: str = "bf16"
    optimizer_dtype: str = "fp32"
    tp_overlap: bool = False
    dp_overlap: bool = True
    ep_overlap: bool = False
    dispatcher: str = "alltoall"
    attention: str = "flash"
    stage_layout: str = "even"

    @property
    def num_gpus(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    @property
    def sp(self) -> bool:
        """Sequence parallelism in effect (needs tp > 1)."""
        return self.tp > 1 and (self.sequence_parallel is None or bool(self.sequence_parallel))

    @property
    def schedule(self) -> str:
        return "interleaved-1f1b" if self.interleave > 1 else "1f1b"

    def micro_batches(self, global_batch: int) -> int:
        """Micro-batches per pipeline per step: global_batch / (dp x micro_batch)."""
        return global_batch // (self.dp * self.micro_batch)

    def degrees(self) -> dict:
        return {"tp": self.tp, "pp": self.pp, "dp": self.dp, "ep": self.ep, "cp": self.cp,
                "micro_batch": self.micro_batch, "recompute": self.recompute, "zero": self.zero,
                "interleave": self.interleave}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["sequence_parallel"] = self.sp
        out["num_gpus"] = self.num_gpus
        out["schedule"] = self.schedule
        return out

    def with_(self, **changes) -> Plan:
        return replace(self, **changes)


def expert_layout(tp, dp, cp, ep):
    """(ep_data, folded) per plan, numpy in and out.

    unfolded (ep divides dp x cp): the ep ranks are data-parallel replicas; each holds E/ep experts, their FFN
    split over tp; ep_data = ep. folded (otherwise; ep a multiple of tp, ep/tp dividing dp x cp): the ep ranks
    span the tp group, each holds E/ep whole experts. Per rank it computes the same expert FLOPs and holds the
    same expert bytes as the unfolded layout with ep_data = ep / tp; only the all-to-all group differs.
    """
    import numpy as np
    tp, dp, cp, ep = (np.asarray(x) for x in (tp, dp, cp, ep))
    folded = (dp * cp) % ep != 0
    return np.where(folded, np.maximum(1, ep // tp), ep), folded


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def plan_problems(plan: Plan, model: ModelSpec, *, task: str = "train", num_gpus: int | None = None,
                  max_gpus: int | None = None, global_batch: int | None = None, seq: int | None = None,
                  devices_per_node: int | None = None, has_fp8: bool = True) -> list[str]:
    """Every rule `plan` breaks for `model` (one line each, naming the field); [] when the plan is valid.

    num_gpus: the GPUs the plan must use exactly (predict); max_gpus: the GPUs available (search).
    """
    out: list[str] = []
    for name in ("tp", "pp", "dp", "ep", "cp", "micro_batch", "interleave"):
        v = getattr(plan, name)
        if not _is_int(v) or v < 1:
            out.append(f"{name}: must be an integer >= 1, got {v!r}")
    if out:
        return out
    if task not in TASKS:
        out.append(f"task: got {task!r}; accepted: {', '.join(TASKS)}")
    if plan.recompute not in RECOMPUTE:
        out.append(f"recompute: got {plan.recompute!r}; accepted: {', '.join(RECOMPUTE)}")
    if plan.zero not in ZERO:
        out.append(f"zero: got {plan.zero!r}; accepted: 0, 1, 2, 3")
    if plan.attention not in ATTENTION:
        out.append(f"attention: got {plan.attention!r}; accepted: {', '.join(ATTENTION)}")
    if plan.dispatcher not in DISPATCHERS:
        out.append(f"dispatcher: got {plan.dispatcher!r}; accepted: {', '.join(DISPATCHERS)}")
    if plan.stage_layout not in STAGE_LAYOUTS:
        out.append(f"stage_layout: got {plan.stage_layout!r}; accepted: {', '.join(STAGE_LAYOUTS)}")
    if plan.dtype not in TRAIN_DTYPES:
        out.append(f"dtype: got {plan.dtype!r}; accepted for parallel plans: {', '.join(TRAIN_DTYPES)}")
    elif plan.dtype == "fp8" and not has_fp8:
        out.append("dtype: fp8 needs FP8 matrix units, which this GPU lacks")
    if plan.optimizer_dtype not in OPTIMIZER_DTYPES:
        out.append(f"optimizer_dtype: got {plan.optimizer_dtype!r}; accepted: {', '.join(OPTIMIZER_DTYPES)}")

    # tensor parallel: heads, KV heads and MLP widths split evenly over the tp ranks
    t = plan.tp
    out += graphs.split_problems(model, t, plan.ep)
    if not model.num_heads % t and not model.mla and model.kv_heads % t and t % model.kv_heads:
        out.append(f"tp: {t} must divide the KV heads ({model.kv_heads}) of {model.name} or be a multiple of them "
                   f"(KV heads are then replicated)")
    if model.num_dense_layers and model.intermediate_size % t:
        out.append(f"tp: {t} must divide intermediate_size ({model.intermediate_size}) of {model.name}")
    if model.moe and model.moe.expert_intermediate_size % t:
        out.append(f"tp: {t} must divide expert_intermediate_size ({model.moe.expert_intermediate_size}) "
                   f"of {model.name}")

    # expert parallel: experts split evenly; ranks drawn from the data-parallel replicas
    g = plan.dp * plan.cp
    if plan.ep > 1 and model.moe and g % plan.ep and (plan.ep % t or g % (plan.ep // t)):
        out.append(f"ep: {plan.ep} must divide dp x cp = {g} (expert ranks drawn from the data-parallel "
                   f"replicas), or be a multiple of tp = {t} whose quotient divides dp x cp (experts spread "
                   f"over the tensor-parallel group)")

    # pipeline: whole layers per (virtual) stage, uneven where they do not divide (the heaviest holds the ceiling)
    L, p, v = model.num_layers, plan.pp, plan.interleave
    if p > L:
        out.append(f"pp: {p} stages exceed the {L} layers of {model.name}")
    elif p * v > L:
        out.append(f"interleave: pp x interleave = {p} x {v} = {p * v} virtual stages exceed the {L} layers of "
                   f"{model.name}")
    if v > 1 and p == 1:
        out.append("interleave: virtual pipeline stages need pp > 1")

    # context parallel: load-balanced ring attention splits each sequence into 2 x cp chunks
    if plan.cp > 1:
        if task == "decode":
            out.append("cp: context parallelism splits the sequence of a prefill or training step; decode has "
                       "one new token per sequence")
        if plan.attention != "flash":
            out.append("cp: ring attention needs the fused (flash) attention kernel")
        if seq is not None and (seq % (2 * plan.cp) or seq // plan.cp < BLOCK_Q):
            out.append(f"cp: seq ({seq}) must split into 2 x cp = {2 * plan.cp} equal chunks and leave each rank at "
                       f"least one {int(BLOCK_Q)}-token attention block")

    if task == "train":
        if plan.zero >= 2 and p > 1:
            out.append(f"zero: ZeRO-{plan.zero} reduces sharded gradients every micro-batch, which pipeline "
                       f"parallelism's gradient accumulation does not support (use zero <= 1 with pp > 1)")
        if global_batch is not None:
            per = plan.dp * plan.micro_batch
            if not _is_int(global_batch) or global_batch < 1:
                out.append(f"global_batch: must be an integer >= 1, got {global_batch!r}")
            elif global_batch % per:
                out.append(f"global_batch: {global_batch} must be a multiple of dp x micro_batch = "
                           f"{plan.dp} x {plan.micro_batch} = {per}")
            elif v > 1 and (global_batch // per) % p:
                out.append(f"interleave: the interleaved schedule needs the micro-batches per step "
                           f"({global_batch // per}) to be a multiple of pp ({p})")
    else:
        if global_batch is not None and global_batch % plan.dp:
            out.append(f"batch: {global_batch} must be a multiple of dp ({plan.dp}) (sequences per replica)")
        if plan.zero:
            out.append("zero: ZeRO shards training state; inference plans take zero = 0")
        if plan.recompute != "none":
            out.append("recompute: applies to training only")
        if v > 1:
            out.append("interleave: applies to training pipelines only")

    n = plan.num_gpus
    if num_gpus is not None and n != num_gpus:
        out.append(f"num_gpus: tp x cp x pp x dp = {plan.tp} x {plan.cp} x {p} x {plan.dp} = {n}, "
                   f"but --num-gpus is {num_gpus}")
    if max_gpus is not None and n > max_gpus:
        out.append(f"num_gpus: the plan needs {n} GPUs; {max_gpus} are available")
    return out


def check_plan(plan: Plan, model: ModelSpec, **kwargs) -> Plan:
    """Raise InvalidInputError with the first broken rule (one line naming the field)."""
    problems = plan_problems(plan, model, **kwargs)
    if problems:
        raise InvalidInputError(problems[0])
    return plan
