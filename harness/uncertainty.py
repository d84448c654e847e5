"""Whether a difference in a table holds: bootstrap intervals over seeds and items, and paired comparisons.

A row's figure is a mean over seeds of a per-seed value. Where the column is a mean over one split's items
(`Metric.item_field`, e.g. forget_em_contains over the forget items' em_contains) and the run's per-item values
are at hand (`read_items`), the per-seed value is itself a mean over items, and both levels are resampled: seeds
with replacement, and the split's items with replacement, the same items for every seed and method (they are
the same questions: a crossed design, whose variance is the seeds' part plus the items'). Other columns (model
utility, forget quality, an AUC) resample seeds only. One set of draws (`Resampler`) serves every method, column
and grid point of a table, so that two methods' replicates are paired: a difference is resampled as a
difference, on the same seeds and items.

Each level is resampled on its own (seeds with the items as they are, items with the seeds as they are), and
the standard error adds the two variances, each scaled by n / (n - 1) (S seeds, N items); the interval is the
figure ± Student's t times it, on Welch-Satterthwaite's degrees of freedom, so that 3 seeds weigh as 2
degrees of freedom where they dominate and 64 items as 63 where those do. Percentile intervals of a joint
resample were tried first and are not used: with 3 seeds, 11 of 40 planted nulls came out "significant" at 5%
(every resample of 3 seeds whose differences share a sign has that sign; tests/test_uncertainty.py keeps the
count). The p-value is the same t's.

Written here because scipy.stats.bootstrap resamples one axis; scipy gives the t quantiles.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness.metrics import metrics
from harness.results import read_row

ITEM_KEYS = ("method", "variant", "seed", "split", "item")  # a per-item value's identity in items.csv.gz
AGREE = 1e-9  # how closely the items' mean must give the row's figure (both are the same float sums)


@dataclass(frozen=True)
class Bootstrap:
    """The intervals' settings: their level, the number of resamples, and the seed of the draws (so a table is
    the same every time it is rendered)."""

    level: float = 0.95
    resamples: int = 1000
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.level < 1:
            raise ValueError(f"--level {self.level}: expected a number in (0, 1), e.g. 0.95")
        if self.resamples < 10:
            raise ValueError(f"--resamples {self.resamples}: expected an integer >= 10, e.g. 1000")


@dataclass(frozen=True)
class Estimate:
    """A figure, its bootstrap standard error and the degrees of freedom of its interval (NaN error: no
    interval, e.g. one seed and no per-item values)."""

    value: float
    se: float
    df: float

    def interval(self, level: float) -> tuple[float, float]:
        """value ± t(level, df) x se; NaN when there is no error to scale."""
        if math.isnan(self.se) or math.isnan(self.value) or self.df < 1:
            return math.nan, math.nan
        half = float(stats.t.ppf((1 + level) / 2, self.df)) * self.se
        return self.value - half, self.value + half

    def separated(self, level: float) -> bool:
        """The interval excludes 0."""
        lo, hi = self.interval(level)
        return bool(lo > 0 or hi < 0)

    @property
    def p(self) -> float:
        """Two-sided p-value of value = 0 against t(df); 1 when nothing varies and the value is 0."""
        if math.isnan(self.se) or math.isnan(self.value) or self.df < 1:
            return math.nan
        if self.se == 0:
            return 1.0 if self.value == 0 else 0.0
        return float(2 * stats.t.sf(abs(self.value) / self.se, self.df))


# --- the per-item values ------------------------------------------------------------------------------------


def item_fields() -> set[str]:
    """The per-item fields some declared column is the mean of (what items.csv.gz keeps)."""
    return {m.item_field for m in metrics.all() if m.item_field}


def items_from_results(results_dir: Path) -> pd.DataFrame | None:
    """The per-item values of every row of a run folder's results/ (`<cell>.items.jsonl` beside `<cell>.json`)
    that a declared column is the mean of, one line per item; None when there are none."""
    fields, frames = item_fields(), []
    for row_path in sorted(results_dir.glob("*.json")):
        items_path = row_path.with_name(row_path.name.removesuffix(".json") + ".items.jsonl")
        if not items_path.exists():
            continue
        row = read_row(row_path)  # a corrupt row is one line naming it
        records = [json.loads(line) for line in items_path.read_text(encoding="utf-8").splitlines() if line]
        kept = [
            {"split": r.get("split"), "item": str(r.get("index", r.get("id", i)))} | {f: r[f] for f in fields if f in r}
            for i, r in enumerate(records)
            if any(f in r for f in fields)
        ]
        if kept:
            frame = pd.DataFrame(kept)
            frame.insert(0, "seed", row.get("seed"))
            frame.insert(0, "variant", row.get("variant") or "")
            frame.insert(0, "method", row["method"])
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def items_path(leaderboard: Path) -> Path:
    """Where a leaderboard's per-item values are: `DIR/items.csv.gz` in a run folder, `NAME.items.csv.gz` beside
    a `NAME.csv`."""
    return (
        leaderboard / "items.csv.gz"
        if leaderboard.is_dir()
        else leaderboard.with_name(f"{leaderboard.stem}.items.csv.gz")
    )


def write_items(out_dir: Path) -> Path | None:
    """The run's per-item values as `OUT/items.csv.gz` (written with its leaderboard); None when it has none."""
    from harness.files import write_atomically

    frame = items_from_results(out_dir / "results")
    if frame is None:
        return None
    path = items_path(out_dir)
    write_atomically(path, _gzip_csv(frame))
    return path


