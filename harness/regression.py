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
from harness.results import IDENTITY_COLUMNS, REFERENCE_ROWS, swept_columns
from harness.tables import badness, row_labels

SIGMAS = 3.0   # a tolerance covers 3 standard deviations of the measured noise, on the metric's scale


def on_scale(column: str, values):
    """A metric's values on the scale it is compared on: its declared scale (log10 for forget quality)."""
    if metrics.get(column).scale == "log10":
        return values.clip(lower=1e-300).map(math.log10) if isinstance(values, pd.Series) else \
            math.log10(max(values, 1e-300))
    return values


def checked_columns(run: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    """Numeric metric columns both leaderboards have that are declared with a better direction: not identity
    columns (timings among them), swept hyperparameters or diagnostics (undeclared, like SIMU's)."""
    skip = set(IDENTITY_COLUMNS) | set(swept_columns(reference))
    return [c for c in reference.columns if c in run.columns and c not in skip
            and metrics.get(c).checked and pd.api.types.is_numeric_dtype(reference[c])]


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
    """What `harness check` found: regressions (each fails the check) and notes (absent seeds, methods)."""

    regressions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cells: int = 0
    metrics: int = 0


def compare(run: pd.DataFrame, reference: pd.DataFrame, tolerances: dict[str, float] | None = None,
            overrides: dict[str, float] | None = None) -> Check:
    """Per method (and grid point), the run's mean over the seeds it shares with the reference against the
    reference's mean over the same seeds, each metric on its scale, failing when it got worse by more than
    its tolerance. Seeds or methods the run lacks are noted, not failed; a run sharing no cell is an error."""
    overrides, tolerances = overrides or {}, tolerances or {}
    unknown = sorted(set(overrides) - set(reference.columns))
    if unknown:
        raise ValueError(f"--tolerance {unknown[0]}: not a column of the reference leaderboard")
    columns = checked_columns(run, reference)
    run_cells, check = _cells(run), Check(metrics=len(columns))
    for label, ref_rows in _cells(reference).items():
        if label not in run_cells:
            check.notes.append(f"{label}: absent from the run, not checked")
            continue
        seeds = [s for s in ref_rows.index if s in set(run_cells[label].index)]
        absent = [s for s in ref_rows.index if s not in seeds]
        if not seeds:
            check.notes.append(f"{label}: none of the reference's seeds ({', '.join(absent)}) is in the run")
            continue
        if absent:
            check.notes.append(f"{label}: seed {', '.join(absent)} of the reference absent from the run; checked "
                               f"on seed {', '.join(seeds)}")
        check.cells += len(seeds)
        name = label if seeds == [""] else f"{label} (seed {', '.join(seeds)})"
        for column in columns:
            tol = overrides.get(column, tolerances.get(column, metrics.get(column).tolerance))
            line = _regression(name, column, ref_rows.loc[seeds, column], run_cells[label].loc[seeds, column], tol)
            if line:
                check.regressions.append(line)
    if not check.cells:
        raise ValueError("the run shares no method and seed with the reference leaderboard")
    return check


def _regression(name: str, column: str, was: pd.Series, now: pd.Series, tol: float) -> str | None:
    """One line when the mean of `now` is worse than the mean of `was` by more than `tol` on the metric's
    scale (a value missing from the run counts as worse); None otherwise."""
    was, now = pd.to_numeric(was), pd.to_numeric(now)
    if was.isna().all():
        return None
    was_mean, now_mean = was.mean(), now.mean()
    worse = math.inf if now.isna().any() else \
        badness(column, on_scale(column, now_mean)) - badness(column, on_scale(column, was_mean))
    if worse <= tol:
        return None
    unit = " in log10" if metrics.get(column).scale == "log10" else ""
    return (f"{name}: {column} {was_mean:.4g} -> {now_mean:.4g} ({metrics.get(column).arrow} is better; "
            f"tolerance {tol:.3g}{unit})")


# --- tolerances from a measured noise floor ------------------------------------------------------------------

def item_counts(run_dir: Path) -> dict[str, int]:
    """Items per evaluated split, read from the target row's per-item file."""
    path = run_dir / "results" / "target.items.jsonl"
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        split = json.loads(line)["split"]
        counts[split] = counts.get(split, 0) + 1
    return counts


def one_item(column: str, counts: dict[str, int], boards: list[pd.DataFrame]) -> float:
    """How far one item of the split a metric is computed on can move it (its declaration says how): the
    floor under every tolerance."""
    return metrics.get(column).one_item(column, counts, boards)


def noise_table(boards: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Long table of every (row label, seed, metric) across environments: one column per environment, then
    the spread (max - min) on the metric's scale."""
    first = next(iter(boards.values()))
    columns = checked_columns(first, first)
    records = []
    for env, board in boards.items():
        labels, seeds = row_labels(board), board["seed"].astype("string").fillna("")
        for column in columns:
            for label, seed, value in zip(labels, seeds, board[column]):
                records.append({"method": label, "seed": seed, "metric": column, "environment": env,
                                "value": on_scale(column, value) if pd.notna(value) else value})
    wide = pd.DataFrame(records).set_index(["method", "seed", "metric", "environment"])["value"]
    wide = wide.unstack(sort=False)[list(boards)].astype(float)
    wide["spread"] = wide.max(axis=1) - wide.min(axis=1)
    return wide.reset_index()


def derive_tolerances(boards: dict[str, pd.DataFrame], counts: dict[str, int], sigmas: float = SIGMAS) -> dict:
    """Per metric: the noise's pooled standard deviation across environments (each method x seed a group),
    its largest spread, the one-item floor, and the tolerance max(sigmas x sigma, spread, one item)."""
    table = noise_table(boards)
    envs = list(boards)
    derived = {}
    for column, rows in table.groupby("metric", sort=False):
        values = rows[envs]
        n = values.notna().sum(axis=1)
        squares = values.sub(values.mean(axis=1), axis=0).pow(2).sum(axis=1)
        dof = (n - 1).clip(lower=0).sum()
        sigma = float(math.sqrt(squares.sum() / dof)) if dof else 0.0
        spread = float(rows["spread"].max(skipna=True)) if rows["spread"].notna().any() else 0.0
        floor = one_item(column, counts, list(boards.values()))
        derived[column] = {"tolerance": max(sigmas * sigma, spread, floor), "sigma": sigma, "spread": spread,
                           "one_item": floor, "scale": metrics.get(column).scale}
    return {"environments": envs, "items": counts, "rule": f"max({sigmas:g} sigma, largest spread, one item)",
            "metrics": derived}


def stopped_unlearning(board: pd.DataFrame, method: str) -> pd.DataFrame:
    """The fault a regression gate exists for: `method`'s rows carrying the target's figures, as if it had
    changed nothing (method diagnostics kept)."""
    faulty = board.copy()
    target = board[board["method"] == "target"].iloc[0]
    rows = faulty["method"] == method
    for column in checked_columns(board, board):
        faulty.loc[rows, column] = target[column]
    return faulty


def detection(boards: dict[str, pd.DataFrame], reference: str, tolerances: dict[str, float]) -> dict[str, list]:
    """Per kernel set, the methods whose stopping is missed: that kernel set's run with the method replaced
    by the target, checked against the reference kernel set's run, passes."""
    out = {}
    for env, board in boards.items():
        methods = [m for m in dict.fromkeys(board["method"]) if m not in REFERENCE_ROWS]
        out[env] = [m for m in methods if not compare(stopped_unlearning(board, m), boards[reference],
                                                      tolerances).regressions]
    return out


def leave_one_out(boards: dict[str, pd.DataFrame], counts: dict[str, int], reference: str) -> dict[str, Check]:
    """False alarms measured on held-out data: for each environment other than `reference`, the tolerances
    derived without it, and its run checked against the reference environment's."""
    out = {}
    for held_out in boards:
        if held_out == reference:
            continue
        rest = {env: b for env, b in boards.items() if env != held_out}
        tolerances = {c: m["tolerance"] for c, m in derive_tolerances(rest, counts)["metrics"].items()}
        out[held_out] = compare(boards[held_out], boards[reference], tolerances)
    return out

