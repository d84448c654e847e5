"""`harness plot`: a run's figures as PNGs (matplotlib).

- `tradeoff.png`: forget em_contains against retain em_contains and model utility (on LUME: forget against
  retain knowledge, and MMLU or its stand-in), one small point per
  method and seed, a large one for the method's mean (± std bars), and the target and retain references;
- `sweep_<key>.png` (sweeps only): each metric against one swept value, one line per setting of the others;
- `curves.png` (runs with `eval.every`): the forget, retain and utility columns against the optimizer step and
  forget against retain along the way, one line per method, mean ± std over seeds (harness/curves.py), and
  `curves.csv`, every cell's points in one file;
- `requests.png` and `requests.csv` (several run folders, MUSE's scalability `scal_K` or sustainability
  `sust_K` runs): each role's column against K, one line per method, mean ± std over seeds;
- each `harness.plots` entry point's figures: a method's own, drawn from its files (SIMU's neurons per layer:
  methods/simu_report.py), called as `plot(run_dir, row_order, out_dir) -> paths`.
"""

from __future__ import annotations

import io
from importlib.metadata import entry_points
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import pandas as pd

from harness.files import write_atomically
from harness.metrics import metrics
from harness.registry import load_entry_point
from harness.rows import REFERENCE_ROWS, method_cells, swept_columns
from harness.tables import read_leaderboard, row_labels

GROUP = "harness.plots"  # entry points: a method's (or plugin's) own figures

TRADEOFF_Y = ("retain", "utility")  # plotted against the forget-side metric
SWEEP_ROLES = ("forget", "retain", "utility", "privacy")
REFERENCE_STYLE = {"target": dict(marker="*", color="black", s=160), "retain": dict(marker="s", color="dimgray", s=80)}


def _role(frame: pd.DataFrame, role: str) -> str | None:
    return metrics.role(frame.columns, role)


def save(fig, path: Path) -> Path:
    """Write the PNG atomically (no half-written file if interrupted) and close the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    write_atomically(path, buffer.getvalue())
    return path


def _finish(fig, axes, title: str, path: Path) -> Path:
    """The first panel's legend to the right of the figure, the title, and the PNG written."""
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def _references(ax, frame: pd.DataFrame, labels: pd.Series, x: str, y: str) -> None:
    """The target (star) and retain (square) models as points of their own."""
    for ref in REFERENCE_ROWS:
        rows = frame[labels == ref]
        if len(rows):
            ax.scatter(rows[x], rows[y], label=f"{ref} (reference)", zorder=3, **REFERENCE_STYLE[ref])


def _label(column: str) -> str:
    metric = metrics.get(column)
    return f"{metric.display or column} ({metric.arrow} better)"


def plot_tradeoff(frame: pd.DataFrame, path: Path) -> Path:
    """Forget against each retain-side measure: seeds as small points, means with ± std bars, references."""
    x = _role(frame, "forget")
    ys = [c for c in (_role(frame, role) for role in TRADEOFF_Y) if c]
    labels = row_labels(frame)
    fig, axes = plt.subplots(1, len(ys), figsize=(5.2 * len(ys), 4.4), squeeze=False)
    colours = plt.get_cmap("tab10" if labels.nunique() <= 10 else "tab20")
    for ax, y in zip(axes[0], ys):
        methods = [m for m in dict.fromkeys(labels) if m not in REFERENCE_ROWS]
        for i, method in enumerate(methods):
            rows = frame[labels == method]
            colour = colours(i % colours.N)
            ax.scatter(rows[x], rows[y], color=colour, alpha=0.35, s=22)
            ax.errorbar(
                rows[x].mean(),
                rows[y].mean(),
                xerr=rows[x].std(),
                yerr=rows[y].std(),
                fmt="o",
                ms=9,
                color=colour,
                capsize=3,
                label=f"{method} (mean of {len(rows)})",
            )
        _references(ax, frame, labels, x, y)
        ax.set_xlabel(_label(x))
        ax.set_ylabel(_label(y))
        ax.set_xlim(-0.05, 1.05)
        if y == _role(frame, "retain"):  # a rate on its full range, so a small gap does not look large
            ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    return _finish(fig, axes, f"Forget/utility trade-off: {_title(frame)}", path)


def _title(frame: pd.DataFrame, marker_note: bool = True) -> str:
    """`tofu-mini, 3 seeds`, and what the trade-off plot's small and large markers are."""
    seeds = frame["seed"].dropna().nunique()
    bench = ", ".join(map(str, frame["benchmark"].dropna().unique())) if "benchmark" in frame else "run"
    note = " (small: one seed; large: mean ± std)" if marker_note else ""
    return f"{bench}, {seeds} seed{'s' if seeds != 1 else ''}{note}"


