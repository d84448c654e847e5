"""`harness compare`: a sweep's methods at equal tuning budget and at matched forgetting.

- Selection rule (the same for every method and benchmark): each grid point's score is, per seed, the
  harmonic mean of 1 - forget, retain and utility (the columns declared for those roles: TOFU's forget and
  retain em_contains and model utility, LUME's forget and retain knowledge and MMLU or its stand-in), averaged
  over the seeds; a seed whose cell failed scores 0. Each method keeps its best-scoring point, ties going to
  the earlier point of the grid. The selection is written as a preset, so `harness run --preset` reruns it.
- Matched forgetting: each method's grid points, in grid order, are a curve through (forget, retain) and
  (forget, utility), mean over seeds; the retain and utility values where the curve first reaches each
  forget level are linearly interpolated, on the mean curve and on each seed's own curve (their spread).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import hmean

from harness.files import write_atomically
from harness.metrics import metrics
from harness.rows import REFERENCE_ROWS, is_model, method_cells, swept_columns
from harness.tables import read_leaderboard

ROLES = ("forget", "retain", "utility")
LEVELS = (0.5, 0.25, 0.1)


def role_columns(frame: pd.DataFrame) -> dict[str, str]:
    """The forget, retain and utility columns of this leaderboard; one error line if one is missing."""
    columns = {role: metrics.role(frame.columns, role) for role in ROLES}
    missing = [role for role, column in columns.items() if column is None]
    if missing:
        raise ValueError(f"leaderboard: no {' or '.join(missing)} column (declared with role= in harness.metrics)")
    return columns


def selection_score(row: pd.Series, columns: dict[str, str]) -> float:
    """One cell's score: hmean(forgotten, retain, utility); any of them at 0 gives 0."""
    parts = [metrics.gain(columns["forget"], row[columns["forget"]]), row[columns["retain"]], row[columns["utility"]]]
    return 0.0 if min(parts) <= 0 else float(hmean(parts))


def grid_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method and grid point (in grid order): mean and std of each role's metric over seeds, the number of
    seeds, and the selection score."""
    columns = role_columns(frame)
    cells = method_cells(frame)
    cells["score"] = cells.apply(selection_score, axis=1, columns=columns)
    seeds = cells["seed"].nunique()
    rows = []
    for (method, variant), group in cells.groupby(["method", "variant"], sort=False):
        model = is_model(group).all()  # harness eval's row: one model, no seeds, no cell that could fail
        row = {
            "method": method,
            "variant": variant,
            "n_seeds": len(group),
            "score": group["score"].sum() / (len(group) if model else seeds),
        }  # a failed seed's cell scores 0
        for role, column in columns.items():
            row[role], row[f"{role}_std"] = group[column].mean(), group[column].std(ddof=1)
        rows.append(row)
    return pd.DataFrame(rows)


def select(points: pd.DataFrame) -> pd.DataFrame:
    """Each method's best grid point by score, ties to the earlier point (`selected` column)."""
    best = points.groupby("method", sort=False)["score"].transform("max")
    first = points[points["score"] == best].groupby("method", sort=False).head(1).index
    return points.assign(selected=points.index.isin(first))


