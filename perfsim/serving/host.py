"""Host overhead of a serving engine: the time of one step spent outside the model's kernels (scheduling,
input preparation, sampling, detokenisation and output handling), which the GPU waits out.

    t_host(n) = step_s + per_seq_s * n        (n sequences in the step on one attention-DP rank)

This is the CPU-overhead term Vidur measures per batch size (schedule, prepare inputs, sampler, process outputs),
reduced to its affine form. A synchronous engine runs it between the GPU's steps (t = t_gpu + t_host); an engine
that schedules asynchronously prepares step i + 1 while the GPU runs step i, two overlapped pipeline stages whose
slower one sets the pace (t = max(t_gpu, t_host)). vLLM schedules asynchronously by default from v0.14.0 (its
release notes: "Async scheduling is now enabled by default"); TensorRT-LLM's PyTorch executor runs its overlap
scheduler by default (LlmArgs.disable_overlap_scheduler = False).

With pipeline parallelism every stage's host handles every microbatch (each rank schedules it, prepares its
inputs and updates its requests), so one engine step, a microbatch's pass through the pp stages, costs pp times a
rank's host work: t = t_gpu (+) pp t_host. TensorRT-LLM runs pipelines in a loop of its own without the overlap
scheduler (PyExecutor._executor_loop_pp: schedule, forward, pass the sampled tokens on to the next rank, update),
so there the host adds to the GPU's time.

vLLM's coefficients are fitted on measured serving runs (perfsim.serving.validation.validate_mlenergy, on a random
half of ML.ENERGY's vLLM rows, which ran vLLM 0.11.1, synchronous) and stored in host_fit.yaml with their source;
TensorRT-LLM's come from its developers' measurement (PUBLISHED); an engine with neither, or engine 'none', has no
host overhead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from perfsim.errors import InvalidInputError

FIT_FILE = Path(__file__).resolve().parent / "host_fit.yaml"
ENGINES = ("vllm", "trtllm", "sglang", "none")
DEFAULT_ENGINE = "vllm"   # the simulator's scheduler defaults are vLLM's
# the first release of an engine that schedules asynchronously by default: vLLM v0.14.0 (release notes: "Async
# scheduling is now enabled by default")
ASYNC_SINCE = {"vllm": (0, 14), "trtllm": (0, 0)}
# engines that run pipeline parallelism synchronously, whatever they do without it (see the module docstring)
SYNC_PIPELINE = ("trtllm",)
# Host overheads measured by an engine's developers, for engines host_fit.yaml has no fit for.
# TensorRT-LLM PyTorch executor: 45.11 ms (GPT-OSS-120B) and 44.53 ms (Llama-3.2-1B) of host time per iteration
# with 1536 sequences per rank (GB200, attention DP 2, max_batch_size 1536, 3072 clients, ISL = OSL = 1k;
# NVIDIA/TensorRT-LLM pull request 10273, C++ scheduler). A 1B and a 120B model take the same time: the work is
# per sequence, 44.82 ms / 1536 = 29.2 us each; no fixed part per step is given (none is assumed).
PUBLISHED = {"trtllm": {"step_s": 0.0, "per_seq_s": 44.82e-3 / 1536,
                        "source": "NVIDIA/TensorRT-LLM PR 10273: host_step_time 45.11 / 44.53 ms per iteration at "
                                  "1536 sequences per rank (GB200, GPT-OSS-120B / Llama-3.2-1B)"}}


@dataclass(frozen=True)
class HostOverhead:
    step_s: float = 0.0      # per step, whatever its batch
    per_seq_s: float = 0.0   # per sequence in the step
    overlapped: bool = False  # async scheduling: under the GPU's previous step instead of after it

    def __post_init__(self) -> None:
        if self.step_s < 0 or self.per_seq_s < 0:
            raise InvalidInputError(f"host overhead: must be >= 0 s, got step {self.step_s!r}, "
                                    f"per sequence {self.per_seq_s!r}")

    def time(self, n: float) -> float:
        """Host seconds of a step with n sequences."""
        return self.step_s + self.per_seq_s * n

    def step(self, gpu_s: float, n: float) -> float:
        """Seconds of a step whose kernels take gpu_s, with n sequences: host and GPU in turn, or overlapped."""
        h = self.step_s + self.per_seq_s * n
        if self.overlapped:
            return gpu_s if gpu_s > h else h
        return gpu_s + h

    def plus(self, step_s: float) -> HostOverhead:
        return HostOverhead(self.step_s + step_s, self.per_seq_s, self.overlapped)


@lru_cache(maxsize=1)
def _fits() -> dict:
    import yaml
    fitted = (yaml.safe_load(FIT_FILE.read_text()) or {}).get("engines", {}) if FIT_FILE.exists() else {}
    return {**PUBLISHED, **fitted}


def host_overhead(engine: str | None, async_scheduling: bool | None = None, pp: int = 1) -> HostOverhead:
    """The host overhead of one step of `engine` (zero for 'none' or an engine without data) over `pp` pipeline
    stages, overlapped with the GPU's steps when the engine schedules asynchronously (None: as the engine does by
    default) and its pipeline loop can."""
    engine = (engine or "none").lower()
    if engine not in ENGINES:
        raise InvalidInputError(f"engine: got {engine!r}; accepted: {', '.join(ENGINES)}")
    fit = _fits().get(engine)
    if not fit:
        return HostOverhead()
    overlapped = schedules_async(engine) if async_scheduling is None else bool(async_scheduling)
    overlapped = overlapped and not (pp > 1 and engine in SYNC_PIPELINE)   # that loop has no overlap to turn on
    return HostOverhead(pp * float(fit["step_s"]), pp * float(fit["per_seq_s"]), overlapped)


def schedules_async(engine: str, version=None) -> bool:
    """Whether `engine` schedules asynchronously by default: at release `version` (e.g. '0.18.0'), or in its
    current releases when no version is given."""
    since = ASYNC_SINCE.get((engine or "none").lower())
    if since is None:
        return False
    numbers = re.findall(r"\d+", "" if version is None else str(version))
    if not numbers:
        return True
    return (int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0) >= since


def reload_fits() -> None:
    """Forget the loaded fits (after host_fit.yaml was rewritten)."""
    _fits.cache_clear()


def modelled_engines() -> tuple[str, ...]:
    """Engines with a host overhead: fitted here or published."""
    return tuple(_fits())