def _gzip_csv(frame: pd.DataFrame) -> bytes:
    """The frame as gzipped CSV bytes, with no time stamp in the header (the same values give the same file)."""
    import gzip

    return gzip.compress(frame.to_csv(index=False).encode("utf-8"), mtime=0)


def read_items(leaderboard: str | Path) -> pd.DataFrame | None:
    """The per-item values beside a leaderboard (`items_path`), or from a run folder's results/ when it has no
    items.csv.gz; None when there are none (intervals then resample seeds only)."""
    leaderboard = Path(leaderboard)
    path = items_path(leaderboard)
    if path.is_file():
        try:
            frame = pd.read_csv(path, dtype={"variant": str, "item": str, "split": str})
        except (OSError, ValueError, EOFError, pd.errors.ParserError) as err:
            raise ValueError(f"{path}: not a readable per-item file ({str(err).splitlines()[0]})") from None
        missing = [k for k in ITEM_KEYS if k not in frame.columns]
        if missing:
            raise ValueError(f"{path}: not a per-item file (no {', '.join(missing)} column)")
        frame["variant"] = frame["variant"].fillna("")
        return frame
    if leaderboard.is_dir() and (leaderboard / "results").is_dir():
        return items_from_results(leaderboard / "results")
    return None


# --- resampling ---------------------------------------------------------------------------------------------


class Resampler:
    """One set of draws for a whole table: how often each seed, and each item of each split, is drawn in each
    resample. Every method's figures are resampled with the same draws, so that comparisons are paired."""

    def __init__(self, settings: Bootstrap, seeds, items: pd.DataFrame | None = None):
        self.settings, self.seeds = settings, sorted({int(s) for s in seeds if pd.notna(s)})
        rng = np.random.default_rng(settings.seed)
        self.seed_counts = _counts(rng, len(self.seeds), settings.resamples)
        self.items = Items(items)
        self.keys: dict[str, list[str]] = {}
        self._item_counts: dict[str, np.ndarray] = {}

    def item_counts(self, split: str) -> np.ndarray:
        """resamples x items of `split`: each item's draws, from a stream of the split's own (the same whichever
        columns a table shows)."""
        if split not in self._item_counts:
            frame = self.items.frame
            keys = sorted(set(frame.loc[frame["split"] == split, "item"]), key=_natural)
            rng = np.random.default_rng([self.settings.seed, zlib.crc32(split.encode())])
            self.keys[split], self._item_counts[split] = keys, _counts(rng, len(keys), self.settings.resamples)
        return self._item_counts[split]

    def replicates(self, rows: pd.DataFrame, column: str) -> Draws:
        """The resampled means of `column` over `rows` (one row, the same method and grid point, each seed; a
        reference row has none), seeds resampled with the items kept, and items resampled with the seeds kept."""
        split, field = self.items.level(column, rows)
        resamples, ones = self.settings.resamples, lambda n: np.ones((self.settings.resamples, n))
        seeded = rows["seed"].notna().all() and len(self.seeds) > 0
        seed_counts = (
            self.seed_counts[:, [self.seeds.index(int(s)) for s in rows["seed"]]] if seeded else ones(len(rows))
        )
        if split is None:
            values = rows[column].to_numpy(dtype=float)[:, None]
            mean = float(np.nanmean(values)) if not np.isnan(values).all() else math.nan  # a metric not of these rows
            return Draws(_weighted(seed_counts, values, ones(1)), np.full(resamples, mean))
        counts = self.item_counts(split)
        matrix = np.full((len(rows), counts.shape[1]), np.nan)
        position = {key: j for j, key in enumerate(self.keys[split])}
        for r, (_, row) in enumerate(rows.iterrows()):
            values = self.items.values(row, split, field, column)
            matrix[r, [position[k] for k in values.index]] = values.to_numpy(dtype=float)
        return Draws(_weighted(seed_counts, matrix, ones(counts.shape[1])), _weighted(ones(len(rows)), matrix, counts))

    def estimate(self, value: float, draws: Draws, groups: list[pd.DataFrame], column: str) -> Estimate:
        """`value` (a mean, or a difference of the `groups`' means) with its standard error: the seeds' part
        (their replicates' variance x S / (S - 1), S the seeds every group has) plus the items' part (the same
        with N items, where every group has per-item values), on Welch-Satterthwaite's degrees of freedom. A
        group of one seed has no seeds' part; with no items' part either, there is no error."""
        seed_sets = [set(g["seed"].dropna().astype(int)) if g["seed"].notna().all() else set() for g in groups]
        seeds = len(set.intersection(*seed_sets)) if seed_sets else 0
        if seeds < 2 and any(len(g) > 1 for g in groups):
            return Estimate(value, math.nan, 0)  # several seeds, but too few shared to pair them
        levels = [self.items.level(column, g)[0] for g in groups]
        items = min(self.item_counts(split).shape[1] for split in levels) if all(levels) else 0
        parts = []  # (variance, degrees of freedom)
        for replicates, n in ((draws.seeds, seeds), (draws.items, items)):
            kept = replicates[~np.isnan(replicates)]
            if n >= 2 and len(kept) >= 2:
                parts.append((float(kept.var()) * n / (n - 1), n - 1))
        if not parts:
            return Estimate(value, math.nan, 0)
        variance = sum(v for v, _ in parts)
        spread = sum(v * v / df for v, df in parts)
        df = variance * variance / spread if spread > 0 else min(df for _, df in parts)
        return Estimate(value, math.sqrt(variance), df)


