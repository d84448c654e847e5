"""What a leaderboard column means, declared where the metric is computed (as lm-eval's `register_metric`).

A `Metric` says which way is better, how tables and plots show it, and how `harness check` compares it.
Declarations are lists of `Metric`s named by the entry-point group `harness.metrics` (the built-ins in
`pyproject.toml`: `evaluators/tofu.py`, `evaluators/lume.py`, ...), so a module that declares metrics must
import without torch: `harness table` and `harness check` read them on any machine. A column nobody declared
is a diagnostic like a declared one (`better="none"`, e.g. SIMU's neuron counts): shown, never bold, never
checked, and noted by `harness check` (`metrics.declared` tells the two apart).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib.metadata import entry_points

from harness.registry import load_entry_point

BETTER = ("higher", "lower", "half", "zero", "none")  # half: an MIA AUC, best at chance; zero: privleak
ARROWS = {"higher": "↑", "lower": "↓", "half": "→0.5", "zero": "→0", "none": ""}
GROUP = "harness.metrics"


@dataclass(frozen=True)
class Metric:
    """One column (or a family of them: `privleak_*`). `items` are the splits it is a mean over: one item of the
    smallest, times `item_weight`, is the floor under its regression tolerance; `floor` computes another
    floor where that rule does not fit, from (column, items per split, leaderboards)."""

    name: str  # the column, or a pattern with `*`
    better: str = "higher"  # one of BETTER
    display: str = ""  # a readable name for plot axes and `harness metrics`
    default: bool = False  # one of `harness table`'s default columns
    cost: bool = False  # an effort figure (time, steps): in tables, never regression-checked
    tolerance: float = 0.05  # `harness check`'s tolerance when the reference has no measured one
    scale: str = "linear"  # or "log10" (compared on that scale)
    role: str = ""  # the trade-off plots' axis: forget, retain, utility or privacy
    items: tuple[str, ...] = ()
    item_weight: float = 1.0
    floor: Callable | None = None
    parts: tuple[str, ...] = ()  # a harmonic mean's parts (columns or patterns), forget ones entering as 1 - v
    item_field: str = ""  # the per-item field the column is the mean of over its one `items` split (intervals
    #                       resample those items: harness/uncertainty.py)

    def __post_init__(self):
        if self.better not in BETTER:
            raise ValueError(f"metric {self.name}: better={self.better!r}; expected one of {', '.join(BETTER)}")
        if self.scale not in ("linear", "log10"):
            raise ValueError(f"metric {self.name}: scale={self.scale!r}; expected linear or log10")

    @property
    def arrow(self) -> str:
        return ARROWS[self.better]

    def badness(self, values):
        """`values` (a number or a Series, on the scale they are compared on) mapped so that larger is worse:
        -v where higher is better, v where lower is, |v - 0.5| for half (chance), |v| for zero, 0 for a
        diagnostic. Tables bold the smallest; `harness check` fails a rise of more than the tolerance."""
        return {
            "higher": lambda v: -v,
            "lower": lambda v: v,
            "half": lambda v: abs(v - 0.5),
            "zero": abs,
            "none": lambda v: 0 * v,
        }[self.better](values)

    def gain(self, values):
        """A 0-to-1 metric (or Series) turned so that higher is better: `1 - v` where lower is better, as LUME's
        aggregate takes its forget values; `v` otherwise."""
        return 1 - values if self.better == "lower" else values

    @property
    def checked(self) -> bool:
        """Whether `harness check` compares it: it has a better direction and is not an effort figure."""
        return self.better != "none" and not self.cost

    def one_item(self, column: str, counts: dict[str, int], boards: list) -> float:
        """How far one item can move this metric: the floor under every measured tolerance."""
        if self.floor is not None:
            return self.floor(column, counts, boards)
        sizes = [counts.get(split, 0) for split in self.items]
        return self.item_weight / min(sizes) if sizes and min(sizes) else 0.0


class MetricRegistry:
    """Declared metrics in registration order; `get(column)` finds an exact name first, then the longest
    pattern that matches."""

    def __init__(self, group: str = GROUP):
        self.group = group
        self._metrics: dict[str, Metric] = {}
        self._loaded = False

    def register(self, *declared: Metric) -> None:
        for metric in declared:
            known = self._metrics.get(metric.name)
            if known is not None and known != metric:
                raise ValueError(f"metric '{metric.name}' is already declared differently")
            self._metrics[metric.name] = metric

    @contextmanager
    def temporarily(self, *declared: Metric):
        """`declared` registered inside the block only (a test's toy metrics), then the registry as it was."""
        self._load()
        before = dict(self._metrics)
        self.register(*declared)
        try:
            yield
        finally:
            self._metrics = before

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for ep in entry_points(group=self.group):
                self.register(*load_entry_point(ep))

    def all(self) -> list[Metric]:
        self._load()
        return list(self._metrics.values())

    def _find(self, column: str) -> Metric | None:
        """The column's declaration: its exact name first, then the longest pattern that matches; None if none."""
        self._load()
        if column in self._metrics:
            return self._metrics[column]
        patterns = [m for name, m in self._metrics.items() if "*" in name and fnmatchcase(column, name)]
        return max(patterns, key=lambda m: len(m.name), default=None)

    def get(self, column: str) -> Metric:
        """The column's declaration; an undeclared column is a diagnostic (`better="none"`)."""
        return self._find(column) or Metric(column, better="none")

    def declared(self, column: str) -> bool:
        """Whether a declaration (its exact name or a pattern) covers the column: a declared diagnostic is,
        a column nobody declared is not, though `get` gives both `better="none"`."""
        return self._find(column) is not None

    def gain(self, column: str, values):
        """`Metric.gain` of the column's declaration: a 0-to-1 metric turned so that higher is better."""
        return self.get(column).gain(values)

    def role(self, columns, role: str) -> str | None:
        """The first declared column for a trade-off `role` (forget, retain, utility, privacy) among `columns`:
        TOFU's em_contains and model utility, LUME's knowledge and MMLU (or its stand-in), a plugin's."""
        return next((m.name for m in self.all() if m.role == role and m.name in set(columns)), None)

    def defaults(self, columns) -> list[str]:
        """The default table columns among `columns`: declared quality metrics in declaration order, then costs."""
        declared = {c: self.get(c) for c in columns}
        shown = [c for c, m in declared.items() if m.default]
        order = {m.name: i for i, m in enumerate(self.all())}
        return sorted(shown, key=lambda c: (declared[c].cost, order[declared[c].name]))


metrics = MetricRegistry()
