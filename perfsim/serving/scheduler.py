"""One serving engine: a batch scheduler over a paged KV cache, stepping through its requests.

Policies (per engine, i.e. per model replica, or per pipeline-parallel virtual engine):
  chunked     Sarathi-Serve / vLLM V1: every step runs all decoding sequences plus prompt chunks that fill the
              token budget (max_num_batched_tokens); prefills never stall decodes for a whole prompt.
  continuous  Orca / vLLM V0 / SGLang default: iteration-level batching, prefill first: a step is either a batch of
              whole prompts (as many as the budget, sequence limit and free KV blocks allow) or one decode step.
  static      requests are batched only when the engine is empty; the batch runs until its last sequence ends.
Roles (prefill/decode disaggregation): 'prefill' engines run prompts only and hand each finished prompt on;
'decode' engines admit prompts whose KV has arrived and only decode (a preempted sequence is recomputed there).
The client sees the first token when the decode engine picks its request up, as the disaggregated servers of
Dynamo, SGLang and TensorRT-LLM stream every token from the decode side; a vLLM decode engine recomputes that
token from the transferred KV and sends it after its first step (vllm-project/vllm#50913).

KV cache: a sequence of L tokens holds ceil(L / block_size) blocks. Admission (ADMISSIONS, per engine):
  preempt  vLLM, SGLang: a new prompt is admitted when its blocks fit with a watermark to spare (vLLM's 1%); when
           the decoding sequences outgrow the cache the most recently admitted one is preempted (recompute: its
           blocks are freed and it goes back to the head of the queue, to be prefilled again with the tokens it
           had generated).
  reserve  TensorRT-LLM's default capacity scheduler (GUARANTEED_NO_EVICT): a request is admitted only when the
           blocks of its whole sequence, prompt plus every output token, fit beside those the running requests
           will reach, so nothing is ever preempted. The request's output length stands for its max_tokens.

Prefix cache: a request admitted for the first time (or after a preemption) starts its prefill past the prompt
tokens the cache holds: its trace's cached tokens, or the workload's shared prefix once this engine has computed
it. The shared prefix's full blocks are held once, however many decoding sequences use them.

Receiving (recv_every = N > 1, SGLang's --scheduler-recv-interval): the engine takes the requests that reached it
only every N decode steps, and at the step after any prefill or mixed step (SGLang's SchedulerRecvSkipper: a decode
step weighs 1, any other step N); an idle engine takes them at once. Requests that arrive in between wait in an inbox.

Decode-only steps are fast-forwarded: while nothing but decoding happens (no admission possible, no prompt
in progress) k identical steps run as one event, k bounded by the next completion and by the KV cache; an
arrival during such a run cuts it at the step boundary that follows. Sequences' contexts are kept as
c_i + tau * G (G counts the engine's decode steps, tau the tokens a sequence gains per step: 1, or the expected
accepted length with speculative decoding), so a run costs O(1) whatever the batch.
"""

from __future__ import annotations

import heapq
from collections import deque

from perfsim.serving.energy import EnergyParams, throttle_coefficients
from perfsim.serving.steptime import StepModel

POLICIES = ("chunked", "continuous", "static")
# Each engine's default batching as it ships: (policy, token budget per step).
ENGINE_BATCHING = {
    # vLLM V1: chunked prefill, max_num_batched_tokens 8192 for the API server on GPUs of >= 70 GiB
    "vllm": ("chunked", 8192),
    # TensorRT-LLM in-flight batching: generation requests first, then prompts up to max_num_tokens = 8192
    "trtllm": ("chunked", 8192),
    # SGLang: a new prefill batch runs before any decode step (Scheduler.get_next_batch_to_run, prefill
    # first), up to max_prefill_tokens = 16384 prompt tokens; decodes join it only with --enable-mixed-chunk
    "sglang": ("continuous", 16384),
    "none": ("chunked", 8192),
}


ADMISSIONS = ("preempt", "reserve")
# Each engine's default admission (see the module docstring)
ENGINE_ADMISSION = {"trtllm": "reserve"}


def engine_admission(engine: str | None) -> str:
    return ENGINE_ADMISSION.get((engine or "none").lower(), "preempt")