@dataclass(frozen=True)
class Draws:
    """A figure's bootstrap replicates: seeds resampled (items as they are), and items resampled (seeds as they
    are). Two methods' draws subtract into their paired difference's."""

    seeds: np.ndarray
    items: np.ndarray

    def __sub__(self, other: Draws) -> Draws:
        return Draws(self.seeds - other.seeds, self.items - other.items)

    def map(self, function) -> Draws:
        return Draws(function(self.seeds), function(self.items))


def _counts(rng, n: int, resamples: int) -> np.ndarray:
    """resamples x n draw counts of n things drawn n times with replacement."""
    if n == 0:
        return np.zeros((resamples, 0))
    return rng.multinomial(n, np.full(n, 1 / n), size=resamples).astype(float)


def _weighted(seed_counts: np.ndarray, matrix: np.ndarray, item_counts: np.ndarray) -> np.ndarray:
    """Per resample, the mean of `matrix` (seeds x items, NaN where absent) weighted by the draws of its seeds
    and items; NaN when nothing present was drawn."""
    present = ~np.isnan(matrix)
    values = np.where(present, matrix, 0.0)
    total = np.einsum("bs,si,bi->b", seed_counts, values, item_counts)
    weight = np.einsum("bs,si,bi->b", seed_counts, present.astype(float), item_counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / weight, np.nan)


def _natural(key: str):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _seed_key(seed) -> int:
    return -1 if seed is None or pd.isna(seed) else int(seed)


def _variant(row: pd.Series) -> str:
    variant = row.get("variant")
    return "" if variant is None or (isinstance(variant, float) and math.isnan(variant)) else str(variant)


class Items:
    """A per-item file indexed by row (method, variant, seed) and split, read once per table."""

    def __init__(self, frame: pd.DataFrame | None):
        self.frame, self.cells = frame, {}
        if frame is not None:
            seeds = frame["seed"].map(_seed_key)
            for key, group in frame.groupby([frame["method"], frame["variant"], seeds, frame["split"]], sort=False):
                self.cells[key] = group.set_index("item")

    def level(self, column: str, rows: pd.DataFrame) -> tuple[str | None, str | None]:
        """(split, field) when `column` is a mean over a split's items and every row has them; (None, None)
        else."""
        metric = metrics.get(column)
        if self.frame is None or not metric.item_field or len(metric.items) != 1:
            return None, None
        split, field = metric.items[0], metric.item_field
        if field not in self.frame.columns:
            return None, None
        if all(len(self.values(row, split, field, column)) for _, row in rows.iterrows()):
            return split, field
        return None, None

    def values(self, row: pd.Series, split: str, field: str, column: str) -> pd.Series:
        """One row's values of `field` on `split`'s items, indexed by item (empty when the file has none). They
        must give the row's figure: a mismatch (items of another run copied beside it) is an error naming it."""
        cell = self.cells.get((row["method"], _variant(row), _seed_key(row.get("seed")), split))
        if cell is None or field not in cell:
            return pd.Series(dtype=float)
        values = cell[field].dropna()
        figure = row.get(column)
        if len(values) and figure is not None and pd.notna(figure):
            if abs(values.mean() - float(figure)) > AGREE * max(1.0, abs(float(figure))):
                raise ValueError(
                    f"the per-item values of {row['method']} {_variant(row)} seed {row.get('seed')} give {column} "
                    f"{values.mean():.6g}, the leaderboard {float(figure):.6g}: the items file is another run's "
                    f"(remove it, or rerun)"
                )
        return values


def resampler_for(frame: pd.DataFrame, items: pd.DataFrame | None, settings: Bootstrap) -> Resampler:
    """The draws for a leaderboard: every seed of its rows, every item of its per-item file."""
    return Resampler(settings, frame["seed"].dropna().unique(), items)