def plot_sweep(frame: pd.DataFrame, key: str, path: Path) -> Path:
    """Each metric against the swept value `key`, one line per setting of the other swept values (mean ± std
    over seeds); the target and retain references as dashed lines."""
    swept = frame[frame[key].notna()]
    others = [c for c in swept_columns(frame) if c != key and swept[c].notna().any()]
    columns = [c for c in (_role(frame, role) for role in SWEEP_ROLES) if c]
    fig, axes = plt.subplots(1, len(columns), figsize=(4.3 * len(columns), 3.8), squeeze=False)
    lines = swept.groupby(others, sort=True) if others else [((), swept)]
    numeric = pd.api.types.is_numeric_dtype(swept[key])
    for ax, metric in zip(axes[0], columns):
        for setting, rows in lines:
            setting = setting if isinstance(setting, tuple) else (setting,)
            stats = rows.groupby(key, sort=True)[metric].agg(["mean", "std"])
            x = stats.index if numeric else [str(v) for v in stats.index]
            name = (
                ", ".join(
                    f"{o.split('.', 1)[1]}={v:g}" if isinstance(v, float) else f"{o.split('.', 1)[1]}={v}"
                    for o, v in zip(others, setting)
                )
                or "mean over seeds"
            )
            ax.errorbar(x, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=name)
        for ref, colour in (("target", "black"), ("retain", "gray")):
            value = frame.loc[frame["method"] == ref, metric]
            if len(value):
                ax.axhline(value.iloc[0], linestyle="--", color=colour, lw=1, label=f"{ref} (reference)")
        if numeric and swept[key].min() > 0 and swept[key].max() / swept[key].min() >= 100:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(_label(metric))
        ax.grid(alpha=0.3)
    return _finish(fig, axes, f"Sweep of {key}: {_title(swept, marker_note=False)}", path)


def plot_matched(frame: pd.DataFrame, columns: dict[str, str], levels, path: Path) -> Path:
    """Each method's curve over its grid (mean ± std over seeds per point, in grid order) in the forget/retain
    and forget/utility planes, the references, and the matched forget levels as dotted lines."""
    labels, cells = frame["method"], method_cells(frame)
    methods = list(dict.fromkeys(cells["method"]))
    colours = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), squeeze=False)
    x = columns["forget"]
    for ax, y in zip(axes[0], (columns["retain"], columns["utility"])):
        for i, method in enumerate(methods):
            rows = cells[cells["method"] == method]
            stats = rows.groupby("variant", sort=False)[[x, y]].agg(["mean", "std"])
            ax.errorbar(
                stats[x]["mean"],
                stats[y]["mean"],
                xerr=stats[x]["std"].fillna(0),
                yerr=stats[y]["std"].fillna(0),
                marker="o",
                ms=5,
                capsize=2,
                color=colours(i % colours.N),
                label=f"{method} ({len(stats)} points)",
            )
        _references(ax, frame, labels, x, y)
        for level in levels:
            ax.axvline(level, linestyle=":", color="gray", lw=1)
        ax.set_xlabel(_label(x))
        ax.set_ylabel(_label(y))
        ax.grid(alpha=0.3)
    title = f"Each method over its grid (mean ± std over seeds): {_title(frame, marker_note=False)}"
    return _finish(fig, axes, title, path)


def read_curves(run_dir: Path) -> pd.DataFrame | None:
    """Every cell's curve points (`OUT/curves/*.csv`, harness/curves.py) as one frame; None when there are none."""
    files = sorted((run_dir / "curves").glob("*.csv"))
    if not files:
        return None
    frame = pd.concat([pd.read_csv(f, dtype={"variant": str}) for f in files], ignore_index=True)
    frame["variant"] = frame["variant"].fillna("")
    return frame


