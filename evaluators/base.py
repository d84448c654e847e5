"""What every benchmark's evaluation takes and gives: its settings and its figures with their per-item records."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    """Decoding and batching of the evaluation (TOFU decodes up to 200 new tokens); Min-K%'s k. A benchmark
    may change the defaults (LUME: the raw prompt and 256 tokens)."""

    max_new_tokens: int = 200
    batch_size: int = 32
    template: str = "qa"
    min_k: float = 0.4


@dataclass
class EvalResult:
    """The figures of one model, and the per-item records they were computed from."""

    metrics: dict[str, float]
    items: list[dict] = field(default_factory=list)
