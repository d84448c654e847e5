"""What every benchmark's evaluation takes and gives: its settings and its figures with their per-item records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from harness import rules
from harness.data.templates import TEMPLATES


@dataclass
class EvalConfig:
    """Decoding and batching of the evaluation (TOFU decodes up to 200 new tokens); Min-K%'s k. A benchmark
    may change the defaults (LUME: the raw prompt and 256 tokens)."""

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


@dataclass
class EvalResult:
    """The figures of one model, and the per-item records they were computed from."""

    metrics: dict[str, float]
    items: list[dict] = field(default_factory=list)