def plot_curves(curves: pd.DataFrame, frame: pd.DataFrame, path: Path) -> Path:
    """The unlearning curves: the forget, retain and utility columns against the optimizer step, and forget
    against retain along the trajectory; one line per method (and grid point), mean ± std over seeds at each
    step (a band), the target and retain rows as dashed lines."""
    roles = [(role, _role(curves, role)) for role in ("forget", "retain", "utility")]
    roles = [(role, column) for role, column in roles if column]
    labels = curves["method"] + curves["variant"].map(lambda v: f" {v}" if v else "")
    order = [m for m in dict.fromkeys(row_labels(frame)) if m in set(labels)] + sorted(
        set(labels) - set(row_labels(frame))
    )
    colours = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(roles) + 1, figsize=(4.6 * (len(roles) + 1), 4.2), squeeze=False)
    columns = [column for _, column in roles]
    for i, label in enumerate(order):
        stats = curves[labels == label].groupby("step")[columns].agg(["mean", "std", "count"])
        colour, seeds = colours(i % colours.N), int(stats[columns[0]]["count"].max())
        for ax, column in zip(axes[0], columns):
            mean, std = stats[column]["mean"], stats[column]["std"].fillna(0)
            ax.plot(stats.index, mean, color=colour, lw=1.6, label=f"{label} ({seeds} seed{'s' * (seeds != 1)})")
            ax.fill_between(stats.index, mean - std, mean + std, color=colour, alpha=0.18, lw=0)
        if len(columns) > 1:
            trajectory = axes[0][-1]
            trajectory.plot(stats[columns[0]]["mean"], stats[columns[1]]["mean"], color=colour, marker="o", ms=3)
            trajectory.scatter(
                stats[columns[0]]["mean"].iloc[:1], stats[columns[1]]["mean"].iloc[:1], color=colour, s=30, marker="s"
            )
    for ax, column in zip(axes[0], columns):
        for ref, style in (("target", "-."), ("retain", "--")):
            rows = frame.loc[frame["method"] == ref, column] if column in frame else []
            if len(rows):
                ax.axhline(
                    float(rows.iloc[0]), color="gray", linestyle=style, lw=1, label=f"{ref} (reference, full split)"
                )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(_label(column))
        ax.grid(alpha=0.3)
    if len(columns) > 1:
        trajectory = axes[0][-1]
        trajectory.set_xlabel(_label(columns[0]))
        trajectory.set_ylabel(_label(columns[1]))
        trajectory.set_title("trajectory (square: step 0)", fontsize=9)
        trajectory.grid(alpha=0.3)
    title = f"Unlearning curves (mean ± std over seeds, on the curve sample): {_title(frame, marker_note=False)}"
    return _finish(fig, axes, title, path)


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Every figure the run supports; returns the paths written."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: expected a run folder (with leaderboard.csv and artifacts/)")
    frame = read_leaderboard(run_dir)
    if not _role(frame, "forget"):
        forget = [m.name for m in metrics.all() if m.role == "forget"]
        raise ValueError(f"{run_dir}/leaderboard.csv: no forget-side column to plot ({' or '.join(forget)})")
    out = Path(out) if out else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_tradeoff(frame, out / "tradeoff.png")]
    order = list(dict.fromkeys(row_labels(frame)))
    for entry in entry_points(group=GROUP):
        paths += load_entry_point(entry)(run_dir, order, out)
    for key in swept_columns(frame):
        paths.append(plot_sweep(frame, key, out / f"sweep_{key}.png"))
    curves = read_curves(run_dir)
    if curves is not None:
        write_atomically(out / "curves.csv", curves.to_csv(index=False))  # every cell's points, in one file
        paths += [out / "curves.csv", plot_curves(curves, frame, out / "curves.png")]
    return paths


def request_size(split: str) -> int | None:
    """K of a `scal_K` or `sust_K` forget split (MUSE's scalability and sustainability); None otherwise."""
    kind, _, k = str(split).partition("_")
    return int(k) if kind in ("scal", "sust") and k.isdigit() else None


def plot_requests(run_dirs: list, out: str | Path) -> list[Path]:
    """Several runs of one benchmark at growing forget sets or successive requests: `requests.csv` (per
    method and K, the mean and std over seeds of each role's column and of MUSE's PrivLeak where present) and
    `requests.png` (each against K). A run without a `scal_K` or `sust_K` forget split is one line naming it."""
    frames = []
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: expected a run folder (with leaderboard.csv)")
        frame = read_leaderboard(run_dir)
        cells = frame[frame["kind"] == "method"].copy()
        cells["K"] = [request_size(s) for s in cells.get("forget_split", pd.Series(dtype=str))]
        if cells.empty or cells["K"].isna().any():
            raise ValueError(f"{run_dir}/leaderboard.csv: expected rows with forget_split scal_K or sust_K")
        frames.append(cells)
    cells = pd.concat(frames, ignore_index=True)
    kinds = sorted({str(s).split("_")[0] for s in cells["forget_split"]})
    if len(kinds) > 1:
        raise ValueError(f"harness plot: the runs mix {' and '.join(kinds)}; plot scal_K and sust_K runs apart")
    columns = [c for role in SWEEP_ROLES if (c := _role(cells, role))]
    columns += [c for c in ("muse_privleak",) if c in cells and c not in columns]
    table = cells.groupby(["method", "K"])[columns].agg(["mean", "std"]).reset_index()
    table.columns = [a if not b else f"{a}_{b}" for a, b in table.columns]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "requests.csv", table.to_csv(index=False))
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.4), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for method, group in table.groupby("method", sort=False):
            ax.errorbar(
                group["K"],
                group[f"{column}_mean"],
                yerr=group[f"{column}_std"].fillna(0),
                marker="o",
                label=method,
                capsize=3,
            )
        ax.set_xlabel("forget parts unlearned (K)" if kinds == ["scal"] else "unlearning requests (K)")
        ax.set_ylabel(_label(column))
        ax.set_xticks(sorted(table["K"].unique()))
    title = "scalability: growing forget sets" if kinds == ["scal"] else "sustainability: successive requests"
    return [out / "requests.csv", _finish(fig, axes, title, out / "requests.png")]
