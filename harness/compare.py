"""`harness compare`: a sweep's methods at equal tuning budget and at matched forgetting.

- Selection rule (the same for every method and benchmark): each grid point's score is, per seed, the
  harmonic mean of 1 - forget, retain and utility (the columns declared for those roles: TOFU's forget and
  retain em_contains and model utility, LUME's forget and retain knowledge and MMLU or its stand-in), averaged
  over the seeds; a seed whose cell failed scores 0. Each method keeps its best-scoring point, ties going to
  the earlier point of the grid. The selection is written as a preset, so `harness run --preset` reruns it.
- Matched forgetting: each method's grid points, in grid order, are a curve through (forget, retain) and
  (forget, utility), mean over seeds; the retain and utility values where the curve first reaches each
  forget level are linearly interpolated, on the mean curve and on each seed's own curve (their spread), and
  on the mean curve of each bootstrap resample of seeds and items (their interval: harness/uncertainty.py).
- Paired comparison (`pair`): two methods' difference at their selected points (forget, retain, utility) and
  at each matched level (retain, utility), with its bootstrap interval and p-value, the resamples paired: the
  same seeds and items for both.
"""

from __future__ import annotations

import functools
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
from harness.uncertainty import Bootstrap, Draws, read_items, resampler_for

ROLES = ("forget", "retain", "utility")
LEVELS = (0.5, 0.25, 0.1)


def role_columns(frame: pd.DataFrame, forget: str | None = None) -> dict[str, str]:
    """The forget, retain and utility columns of this leaderboard (`forget`: another forget column than the
    declared one, e.g. MUSE's VerbMem for its KnowMem); one error line if one is missing."""
    columns = {role: metrics.role(frame.columns, role) for role in ROLES}
    if forget is not None:
        declared = metrics.get(forget)
        if forget not in frame.columns or declared is None or declared.better != "lower":
            known = [
                c for c in frame.columns if (m := metrics.get(c)) is not None and m.better == "lower" and not m.cost
            ]
            raise ValueError(f"--forget {forget}: expected a lower-is-better column of the sweep ({', '.join(known)})")
        columns["forget"] = forget
    missing = [role for role, column in columns.items() if column is None]
    if missing:
        raise ValueError(f"leaderboard: no {' or '.join(missing)} column (declared with role= in harness.metrics)")
    return columns


def selection_score(row: pd.Series, columns: dict[str, str]) -> float:
    """One cell's score: hmean(forgotten, retain, utility); any of them at 0 gives 0."""
    parts = [metrics.gain(columns["forget"], row[columns["forget"]]), row[columns["retain"]], row[columns["utility"]]]
    return 0.0 if min(parts) <= 0 else float(hmean(parts))


def grid_points(frame: pd.DataFrame, forget: str | None = None) -> pd.DataFrame:
    """Per method and grid point (in grid order): mean and std of each role's metric over seeds, the number of
    seeds, and the selection score."""
    columns = role_columns(frame, forget)
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


def _forget_side(column: str, values):
    """A forget column's values with lower meaning more forgotten (1 - gain)."""
    return 1 - metrics.gain(column, values)


def crossing_replicates(group: pd.DataFrame, columns: dict[str, str], role: str, level: float, resampler) -> Draws:
    """Per bootstrap resample (of seeds, and of items): where the method's mean curve over its grid first reaches
    `level`, the role's value there (NaN in a resample whose curve never does)."""
    order = list(dict.fromkeys(group["variant"]))
    points = [group[group["variant"] == v] for v in order]
    side = functools.partial(_forget_side, columns["forget"])
    forget = [resampler.replicates(p, columns["forget"]).map(side) for p in points]
    values = [resampler.replicates(p, columns[role]) for p in points]

    def crossings(level_resampled: str) -> np.ndarray:
        xs = np.array([getattr(d, level_resampled) for d in forget])
        ys = np.array([getattr(d, level_resampled) for d in values])
        return np.array([first_crossing(xs[:, b].tolist(), ys[:, b].tolist(), level) for b in range(xs.shape[1])])

    return Draws(crossings("seeds"), crossings("items"))


