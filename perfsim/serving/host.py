"""Host overhead of a serving engine: the time of one step spent outside the model's kernels (scheduling,
input preparation, sampling, detokenisation and output handling), which the GPU waits out.

    t_host(n) = step_s + per_seq_s * n        (n sequences in the step on one attention-DP rank)

This is the CPU-overhead term Vidur measures per batch size (schedule, prepare inputs, sampler, process outputs),
reduced to its affine form. A synchronous engine runs it between the GPU's steps (t = t_gpu + t_host); an engine
that schedules asynchronously prepares step i + 1 while the GPU runs step i, two overlapped pipeline stages whose
slower one sets the pace (t = max(t_gpu, t_host)). vLLM schedules asynchronously by default from v0.14.0 (its
release notes: "Async scheduling is now enabled by default"). The coefficients of each engine are fitted on
measured serving runs (perfsim.serving.validation.validate_mlenergy, on a random half of ML.ENERGY's vLLM rows,
which ran vLLM 0.11.1, synchronous) and stored in host_fit.yaml with their source; an engine without a fit, or
engine 'none', has no host overhead.
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
ASYNC_SINCE = {"vllm": (0, 14)}


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
    if not FIT_FILE.exists():
        return {}
    return (yaml.safe_load(FIT_FILE.read_text()) or {}).get("engines", {})


def host_overhead(engine: str | None, async_scheduling: bool | None = None) -> HostOverhead:
    """The fitted host overhead of `engine` (zero for 'none' or an engine no data was fitted for), overlapped
    with the GPU's steps when the engine schedules asynchronously (None: as the engine does by default)."""
    engine = (engine or "none").lower()
    if engine not in ENGINES:
        raise InvalidInputError(f"engine: got {engine!r}; accepted: {', '.join(ENGINES)}")
    fit = _fits().get(engine)
    if not fit:
        return HostOverhead()
    overlapped = schedules_async(engine) if async_scheduling is None else bool(async_scheduling)
    return HostOverhead(float(fit["step_s"]), float(fit["per_seq_s"]), overlapped)


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


def fitted_engines() -> tuple[str, ...]:
    return tuple(_fits())
