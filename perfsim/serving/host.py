"""Host overhead of a serving engine: the time of one step spent outside the model's kernels (scheduling,
input preparation, sampling, detokenisation and output handling), which the GPU waits out.

    t_host(n) = step_s + per_seq_s * n        (n sequences in the step on one attention-DP rank)

This is the CPU-overhead term Vidur measures per batch size (schedule, prepare inputs, sampler, process outputs),
reduced to its affine form. The coefficients of each engine are fitted on measured serving runs
(perfsim.serving.validation.validate_mlenergy, on a random half of ML.ENERGY's vLLM rows) and stored in
host_fit.yaml with their source; an engine without a fit, or engine 'none', has no host overhead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from perfsim.errors import InvalidInputError

FIT_FILE = Path(__file__).resolve().parent / "host_fit.yaml"
ENGINES = ("vllm", "trtllm", "sglang", "none")
DEFAULT_ENGINE = "vllm"   # the simulator's scheduler defaults are vLLM's


@dataclass(frozen=True)
class HostOverhead:
    step_s: float = 0.0      # per step, whatever its batch
    per_seq_s: float = 0.0   # per sequence in the step

    def __post_init__(self) -> None:
        if self.step_s < 0 or self.per_seq_s < 0:
            raise InvalidInputError(f"host overhead: must be >= 0 s, got step {self.step_s!r}, "
                                    f"per sequence {self.per_seq_s!r}")

    def time(self, n: float) -> float:
        """Host seconds of a step with n sequences."""
        return self.step_s + self.per_seq_s * n

    def plus(self, step_s: float) -> HostOverhead:
        return HostOverhead(self.step_s + step_s, self.per_seq_s)


@lru_cache(maxsize=1)
def _fits() -> dict:
    import yaml
    if not FIT_FILE.exists():
        return {}
    return (yaml.safe_load(FIT_FILE.read_text()) or {}).get("engines", {})


def host_overhead(engine: str | None) -> HostOverhead:
    """The fitted host overhead of `engine` (zero for 'none' or an engine no data was fitted for)."""
    engine = (engine or "none").lower()
    if engine not in ENGINES:
        raise InvalidInputError(f"engine: got {engine!r}; accepted: {', '.join(ENGINES)}")
    fit = _fits().get(engine)
    if not fit:
        return HostOverhead()
    return HostOverhead(float(fit["step_s"]), float(fit["per_seq_s"]))


def reload_fits() -> None:
    """Forget the loaded fits (after host_fit.yaml was rewritten)."""
    _fits.cache_clear()


def fitted_engines() -> tuple[str, ...]:
    return tuple(_fits())