def matched(
    frame: pd.DataFrame,
    levels=LEVELS,
    items: pd.DataFrame | None = None,
    bootstrap: Bootstrap | None = None,
    forget: str | None = None,
) -> pd.DataFrame:
    """Per method and forget level: retain and utility interpolated on the mean curve, with the std of the same
    interpolation on each seed's curve (over the seeds whose curve reaches the level) and the bootstrap interval
    of the mean curve's (`{role}_lo`, `{role}_hi`; over seeds, and items where `items` has them)."""
    columns = role_columns(frame, forget)
    cells = method_cells(frame)
    bootstrap = bootstrap or Bootstrap()
    resampler = resampler_for(frame, items, bootstrap)
    rows = []
    for method, group in cells.groupby("method", sort=False):
        order = list(dict.fromkeys(group["variant"]))
        means = group.groupby("variant", sort=False)[list(columns.values())].mean().reindex(order)
        for level in levels:
            row = {"method": method, "forget_level": level}
            for role in ("retain", "utility"):

                def crossing(curve, role=role, level=level):
                    return first_crossing(
                        _forget_side(columns["forget"], curve[columns["forget"]]).tolist(),
                        curve[columns[role]].tolist(),
                        level,
                    )

                row[role] = crossing(means)
                per_seed = [crossing(seed.set_index("variant").reindex(order)) for _, seed in group.groupby("seed")]
                reached = [v for v in per_seed if not math.isnan(v)]
                row[f"{role}_std"] = float(np.std(reached, ddof=1)) if len(reached) > 1 else math.nan
                row[f"{role}_seeds"] = len(reached)
                reps = crossing_replicates(group, columns, role, level, resampler)
                estimate = resampler.estimate(row[role], reps, [group], columns[role])
                row[f"{role}_lo"], row[f"{role}_hi"] = estimate.interval(bootstrap.level)
            rows.append(row)
    return pd.DataFrame(rows)


def paired(
    frame: pd.DataFrame,
    pair: tuple[str, str],
    levels=LEVELS,
    items: pd.DataFrame | None = None,
    bootstrap: Bootstrap | None = None,
    forget: str | None = None,
) -> pd.DataFrame:
    """Method A against method B (`pair`): at their selected points, the difference A - B of each role's mean;
    at each matched forget level, of the retain and utility values there. Each with the bootstrap interval and
    p-value of the difference, resampled paired (the same seeds and items for A and B)."""
    columns, cells = role_columns(frame, forget), method_cells(frame)
    for name in pair:
        if name not in set(cells["method"]):
            raise ValueError(
                f"--pair {','.join(pair)}: {name} is not a method of the sweep ({', '.join(cells['method'].unique())})"
            )
    bootstrap = bootstrap or Bootstrap()
    resampler = resampler_for(frame, items, bootstrap)
    points = select(grid_points(frame))
    points = points[points["selected"]].set_index("method")
    chosen = {m: cells[(cells["method"] == m) & (cells["variant"] == points.loc[m, "variant"])] for m in pair}
    out = []
    for role in ROLES:
        column = columns[role]
        reps = [resampler.replicates(chosen[m], column) for m in pair]
        means = [float(chosen[m][column].mean()) for m in pair]
        out.append(_difference("selected", role, column, means, reps, [chosen[m] for m in pair], resampler))
    table = matched(frame[frame["method"].isin([*REFERENCE_ROWS, *pair])], levels, items, bootstrap).set_index(
        ["method", "forget_level"]
    )
    for level in levels:
        for role in ("retain", "utility"):
            groups = [cells[cells["method"] == m] for m in pair]
            reps = [crossing_replicates(g, columns, role, level, resampler) for g in groups]
            means = [float(table.loc[(m, level), role]) for m in pair]
            where = f"{columns['forget']} {level:g}"
            out.append(_difference(where, role, columns[role], means, reps, groups, resampler))
    return pd.DataFrame(out)


def _difference(where: str, role: str, column: str, means: list[float], reps: list, groups: list, resampler) -> dict:
    """One line of a paired comparison: both values, A - B, its interval and p-value, and which is better."""
    delta = means[0] - means[1]
    estimate = resampler.estimate(delta, reps[0] - reps[1], groups, column)
    (lo, hi), p = estimate.interval(resampler.settings.level), estimate.p
    metric = metrics.get(column)
    if any(math.isnan(v) for v in means):
        verdict = "not reached"
    elif not estimate.separated(resampler.settings.level):
        verdict = "not separated"
    else:
        verdict = "A better" if metric.badness(means[0]) < metric.badness(means[1]) else "B better"
    return {
        "at": where,
        "role": role,
        "column": column,
        "a": means[0],
        "b": means[1],
        "difference": delta,
        "lo": lo,
        "hi": hi,
        "p": p,
        "verdict": verdict,
    }


