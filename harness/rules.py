"""What a setting may be: rules checked when a configuration is built, before any data or model is loaded,
so a bad value costs one error line instead of an hour of training (`--set fo-graddiff.lr=0` would write a
row identical to the target's; `batch_size=0` and `simu.m=0` would end in tracebacks)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


class SettingError(ValueError):
    """A setting that is not what it may be: which one, its value, and what was expected. `via` is how it was
    given, so each door words it its own way: the command line as its flag (`--set simu.lr=0`, `--grid ...`,
    `--device cuda:9`), Python as the key or keyword (`simu.lr=0` of `settings`, `device='cuda:9'`). `file` names the
    preset a value came from, the same for both."""

    def __init__(self, setting: str, value, problem: str, via: str = "set", file: str | None = None):
        self.setting, self.value, self.problem, self.via, self.file = setting, value, problem, via, file
        super().__init__(self.python())

    def _in_file(self, value: str) -> str:
        return f"{self.file}: {self.setting}{value}: {self.problem}" if self.setting else f"{self.file}: {self.problem}"

    def cli(self) -> str:
        """As the command line gave it: `--set KEY=VALUE: ...`, `--grid KEY=VALUE: ...`, `--FLAG VALUE: ...`."""
        value = "" if self.value is None else f"={self._shown}"
        if self.file:
            return self._in_file(value)
        if self.via == "flag":
            shown = "" if self.value is None else f" {self._shown}"
            return f"--{self.setting.replace('_', '-')}{shown}: {self.problem}"
        return f"--{self.via} {self.setting}{value}: {self.problem}"

    def python(self) -> str:
        """As Python gave it: `KEY=VALUE: ...` for `settings`, `grid KEY=VALUE: ...`, `KEYWORD='VALUE': ...`."""
        value = "" if self.value is None else f"={self._shown}"
        if self.file:
            return self._in_file(value)
        if self.via == "flag":
            return f"{self.setting}{'' if self.value is None else f'={self.value!r}'}: {self.problem}"
        return f"{'grid ' if self.via == 'grid' else ''}{self.setting}{value}: {self.problem}"

    @property
    def _shown(self) -> str:
        """The value as given (cut when long), an empty one as '' so that it shows."""
        return "''" if self.value == "" else shown(self.value)

    def in_file(self, file) -> SettingError:
        """The same error, naming the preset file it came from."""
        return SettingError(self.setting, self.value, self.problem, self.via, str(file))


def shown(value, limit: int = 80) -> str:
    """A value as an error line shows it: whole when short, else its start and its length (a 5-million-character
    id in a data file must not fill the terminal)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


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


DEVICE = Rule(
    lambda v: v in ("auto", "cpu", "cuda", "mps") or (isinstance(v, str) and v.startswith("cuda:") and v[5:].isdigit()),
    "auto, cpu, cuda, cuda:N or mps",
)


def at_least(n: int) -> Rule:
    return Rule(lambda v: isinstance(v, int) and v >= n, f"an integer >= {n}")


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, f"one of {', '.join(choices)}")


def check(rules: dict[str, Rule], values: dict, prefix: str) -> None:
    """Raise one `SettingError` (`--set PREFIX.KEY=VALUE: expected ...`) for the first value that breaks its
    rule."""
    for key, rule in rules.items():
        if key in values and not rule.test(values[key]):
            raise SettingError(f"{prefix}.{key}", values[key], f"expected {rule.expected}")
