"""`harness check`: a run against a reference leaderboard, within tolerances measured by `harness noise`.

A figure of a model trained from scratch moves with the CPU kernels that computed it (floating point rounds
differently under AVX2, AVX-512 or scalar code, and training amplifies it), so the check compares, per method
and grid point, the mean over the seeds both leaderboards hold, and allows each metric the noise floor
measured for it (`NAME.tolerances.json` beside the reference `NAME.csv`). Forget quality, a KS p-value that
spans hundreds of decades, is compared in log10. Only a move in the worse direction fails.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.metrics import metrics
from harness.rows import IDENTITY_COLUMNS, swept_columns
from harness.tables import row_labels


def on_scale(column: str, values):
    """A metric's values on the scale it is compared on: its declared scale (log10 for forget quality)."""
    if metrics.get(column).scale == "log10":
        return (
            values.clip(lower=1e-300).map(math.log10)
            if isinstance(values, pd.Series)
            else math.log10(max(values, 1e-300))
        )
    return values


def checked_columns(run: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    """Numeric metric columns both leaderboards have that are declared with a better direction: not identity
    columns (timings among them), swept hyperparameters or diagnostics (declared so, like SIMU's, or declared
    by no metric at all)."""
    return [c for c in _metric_columns(reference) if c in run.columns and metrics.get(c).checked]


def _metric_columns(reference: pd.DataFrame) -> list[str]:
    """The reference's numeric columns that are not identity columns or swept hyperparameters."""
    skip = set(IDENTITY_COLUMNS) | set(swept_columns(reference))
    return [c for c in reference.columns if c not in skip and pd.api.types.is_numeric_dtype(reference[c])]


def column_notes(run: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    """What would leave a column out of the check without a word: a figure of the reference declared by no
    metric (a renamed column, a plugin's undeclared one), and a checked column of the reference the run lacks."""
    notes = []
    for column in _metric_columns(reference):
        if not metrics.declared(column):
            notes.append(f"{column}: declared by no metric, so not checked")
        elif metrics.get(column).checked and column not in run.columns:
            notes.append(f"{column}: in the reference, missing from the run")
    return notes


def tolerances_path(reference: str | Path) -> Path:
    """`NAME.tolerances.json` beside a reference `NAME.csv` (or in a run folder)."""
    path = Path(reference)
    return path / "tolerances.json" if path.is_dir() else path.with_name(path.stem + ".tolerances.json")


def read_tolerances(reference: str | Path) -> dict | None:
    """The measured tolerances of a reference leaderboard, or None when it has no tolerance file."""
    path = tolerances_path(reference)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return {column: float(entry["tolerance"]) for column, entry in data["metrics"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: expected a tolerance file written by `harness noise` ({err})") from None


def _cells(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Rows per table label (method and grid point), indexed by seed ('' for the reference rows)."""
    labels = row_labels(frame)
    seeds = frame["seed"].astype("string").fillna("")
    return {label: rows.set_axis(seeds[rows.index]) for label, rows in frame.groupby(labels, sort=False)}


@dataclass
class Check:
    """What `harness check` found: regressions (each fails the check) and notes (absent seeds, methods and
    columns, undeclared columns)."""

    regressions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cells: int = 0
    metrics: int = 0


def check(
    run: pd.DataFrame,
    reference: pd.DataFrame,
    tolerances: dict[str, float] | None = None,
    overrides: dict[str, float] | None = None,
) -> Check:
    """Per method (and grid point), the run's mean over the seeds it shares with the reference against the
    reference's mean over the same seeds, each metric on its scale, failing when it got worse by more than
    its tolerance. Seeds, methods or columns the run lacks, and the reference's columns no metric declares,
    are noted, not failed; a run sharing no cell is an error."""
    overrides, tolerances = overrides or {}, tolerances or {}
    unknown = sorted(set(overrides) - set(reference.columns))
    if unknown:
        raise ValueError(f"--tolerance {unknown[0]}: not a column of the reference leaderboard")
    columns = checked_columns(run, reference)
    run_cells, found = _cells(run), Check(notes=column_notes(run, reference), metrics=len(columns))
    for label, ref_rows in _cells(reference).items():
        if label not in run_cells:
            found.notes.append(f"{label}: absent from the run, not checked")
            continue
        seeds = [s for s in ref_rows.index if s in set(run_cells[label].index)]
        absent = [s for s in ref_rows.index if s not in seeds]
        if not seeds:
            found.notes.append(f"{label}: none of the reference's seeds ({', '.join(absent)}) is in the run")
            continue
        if absent:
            found.notes.append(
                f"{label}: seed {', '.join(absent)} of the reference absent from the run; checked "
                f"on seed {', '.join(seeds)}"
            )
        found.cells += len(seeds)
        name = label if seeds == [""] else f"{label} (seed {', '.join(seeds)})"
        for column in columns:
            tol = overrides.get(column, tolerances.get(column, metrics.get(column).tolerance))
            line = _regression(name, column, ref_rows.loc[seeds, column], run_cells[label].loc[seeds, column], tol)
            if line:
                found.regressions.append(line)
    if not found.cells:
        raise ValueError("the run shares no method and seed with the reference leaderboard")
    return found


def _regression(name: str, column: str, was: pd.Series, now: pd.Series, tol: float) -> str | None:
    """One line when the mean of `now` is worse than the mean of `was` by more than `tol` on the metric's
    scale (a value missing from the run counts as worse); None otherwise."""
    was, now = pd.to_numeric(was), pd.to_numeric(now)
    if was.isna().all():
        return None
    was_mean, now_mean = was.mean(), now.mean()
    metric = metrics.get(column)
    worse = (
        math.inf
        if now.isna().any()
        else metric.badness(on_scale(column, now_mean)) - metric.badness(on_scale(column, was_mean))
    )
    if worse <= tol:
        return None
    unit = " in log10" if metric.scale == "log10" else ""
    return f"{name}: {column} {was_mean:.4g} -> {now_mean:.4g} ({metric.arrow} is better; tolerance {tol:.3g}{unit})"
