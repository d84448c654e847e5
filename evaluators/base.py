"""What every benchmark's evaluation takes and gives: its settings and its figures with their per-item records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from harness import rules
from harness.data.templates import TEMPLATES


@dataclass
class EvalConfig:
    """Decoding and batching of the evaluation (TOFU decodes up to 200 new tokens); Min-K%'s k; whether the
    GradNorm attack runs (one backward pass per forget and holdout item, with a gradient the size of the
    weights: `eval.gradnorm=false` leaves it out where that does not fit). A benchmark may change the
    defaults (LUME: the raw prompt and 256 tokens)."""

    RULES: ClassVar[dict] = {
        "min_k": rules.SHARE,
        "template": rules.one_of(*TEMPLATES),
        "max_new_tokens": rules.at_least(1),
        "batch_size": rules.at_least(1),
    }

    max_new_tokens: int = 200
    batch_size: int = 32
    template: str = "qa"
    min_k: float = 0.4
    gradnorm: bool = True

    ADDED_LATER: ClassVar[dict] = {"gradnorm": True}  # in a row's hash only when set otherwise

    def hashed(self) -> dict:
        """The settings a row's hash covers: all of them, less those added later while at their defaults, so
        hashes made before they existed stay valid."""
        return {k: v for k, v in asdict(self).items() if k not in self.ADDED_LATER or v != self.ADDED_LATER[k]}


@dataclass
class EvalResult:
    """The figures of one model, and the per-item records they were computed from."""

    metrics: dict[str, float]
    items: list[dict] = field(default_factory=list)
