"""Speculative decoding with draft heads: multi-token prediction (MTP, DeepSeek-V3 technical report §2.2) or
EAGLE-style heads on the target model.

Each decode step verifies k draft tokens per sequence: the target model runs on 1 + k tokens of every sequence
and the draft module (one decoder layer plus the shared LM head, as DeepSeek's MTP module) runs k times on one
token each. Draft i is accepted with probability a_i given drafts 1..i-1 were, so a step emits on average

    tau = 1 + sum_{i=1..k} prod_{j<=i} a_j        tokens per sequence (expected accepted length + 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from perfsim.errors import InvalidInputError

MAX_DRAFT_TOKENS = 8
# DeepSeek-V3 technical report (arXiv:2412.19437) §5.4.3: the second token predicted by MTP is accepted
# 85-90% of the time across generation topics; the lower end.
DEEPSEEK_MTP_ACCEPTANCE = 0.85


@dataclass(frozen=True)
class Speculation:
    draft_tokens: int = 0
    acceptance: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.draft_tokens <= MAX_DRAFT_TOKENS:
            raise InvalidInputError(f"spec-tokens: must be 0..{MAX_DRAFT_TOKENS}, got {self.draft_tokens!r}")
        if len(self.acceptance) != self.draft_tokens:
            raise InvalidInputError(f"spec-accept: give one acceptance rate per draft token "
                                    f"({self.draft_tokens}), got {len(self.acceptance)}")
        if any(not 0.0 <= a <= 1.0 for a in self.acceptance):
            raise InvalidInputError(f"spec-accept: rates must lie in [0, 1], got {list(self.acceptance)}")

    @property
    def active(self) -> bool:
        return self.draft_tokens > 0

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens a sequence emits per verification step."""
        tau, run = 1.0, 1.0
        for a in self.acceptance:
            run *= a
            tau += run
        return tau


def speculation(draft_tokens: int = 0, acceptance: str | float | list | tuple | None = None) -> Speculation:
    """A Speculation from k and the rates ('0.85,0.3', one number for every draft, or a list; default: each
    draft accepted at DeepSeek's measured MTP rate)."""
    if draft_tokens == 0:
        return Speculation()
    if not 0 <= draft_tokens <= MAX_DRAFT_TOKENS:   # before any list of rates is built
        raise InvalidInputError(f"spec-tokens: must be 0..{MAX_DRAFT_TOKENS}, got {draft_tokens!r}")
    if acceptance is None:
        rates = [DEEPSEEK_MTP_ACCEPTANCE] * draft_tokens
    elif isinstance(acceptance, str):
        try:
            rates = [float(x) for x in acceptance.split(",") if x.strip()]
        except ValueError:
            raise InvalidInputError(f"spec-accept: expected comma-separated rates in [0, 1], got {acceptance!r}") \
                from None
    elif isinstance(acceptance, (int, float)):
        rates = [float(acceptance)]
    else:
        rates = [float(x) for x in acceptance]
    if len(rates) == 1:
        rates = rates * draft_tokens
    return Speculation(int(draft_tokens), tuple(rates))
