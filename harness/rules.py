"""What a setting may be: rules checked when a configuration is built, before any data or model is loaded,
so a bad value costs one error line instead of an hour of training (`--set fo-graddiff.lr=0` would write a
row identical to the target's; `batch_size=0` and `simu.m=0` would end in tracebacks)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Rule:
    test: Callable[[object], bool]
    expected: str


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


POSITIVE = Rule(lambda v: _number(v) and v > 0, "a finite number > 0")
NON_NEGATIVE = Rule(lambda v: _number(v) and v >= 0, "a finite number >= 0")
FRACTION = Rule(lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
UNIT = Rule(lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]")
SHARE = Rule(lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]")


DEVICE = Rule(lambda v: v in ("auto", "cpu", "cuda", "mps") or (isinstance(v, str) and v.startswith("cuda:")
                                                                 and v[5:].isdigit()), "auto, cpu, cuda, cuda:N or mps")


def at_least(n: int) -> Rule:
    return Rule(lambda v: isinstance(v, int) and v >= n, f"an integer >= {n}")


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, f"one of {', '.join(choices)}")


def check(rules: dict[str, Rule], values: dict, prefix: str) -> None:
    """Raise one `--set PREFIX.KEY=VALUE: expected ...` error for the first value that breaks its rule."""
    for key, rule in rules.items():
        if key in values and not rule.test(values[key]):
            raise ValueError(f"--set {prefix}.{key}={values[key]}: expected {rule.expected}")