# Engines whose disaggregated decode side recomputes the first token from the transferred KV rather than
# streaming the one the prefill sampled (vLLM's KV connectors: vllm-project/vllm#50913, #51919)
RECOMPUTES_FIRST_TOKEN = {"vllm"}


def engine_batching(engine: str | None, device=None, attn_dp: int = 1) -> tuple[str, int]:
    """(policy, token budget per attention-DP rank) an engine batches with by default on `device` (vLLM's for an
    unknown engine; a large-memory GPU's when no device is given). SGLang's chunked_prefill_size counts the whole
    server: with DP attention each rank gets chunked_prefill_size // dp_size (ServerArgs, 'DP attention is
    enabled. The chunked prefill size is adjusted ...'); vLLM and TensorRT-LLM budget each rank on its own."""
    name = (engine or "none").lower()
    policy, budget = ENGINE_BATCHING.get(name, ENGINE_BATCHING["vllm"])
    if device is not None and name == "sglang":
        budget = max(1, sglang_chunked_prefill(device) // max(1, attn_dp))
    elif device is not None and name in ("vllm", "none") and not vllm_large_gpu(device):
        budget = 2048
    return policy, budget


GIB = 2**30


def vllm_large_gpu(device) -> bool:
    """vLLM's large-GPU defaults (EngineArgs.get_batch_defaults): >= 70 GiB and not an A100 (PR 17885), where the
    API server batches 8192 tokens and 1024 sequences per step, else 2048 and 256."""
    return device.memory_bytes >= 70 * GIB and "a100" not in device.name.lower()


# SGLang's chunked_prefill_size and cuda_graph_max_bs (tp < 4, tp >= 4) by GPU memory, below each bound in GiB
# (sglang/srt/server_args.py, ServerArgs._handle_gpu_memory_settings)
SGLANG_BANDS = ((20, 2048, 8, 8), (35, 2048, 24, 80), (60, 4096, 32, 160), (160, 8192, 256, 512),
                (float("inf"), 16384, 512, 512))


def _sglang_band(device) -> tuple[int, int, int]:
    gib = device.memory_bytes / GIB
    return next(band[1:] for band in SGLANG_BANDS if gib < band[0])


def sglang_chunked_prefill(device) -> int:
    return _sglang_band(device)[0]


# SGLang's default max_running_requests: its request pool, min(max(KV tokens / context length x 512, 2048), 4096)
# per server (ModelRunner.init_memory_pool), shared by the DP-attention ranks (ServerArgs divides it by dp_size);
# perfsim takes its floor, 2048, as the KV cache bounds admission before it anyway
SGLANG_MAX_RUNNING = 2048
HYBRID_MAX_SEQS = 256   # default sequences per engine of a model with recurrent (linear-attention, Mamba) states


def engine_max_seqs(engine: str | None, device=None, attn_dp: int = 1, recurrent_states: bool = False) -> int:
    """Sequences an engine runs at once by default, per attention-DP rank: vLLM's (and the generic engine's) 1024 on
    a large GPU (vllm_large_gpu), else 256; SGLang's 2048 per server; TensorRT-LLM's 256. A model with recurrent
    states reserved up front per sequence (every engine but those of STATES_IN_KV_POOL) runs at most
    HYBRID_MAX_SEQS."""
    name = (engine or "none").lower()
    if name == "sglang":
        seqs = max(1, SGLANG_MAX_RUNNING // max(1, attn_dp))
    else:
        large = device is None or vllm_large_gpu(device)
        seqs = 1024 if name in ("vllm", "none") and large else 256
    if recurrent_states and not states_in_kv_pool(name):
        seqs = min(seqs, HYBRID_MAX_SEQS)
    return seqs


# Engines that allocate a hybrid model's recurrent (Mamba, linear-attention) states from the KV block pool as each
# sequence is admitted: vLLM V1's hybrid KV cache manager gives every Mamba layer one page per request in the same
# pool as the attention blocks (MambaSpec, page sizes unified). SGLang keeps a separate state pool sized for its
# max_running_requests, reserved up front, as perfsim does for the other engines.
STATES_IN_KV_POOL = {"vllm"}


def states_in_kv_pool(engine: str | None) -> bool:
    return (engine or "none").lower() in STATES_IN_KV_POOL


def engine_kv_dtype(model, dtype: str, engine: str | None) -> str | None:
    """KV-cache dtype an engine stores by default for `model` run in `dtype` (None: the activation dtype's).

    The engines' 'auto' KV dtype follows the checkpoint's KV quantization. NVIDIA ModelOpt exports quantize the KV
    cache to FP8 by default (examples/llm_ptq/hf_ptq.py --kv_cache_qformat fp8) and record it in
    hf_quant_config.json (kv_cache_quant_algo: FP8): the NVFP4 checkpoints, and the FP8 ones TensorRT-LLM serves
    for models released in BF16. TensorRT-LLM reads it, as vLLM does since its issue 34752
    (resolve_kv_cache_dtype_string). A publisher's own FP8 release (DeepSeek, MiniMax: checkpoint_dtype fp8) and
    the engines' on-the-fly FP8 carry no KV scales: BF16 KV."""
    name = (engine or "none").lower()
    if dtype == "fp4" and name in ("trtllm", "vllm"):
        return "fp8"
    if dtype == "fp8" and name == "trtllm" and model.checkpoint_dtype != "fp8":
        return "fp8"
    return None


def engine_memory(engine: str | None, device, tp: int = 1, pp: int = 1,
                  attn_dp: int = 1) -> tuple[float, float | None]:
    """(gpu_memory_utilization, kv_free_fraction) an engine sizes its KV cache with by default: vLLM keeps 0.9 of
    the GPU; TensorRT-LLM gives the KV cache 0.9 of what the weights and activations leave
    (KvCacheConfig.free_gpu_memory_fraction); SGLang keeps sglang_mem_fraction of it, its tp_size counting every
    GPU of an engine (tp x attention-DP groups)."""
    name = (engine or "none").lower()
    if name == "trtllm":
        return 1.0, 0.9
    if name == "sglang":
        return sglang_mem_fraction(device, tp * attn_dp, pp, attn_dp), None
    return 0.9, None


def sglang_mem_fraction(device, tp: int, pp: int = 1, attn_dp: int = 1) -> float:
    """SGLang's default mem_fraction_static: the GPU's memory less a reserve (MiB) for activations of one prefill
    chunk (1.5 per token), CUDA-graph buffers (2 per batch slot), large parallel groups (1024 per 8 GPUs) and
    DP attention padding, at least 10 GiB on GPUs above 60 GiB (ServerArgs._handle_gpu_memory_settings)."""
    chunk, graph_small, graph_large = _sglang_band(device)
    graph = graph_small if tp < 4 else graph_large
    mib = device.memory_bytes / 2**20
    reserved = 512 + max(chunk, 2048) * 1.5 + graph * 2 + tp * pp / 8 * 1024
    if attn_dp > 1:
        reserved += graph * attn_dp * (3 + (1.5 if graph > 300 else 0.0))
    if mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((mib - reserved) / mib, 3)


class Engine:
    """State and step logic of one engine; the simulator owns the clock and the request table `R`."""

    __slots__ = ("B", "D", "G", "P", "R", "_thr_e", "_thr_t", "budget", "busy", "busy_s", "cap", "chunks", "commit",
                 "committed",
                 "done_at", "dt", "dyn_raw", "energy", "gpus", "heap", "idx", "inbox", "k", "kind", "max_seqs",
                 "peak_blocks", "recv_every", "since_recv",
                 "prefix_ready", "sharers", "recompute_first", "first_due",
                 "policy", "preemptions", "records", "reserve", "reserved", "role", "sm", "stack", "step_e",
                 "stall", "state_blocks", "step_n", "step_t", "steps", "sumc", "t0", "tau", "unthrottled_s", "version",
                 "waiting", "watermark")

    def __init__(self, idx: int, role: str, policy: str, sm: StepModel, capacity_blocks: int, block_size: int,
                 max_seqs: int, token_budget: int, energy: EnergyParams, gpus: int, req, watermark: float = 0.01,
                 recompute_first: bool = False, admission: str = "preempt", state_blocks: int = 0,
                 recv_every: int = 1):
        self.idx, self.role, self.policy, self.sm = idx, role, policy, sm
        self.cap = capacity_blocks
        self.B = block_size
        self.max_seqs = max_seqs
        self.budget = token_budget
        self.energy = energy
        self.gpus = gpus
        self.R = req                      # the simulator's request table
        self.watermark = int(watermark * capacity_blocks)
        self.waiting: deque[int] = deque()
        self.recv_every = recv_every      # new requests are taken every recv_every decode steps (module docstring)
        self.inbox: deque[int] = deque()  # arrived, not yet taken
        self.since_recv = 0               # decode steps since requests were last taken
        self.P: list[int] = []            # prompts in progress (hold their prompt's blocks)
        self.reserved = 0                 # blocks held by P
        # blocks of one sequence's recurrent state where the engine allocates it from the KV pool on admission
        # (states_in_kv_pool); 0 where the states are reserved up front outside the pool
        self.state_blocks = state_blocks
        # admission 'reserve': blocks each admitted request will hold at its end, and their sum
        self.reserve = admission == "reserve"
        self.commit: dict[int, int] = {}
        self.committed = 0
        self.D: dict[int, int] = {}       # decoding sequences: rid -> c (context = c + tau * G)
        self.done_at: dict[int, int] = {}
        self.heap: list[tuple[int, int]] = []
        self.stack: list[int] = []        # admission order (preemption victims from the top)
        self.G = 0
        self.sumc = 0
        self.prefix_ready = False         # the workload's shared prompt prefix is in this engine's cache
        self.sharers = 0                  # decoding sequences whose prefix blocks are the cached shared ones
        # a decode engine that recomputes the first token from the transferred KV (vLLM's KV connectors): it
        # reaches the client at the end of the request's first step here, not as the KV lands
        self.recompute_first = recompute_first
        self.first_due: list[int] = []
        # tokens a decoding sequence gains per step: 1, or the expected accepted length with speculation;
        # a sequence's context is c + tau * G
        self.tau = sm.spec.tokens_per_step if sm.spec.active else 1
        # the step in flight
        self.busy = False
        self.kind = ""
        self.t0 = 0.0
        self.dt = 0.0
        self.k = 0
        self.version = 0
        self.chunks: list[tuple[int, int]] = []
        self.step_n = 0
        self.step_e = 0.0
        self.step_t = 0.0
        # accounting
        self.busy_s = 0.0
        self.unthrottled_s = 0.0
        self.dyn_raw = 0.0
        self._thr_t, self._thr_e = throttle_coefficients(energy)
        self.preemptions = 0
        self.steps = 0
        self.peak_blocks = 0
        self.stall = 0.0                  # prefill-only time since the decoding sequences' last token
        # (t0, step_s, k, decoding seqs, prefill tokens, blocks used, stall before the first of the k steps)
        self.records: list[tuple] = []

    # ---- KV accounting ---------------------------------------------------------------------------
    def blocks_bound(self, g: int | None = None) -> int:
        """An upper bound on the blocks held (exact for P; sum ceil(L/B) <= sum L/B + n for D)."""
        n = len(self.D)
        g = self.G if g is None else g
        return int((self.sumc + n * g * self.tau) // self.B) + n * (1 + self.state_blocks) + self.reserved \
            - self._shared_savings()

    def blocks_exact(self, g: int | None = None) -> int:
        g = (self.G if g is None else g) * self.tau
        B = self.B
        return int(sum((c + g + B - 1) // B for c in self.D.values())) + len(self.D) * self.state_blocks \
            + self.reserved - self._shared_savings()

    def _shared_savings(self) -> int:
        """Blocks the shared prefix saves: its full blocks are held once, not once per sequence using them
        (copy-on-write paged KV: vLLM's and SGLang's prefix caches hand out the same blocks)."""
        if not self.sharers:
            return 0
        return (self.sharers - 1) * (self.R.shared_prefix // self.B)

    def load(self) -> int:
        return len(self.D) + len(self.P) + len(self.waiting) + len(self.inbox)

    def _preempt_one(self) -> bool:
        R = self.R
        while self.stack:
            rid = self.stack.pop()
            if rid in self.D:
                c = self.D.pop(rid)
                self.sumc -= c
                self._unshare(rid)
                del self.done_at[rid]
                R.prompt[rid] = int(c + self.tau * self.G)  # recompute prompt + generated tokens
                self._release(rid)
                R.done_pf[rid] = 0
                R.preempted[rid] += 1
                self.preemptions += 1
                self.waiting.appendleft(rid)
                return True
        return False

    # ---- admission -------------------------------------------------------------------------------
    def _admit(self, now: float, limit_tokens: int | None = None, pending_limit: int | None = None) -> list[int]:
        """Move waiting requests into P (or straight into D when already prefilled); FCFS, stop at the first
        that does not fit. With limit_tokens (continuous/static batches) whole prompts must fit the budget;
        with pending_limit (chunked) prompts are admitted while the prompt tokens in progress are fewer.
        A prefilled request's first token reaches the client now, as the decode engine picks it up."""
        R, B = self.R, self.B
        admitted = []
        used = self.blocks_bound()
        tokens = 0
        pending = 0
        if pending_limit is not None:
            pending = sum(R.prompt[r] - R.done_pf[r] for r in self.P)
        while self.waiting and len(self.D) + len(self.P) < self.max_seqs:
            if pending_limit is not None and pending >= pending_limit:
                break
            rid = self.waiting[0]
            prompt = R.prompt[rid]
            if R.done_pf[rid] == 0:
                R.done_pf[rid] = self._cache_hit(rid, prompt)
            prefilled = R.done_pf[rid] >= prompt
            need = (prompt + (1 if prefilled else 0) + B - 1) // B + self.state_blocks
            if used + need + self.watermark > self.cap and (used > 0 or need > self.cap):
                break
            if self.reserve:
                final = need if self.role == "prefill" else \
                    (prompt + R.remaining[rid] + B - 1) // B + self.state_blocks
                if self.committed + final > self.cap and self.committed > 0:
                    break
                self.commit[rid] = final
                self.committed += final
            todo = prompt - R.done_pf[rid]
            if limit_tokens is not None and not prefilled and admitted and tokens + todo > limit_tokens:
                break
            self.waiting.popleft()
            used += need
            if prefilled:   # a disaggregated decode engine: the KV arrived whole, nothing shared here
                if R.first[rid] < 0:
                    if self.recompute_first:   # the prefill's token is dropped and generated again here
                        R.remaining[rid] += 1
                        self.first_due.append(rid)
                    else:
                        R.first[rid] = now
                R.shares[rid] = False
                self._join(rid)
            else:
                self.P.append(rid)
                self.reserved += need
                tokens += todo
                pending += todo
                admitted.append(rid)
        return admitted

    def _cache_hit(self, rid: int, prompt: int) -> int:
        """Prompt tokens whose KV a prefix cache already holds (vLLM's automatic prefix caching, SGLang's radix
        cache): the request's own hit from its trace, or the workload's shared prefix once this engine has
        computed it; the last prompt token is always recomputed, for its logits."""
        R = self.R
        shared = R.shared_prefix if self.prefix_ready else 0
        R.shares[rid] = shared >= self.B and shared >= R.cached[rid]
        R.hit[rid] = min(max(R.cached[rid], shared), prompt - 1)
        return R.hit[rid]

    def _unshare(self, rid: int) -> None:
        if self.R.shares[rid]:
            self.R.shares[rid] = False
            self.sharers -= 1

    def _join(self, rid: int) -> None:
        R = self.R
        c = R.prompt[rid] - self.tau * self.G
        self.D[rid] = c
        self.sumc += c
        if R.shares[rid]:
            self.sharers += 1
        done = self.G + (R.remaining[rid] if self.tau == 1 else -int(-R.remaining[rid] // self.tau))
        self.done_at[rid] = done
        heapq.heappush(self.heap, (done, rid))
        self.stack.append(rid)

    # ---- receiving requests ----------------------------------------------------------------------
    def arrive(self, rid: int) -> None:
        """A request reaches this engine: queued, or held in the inbox until the engine next receives (start)."""
        if self.recv_every > 1:
            self.inbox.append(rid)
        else:
            self.waiting.append(rid)

    def _receive(self) -> None:
        self.waiting.extend(self.inbox)
        self.inbox.clear()
        self.since_recv = 0

    # ---- planning a step -------------------------------------------------------------------------
    def start(self, now: float) -> bool:
        """Plan the next step at `now`; False when there is nothing to do."""
        if self.inbox and (self.since_recv >= self.recv_every or not (self.D or self.P or self.waiting)):
            self._receive()
        elif self.since_recv >= self.recv_every:
            self.since_recv = 0
        if self.policy == "chunked" or self.role == "prefill":
            return self._start_chunked(now)
        return self._start_batched(now)

    def _start_chunked(self, now: float) -> bool:
        if not self.waiting and not self.P:
            return self._begin_decode(now) if self.D else False
        R = self.R
        n = len(self.D) if self.role != "prefill" else 0
        budget = self.budget - n
        if self.waiting:
            self._admit(now, pending_limit=max(budget, 1))
            n = len(self.D) if self.role != "prefill" else 0
            budget = self.budget - n
        chunks = []
        for rid in self.P:
            if budget <= 0:
                break
            left = R.prompt[rid] - R.done_pf[rid]
            q = left if left < budget else budget
            chunks.append((rid, q))
            budget -= q
        if chunks:
            if n and self.blocks_bound(self.G + 1) > self.cap:
                while self.D and self.blocks_exact(self.G + 1) > self.cap:
                    self._preempt_one()
                n = len(self.D)
            return self._begin_mixed(now, n, chunks)
        if n:
            return self._begin_decode(now)
        return False

    def _start_batched(self, now: float) -> bool:
        if self.waiting and (self.policy == "continuous" or (not self.D and not self.P)):
            batch = self._admit(now, limit_tokens=self.budget if self.policy == "continuous" else None)
            if batch:
                R = self.R
                return self._begin_mixed(now, 0, [(rid, R.prompt[rid] - R.done_pf[rid]) for rid in self.P])
        if self.D:
            return self._begin_decode(now)
        return False

    def _begin_mixed(self, now: float, n: int, chunks: list[tuple[int, int]]) -> bool:
        R = self.R
        shapes = []
        samples = n
        for rid, q in chunks:
            end = R.done_pf[rid] + q
            shapes.append((q, end))
            if end >= R.prompt[rid]:
                samples += 1
        ctx = (self.sumc / n + self.tau * self.G) if n else 0.0
        t, e = self.sm.mixed(n, ctx, shapes, samples)
        need = self._thr_t * t + self._thr_e * e   # power cap: the step stretches until its power fits
        self.busy, self.kind, self.t0, self.k = True, "mixed", now, 1
        self.step_t, self.step_e, self.step_n = t, e, n
        self.dt = need if need > t else t
        self.version += 1
        self.chunks = chunks
        return True

    def _begin_decode(self, now: float) -> bool:
        D = self.D
        n = len(D)
        G = self.G
        # KV: the largest run whose growth fits under the bound sum ceil(L/B) <= sum L/B + n
        k = int(((self.cap - n * (1 + self.state_blocks) - self.reserved) * self.B - self.sumc - n * G * self.tau)
                // (n * self.tau))
        if k < 1:
            k = 1
            while D and self.blocks_exact(G + 1) > self.cap:
                self._preempt_one()
            n = len(D)
            if n == 0:
                return self.start(now) if self.waiting else False
        heap, done_at = self.heap, self.done_at
        while heap and (heap[0][1] not in D or done_at[heap[0][1]] != heap[0][0]):
            heapq.heappop(heap)
        k_done = heap[0][0] - G
        if k_done < k:
            k = k_done
        if self.inbox:   # stop where the engine next receives
            k_recv = self.recv_every - self.since_recv
            if k_recv < k:
                k = k_recv if k_recv > 1 else 1
        t, e = self.sm.decode(n, self.sumc / n + self.tau * (G + (k - 1) / 2.0))
        need = self._thr_t * t + self._thr_e * e
        self.busy, self.kind, self.t0, self.k = True, "decode", now, k
        self.step_t, self.step_e, self.step_n = t, e, n
        self.dt = need if need > t else t
        self.version += 1
        return True

    @property
    def end_time(self) -> float:
        return self.t0 + self.dt * self.k

    def interrupt(self, now: float) -> bool:
        """Cut a fast-forwarded decode run at the first step boundary after `now`; True if it moved."""
        if not self.busy or self.k <= 1 or self.kind != "decode" or self.policy == "static":
            return False
        done = int((now - self.t0) / self.dt) + 1
        if self.recv_every > 1:   # the arrival waits in the inbox for the engine's next receive
            done += -(self.since_recv + done) % self.recv_every
        if done >= self.k:
            return False
        self.k = done if done > 1 else 1
        self.version += 1
        return True

    @property
    def dyn_j(self) -> float:
        """Switching energy of all this engine's GPUs over the run (J)."""
        return self.energy.dynamic_scale * self.dyn_raw * self.gpus

    # ---- finishing a step ------------------------------------------------------------------------
    def finish(self, now: float, out: list) -> None:
        """Apply the step that ends at `now`: advance sequences; completions and hand-offs go into `out`
        as ('done', rid) and ('handoff', rid)."""
        k, n = self.k, self.step_n
        self.busy = False
        self.busy_s += self.dt * k
        self.unthrottled_s += self.step_t * k
        self.dyn_raw += self.step_e * k
        self.steps += k
        if self.kind == "decode":   # the engine received every recv_every steps of the run: where its count stands
            since = self.since_recv + k
            self.since_recv = since if since < self.recv_every else (since % self.recv_every or self.recv_every)
        else:
            self.since_recv = self.recv_every
        pf_tokens = 0
        if n:
            if self.first_due:   # their first token came out of this run's first step
                R = self.R
                for rid in self.first_due:
                    R.first[rid] = self.t0 + self.dt
                self.first_due = []
            self.G += k
            heap = self.heap
            if heap and heap[0][0] <= self.G:
                self._complete(now, out)
        if self.kind == "mixed":
            R = self.R
            for rid, q in self.chunks:
                pf_tokens += q
                R.done_pf[rid] += q
                if R.shared_prefix and R.done_pf[rid] >= R.shared_prefix:
                    self.prefix_ready = True
                if R.done_pf[rid] >= R.prompt[rid]:
                    self.P.remove(rid)
                    self.reserved -= (R.prompt[rid] + self.B - 1) // self.B + self.state_blocks
                    R.remaining[rid] -= 1
                    done = R.remaining[rid] <= 0
                    # disaggregated: the decode engine streams the first token once the KV is there (_admit)
                    if R.first[rid] < 0 and (done or self.role != "prefill"):
                        R.first[rid] = now
                    if done:
                        R.finish[rid] = now
                        self._release(rid)
                        out.append(("done", rid))
                    elif self.role == "prefill":
                        self._release(rid)
                        out.append(("handoff", rid))
                    else:
                        self._join(rid)
            self.chunks = []
        nd = len(self.D)
        used = int((self.sumc + nd * self.G * self.tau) // self.B) + nd * (1 + self.state_blocks) + self.reserved \
            - self._shared_savings()
        if used > self.cap:  # the bound overshoots: count exactly
            used = self.blocks_exact()
        if used > self.peak_blocks:
            self.peak_blocks = used
        if n:
            self.records.append((self.t0, self.dt, k, n, pf_tokens, used, self.stall))
            self.stall = 0.0
        else:
            if self.D:  # a prefill-only step stalls every decoding sequence (no chunking)
                self.stall += self.dt
            self.records.append((self.t0, self.dt, k, n, pf_tokens, used, 0.0))

    def _complete(self, now: float, out: list) -> None:
        heap, D, done_at, R, G = self.heap, self.D, self.done_at, self.R, self.G
        while heap and heap[0][0] <= G:
            step, rid = heapq.heappop(heap)
            if rid in D and done_at[rid] == step:
                c = D.pop(rid)
                del done_at[rid]
                self.sumc -= c
                self._unshare(rid)
                R.remaining[rid] = 0
                R.finish[rid] = now
                self._release(rid)
                out.append(("done", rid))

    def _release(self, rid: int) -> None:
        """Return a request's reserved blocks (admission 'reserve') when it leaves this engine."""
        if self.reserve:
            self.committed -= self.commit.pop(rid, 0)