def toml_value(value) -> str:
    """A swept value as TOML: a bool, a number (as Python writes it: 0.0005, 1e-05) or a quoted string."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(value.item() if hasattr(value, "item") else value)
    return json.dumps(str(value))


def selected_preset(frame: pd.DataFrame, points: pd.DataFrame, benchmark: str) -> str:
    """A preset (TOML) with the benchmark and every method at its selected grid point, in the sweep's method
    order (harness eval's models are not methods to rerun, so not in it). Settings the sweep was run with
    beyond those (another preset's world, `--set`) are not in it."""
    lines = [
        f'description = "{benchmark}: each method at the grid point harness compare selected"',
        f'benchmark = "{benchmark}"',
        "",
    ]
    cells = method_cells(frame)
    rerunnable = set(cells.loc[~is_model(cells), "method"])
    for _, point in points[points["selected"] & points["method"].isin(rerunnable)].iterrows():
        row = frame[(frame["method"] == point["method"]) & (frame["variant"].fillna("") == point["variant"])].iloc[0]
        lines.append(f"[methods.{point['method']}]")
        for column in swept_columns(frame):
            if column.startswith(point["method"] + ".") and pd.notna(row[column]):
                lines.append(f"{column.split('.', 1)[1]} = {toml_value(row[column])}")
        lines.append("")
    return "\n".join(lines)


def first_crossing(xs, ys, level: float) -> float:
    """y where the polyline through (xs, ys), in order, first reaches x <= level (as the forget metric falls
    with stronger unlearning); NaN if it never does."""
    for i, (x, y) in enumerate(zip(xs, ys)):
        if x <= level:
            if i == 0 or xs[i - 1] == x:
                return float(y)
            t = (xs[i - 1] - level) / (xs[i - 1] - x)
            return float(ys[i - 1] + t * (y - ys[i - 1]))
    return math.nan


def matched(frame: pd.DataFrame, levels=LEVELS) -> pd.DataFrame:
    """Per method and forget level: retain and utility interpolated on the mean curve, with the std of the same
    interpolation on each seed's curve (over the seeds whose curve reaches the level)."""
    columns = role_columns(frame)
    cells = method_cells(frame)
    forget = lambda v: 1 - metrics.gain(columns["forget"], v)  # noqa: E731  (lower = more forgotten)
    rows = []
    for method, group in cells.groupby("method", sort=False):
        order = list(dict.fromkeys(group["variant"]))
        means = group.groupby("variant", sort=False)[list(columns.values())].mean().reindex(order)
        for level in levels:
            row = {"method": method, "forget_level": level}
            for role in ("retain", "utility"):

                def crossing(curve, role=role, level=level):
                    return first_crossing(
                        forget(curve[columns["forget"]]).tolist(), curve[columns[role]].tolist(), level
                    )

                row[role] = crossing(means)
                per_seed = [crossing(seed.set_index("variant").reindex(order)) for _, seed in group.groupby("seed")]
                reached = [v for v in per_seed if not math.isnan(v)]
                row[f"{role}_std"] = float(np.std(reached, ddof=1)) if len(reached) > 1 else math.nan
                row[f"{role}_seeds"] = len(reached)
            rows.append(row)
    return pd.DataFrame(rows)


def matched_table(table: pd.DataFrame, columns: dict[str, str]) -> str:
    """Markdown: methods as rows; the retain column at each forget level, then the utility column at each."""
    levels = list(dict.fromkeys(table["forget_level"]))
    header = (
        ["method"]
        + [f"{columns['retain']} @ {columns['forget']} {lv:g}" for lv in levels]
        + [f"{columns['utility']} @ {columns['forget']} {lv:g}" for lv in levels]
    )
    cell = lambda v, s: "not reached" if math.isnan(v) else (f"{v:.3f}" if math.isnan(s) else f"{v:.3f} ± {s:.3f}")  # noqa
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, rows in table.groupby("method", sort=False):
        rows = rows.set_index("forget_level")
        values = [cell(rows.loc[lv, r], rows.loc[lv, f"{r}_std"]) for r in ("retain", "utility") for lv in levels]
        lines.append("| " + " | ".join([method, *values]) + " |")
    return "\n".join(lines) + "\n"


def default_out(sweep: Path) -> Path:
    """SWEEP_DIR/compare for a run folder, NAME-compare beside a NAME.csv."""
    return sweep / "compare" if sweep.is_dir() else sweep.with_name(f"{sweep.stem}-compare")


def read_sweeps(sweeps: list[Path]) -> pd.DataFrame:
    """One leaderboard from several sweeps of the same benchmark and target (e.g. the committed sweep and a
    new method's): the first's reference rows, every sweep's method rows. One error line when a sweep is of
    another benchmark or target, or repeats a method (its grid points would mix)."""
    frames = [read_leaderboard(path) for path in sweeps]
    first, seen = frames[0], {}
    for path, frame in zip(sweeps, frames):
        theirs, ours = set(frame["benchmark"].dropna()), set(first["benchmark"].dropna())
        if theirs != ours:
            raise ValueError(
                f"{path}: benchmark {', '.join(sorted(theirs))}, not {sweeps[0]}'s {', '.join(sorted(ours))}"
            )
        target = [
            f.loc[f["method"] == "target", "weights_digest"].dropna().tolist() if "weights_digest" in f else []
            for f in (frame, first)
        ]
        if all(target) and target[0][0] != target[1][0]:
            raise ValueError(f"{path}: its target model (weights digest {target[0][0]}) is not {sweeps[0]}'s")
        for method in method_cells(frame)["method"].unique():
            if method in seen:
                raise ValueError(f"{path}: method {method} is in {seen[method]} too; compare each method's one sweep")
            seen[method] = path
    references = first[first["method"].isin(REFERENCE_ROWS)]
    return pd.concat([references, *[method_cells(f) for f in frames]], ignore_index=True)


def compare(sweep: str | Path | list, out: str | Path | None = None, levels=LEVELS) -> dict[str, Path]:
    """Select each method's point, write the selection, its preset, the matched-forgetting table and plot;
    returns each file's path by name. Several sweeps (a list) are compared as one (`read_sweeps`), into `out`."""
    from harness.plots import plot_matched

    sweeps = [Path(s) for s in sweep] if isinstance(sweep, (list, tuple)) else [Path(sweep)]
    if len(sweeps) > 1 and not out:
        raise ValueError("--out: expected a folder for the comparison of several sweeps")
    frame = read_sweeps(sweeps) if len(sweeps) > 1 else read_leaderboard(sweeps[0])
    columns = role_columns(frame)
    points = select(grid_points(frame))
    table = matched(frame, levels)
    out = Path(out) if out else default_out(sweeps[0])
    out.mkdir(parents=True, exist_ok=True)
    benchmark = str(frame["benchmark"].dropna().iloc[0])
    files = {
        "selection.csv": points.to_csv(index=False),
        "selected.toml": selected_preset(frame, points, benchmark),
        "matched.csv": table.to_csv(index=False),
        "matched.md": matched_table(table, columns),
    }
    paths = {}
    for name, text in files.items():
        write_atomically(out / name, text)
        paths[name] = out / name
    paths["matched.png"] = plot_matched(frame, columns, levels, out / "matched.png")
    return paths
