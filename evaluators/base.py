"""What every benchmark's evaluation takes and gives: its settings and its figures with their per-item records."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from harness import rules
from harness.data.templates import TEMPLATES

STOP_RULE = re.compile(r"([A-Za-z0-9_.]+)(<=|>=)([-+0-9.eE]+)")  # eval.stop_at's METRIC<=V or METRIC>=V
MUSE_RULE = "muse"  # eval.stop_at=muse: MUSE's rule, PrivLeak >= 0 (the attack's AUC has fallen to the retain
#   model's), on the column the benchmark names (`Benchmark.privleak_column`: TOFU's LOSS attack, MUSE's Min-K%)


def _steps_or_epoch(value) -> bool:
    text = str(value)
    return text in ("", "epoch") or (text.isdigit() and int(text) >= 1 and not isinstance(value, bool))


def _stop_rule(value) -> bool:
    match = STOP_RULE.fullmatch(str(value))
    try:
        return value in ("", MUSE_RULE) or (match is not None and float(match[3]) == float(match[3]))
    except ValueError:
        return False


@dataclass
class EvalConfig:
    """Decoding and batching of the evaluation (TOFU decodes up to 200 new tokens); Min-K%'s k; whether the
    GradNorm attack runs (one backward pass per forget and holdout item, with a gradient the size of the
    weights: `eval.gradnorm=false` leaves it out where that does not fit). A benchmark may change the
    defaults (LUME: the raw prompt and 256 tokens). The curves' settings (harness/curves.py): `every`, a light
    evaluation every N optimizer steps or each `epoch` on `curve_items` items of each split (0: all of them),
    and `stop_at`, a rule (`METRIC<=V`, `METRIC>=V`, or `muse`) that stops a cell at the first evaluation
    meeting it."""

    RULES: ClassVar[dict] = {
        "min_k": rules.SHARE,
        "template": rules.one_of(*TEMPLATES),
        "max_new_tokens": rules.at_least(1),
        "batch_size": rules.at_least(1),
        "every": rules.Rule(_steps_or_epoch, "a number of optimizer steps >= 1, or epoch"),
        "curve_items": rules.at_least(0),
        "stop_at": rules.Rule(_stop_rule, "METRIC<=V, METRIC>=V (a leaderboard column and a number) or muse"),
    }

    max_new_tokens: int = 200
    batch_size: int = 32
    template: str = "qa"
    min_k: float = 0.4
    gradnorm: bool = True
    every: str = ""
    curve_items: int = 32
    stop_at: str = ""

    ADDED_LATER: ClassVar[dict] = {"gradnorm": True}  # in a row's hash only when set otherwise
    CURVES: ClassVar[tuple[str, ...]] = ("every", "curve_items", "stop_at")  # a cell's, not the evaluation's

    def hashed(self) -> dict:
        """The settings a row's hash covers: all of them, less those added later while at their defaults, so
        hashes made before they existed stay valid, and less the curves' (which change no figure of a row
        unless `stop_at` stops its cell: then `stopping` is in the cell's hash)."""
        return {
            k: v
            for k, v in asdict(self).items()
            if k not in self.CURVES and (k not in self.ADDED_LATER or v != self.ADDED_LATER[k])
        }

    def stopping(self) -> list[dict]:
        """What decides where `stop_at` stops a cell, as parts of the cell's hash; none when there is no rule."""
        return [{k: str(getattr(self, k)) for k in self.CURVES}] if self.stop_at else []

    def stop_rule(self, privleak_column: str) -> str:
        """`stop_at` as METRIC<=V or METRIC>=V (`muse` spelled out on the benchmark's PrivLeak column); '' for
        none."""
        return f"{privleak_column}>=0" if self.stop_at == MUSE_RULE else self.stop_at


@dataclass
class EvalResult:
    """The figures of one model, and the per-item records they were computed from."""

    metrics: dict[str, float]
    items: list[dict] = field(default_factory=list)