def pair_table(table: pd.DataFrame, pair: tuple[str, str], bootstrap: Bootstrap, items: bool) -> str:
    """Markdown of `paired`: A and B named, the difference with its interval, the p-value, the verdict."""
    a, b = pair
    over = "seeds and items" if items else "seeds only (no per-item file)"
    lines = [
        f"A = {a}, B = {b}; difference A - B, its {bootstrap.level:.0%} interval and two-sided p-value (Student's t "
        f"on Welch-Satterthwaite degrees of freedom, on the standard error of {bootstrap.resamples} paired "
        f"bootstrap resamples over {over})",
        "",
        "| at | role | column | A | B | A - B | interval | p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    number = lambda v: "–" if math.isnan(v) else f"{v:.3f}"  # noqa: E731
    for _, r in table.iterrows():
        interval = "–" if math.isnan(r["lo"]) else f"[{r['lo']:.3f}, {r['hi']:.3f}]"
        p = "< 0.001" if r["p"] < 0.001 else number(r["p"])
        verdict = {"A better": f"{a} better", "B better": f"{b} better"}.get(r["verdict"], r["verdict"])
        lines.append(
            f"| {r['at']} | {r['role']} | {r['column']} | {number(r['a'])} | {number(r['b'])} | "
            f"{number(r['difference'])} | {interval} | {p} | "
            f"{verdict} |"
        )
    return "\n".join(lines) + "\n"


def matched_table(table: pd.DataFrame, columns: dict[str, str]) -> str:
    """Markdown: methods as rows; the retain column at each forget level, then the utility column at each: the
    value on the mean curve ± the seeds' std, and its bootstrap interval."""
    levels = list(dict.fromkeys(table["forget_level"]))
    header = (
        ["method"]
        + [f"{columns['retain']} @ {columns['forget']} {lv:g}" for lv in levels]
        + [f"{columns['utility']} @ {columns['forget']} {lv:g}" for lv in levels]
    )

    def cell(row, role):
        v, s = row[role], row[f"{role}_std"]
        if math.isnan(v):
            return "not reached"
        text = f"{v:.3f}" if math.isnan(s) else f"{v:.3f} ± {s:.3f}"
        lo, hi = row.get(f"{role}_lo", math.nan), row.get(f"{role}_hi", math.nan)
        return text if math.isnan(lo) else f"{text} [{lo:.3f}, {hi:.3f}]"

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, rows in table.groupby("method", sort=False):
        rows = rows.set_index("forget_level")
        values = [cell(rows.loc[lv], r) for r in ("retain", "utility") for lv in levels]
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


def compare(
    sweep: str | Path | list,
    out: str | Path | None = None,
    levels=LEVELS,
    pair: tuple[str, str] | None = None,
    bootstrap: Bootstrap | None = None,
    forget: str | None = None,
) -> dict[str, Path]:
    """Select each method's point, write the selection, its preset, the matched-forgetting table and plot, and
    with `pair` (two methods) their paired comparison; returns each file's path by name. Several sweeps (a list)
    are compared as one (`read_sweeps`), into `out`. The intervals resample the sweeps' per-item values where
    they have them (items.csv.gz: harness/uncertainty.py), else seeds only. `forget`: the column that stands
    for forgetting, in the selection and the matching, instead of the declared one."""
    from harness.plots import plot_matched

    sweeps = [Path(s) for s in sweep] if isinstance(sweep, (list, tuple)) else [Path(sweep)]
    if len(sweeps) > 1 and not out:
        raise ValueError("--out: expected a folder for the comparison of several sweeps")
    frame = read_sweeps(sweeps) if len(sweeps) > 1 else read_leaderboard(sweeps[0])
    items = sweep_items(sweeps)
    bootstrap = bootstrap or Bootstrap()
    columns = role_columns(frame, forget)
    points = select(grid_points(frame, forget))
    table = matched(frame, levels, items, bootstrap, forget)
    compared = paired(frame, pair, levels, items, bootstrap, forget) if pair else None
    out = Path(out) if out else default_out(sweeps[0])
    out.mkdir(parents=True, exist_ok=True)
    benchmark = str(frame["benchmark"].dropna().iloc[0])
    files = {
        "selection.csv": points.to_csv(index=False),
        "selected.toml": selected_preset(frame, points, benchmark),
        "matched.csv": table.to_csv(index=False),
        "matched.md": matched_table(table, columns),
    }
    if compared is not None:
        files["pair.csv"] = compared.to_csv(index=False)
        files["pair.md"] = pair_table(compared, pair, bootstrap, items is not None)
    paths = {}
    for name, text in files.items():
        write_atomically(out / name, text)
        paths[name] = out / name
    paths["matched.png"] = plot_matched(frame, columns, levels, out / "matched.png")
    return paths


def sweep_items(sweeps: list[Path]) -> pd.DataFrame | None:
    """The per-item values of every sweep (`read_items`), as one; None unless every sweep has them (a
    comparison resamples items for all its methods or for none)."""
    frames = [read_items(path) for path in sweeps]
    if any(f is None for f in frames):
        return None
    later = [f[~f["method"].isin(REFERENCE_ROWS)] for f in frames[1:]]  # the references are the first sweep's
    return pd.concat([frames[0], *later], ignore_index=True)
