"""Leaderboard tables: `harness table`.

A run's leaderboard has one row per cell; a table has one row per method, each metric as mean ± std over
seeds (with `intervals`, its bootstrap interval over seeds and items: harness/uncertainty.py), the direction
that is better marked by an arrow, and the best method in each column in bold where it is separated from every
other: the interval of their paired difference excludes 0. A best that is not is marked † with the methods it
is tied with.
"""

from __future__ import annotations

import csv as csvlib
import io
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from harness.metrics import metrics
from harness.rows import IDENTITY_COLUMNS, LEADERBOARD_KEYS, REFERENCE_ROWS
from harness.uncertainty import Bootstrap, resampler_for

TIE = "†"


def direction(column: str) -> str:
    """Which way a metric is better, as its declaration says (harness/metrics.py): higher, lower, half (an MIA
    AUC, best at chance), zero (privleak) or none (a diagnostic, never bold and never checked)."""
    return metrics.get(column).better


def best_methods(means: pd.DataFrame, column: str) -> set[str]:
    """The methods (not references) whose mean is best in `column` (least `Metric.badness`), ties as displayed
    included."""
    methods = [m for m in means.index if m not in REFERENCE_ROWS]
    metric = metrics.get(column)
    if not methods or metric.better == "none":
        return set()
    scores = metric.badness(means.loc[methods, column].round(3))
    return set(scores[scores == scores.min()].index)


def read_leaderboard(path: str | Path) -> pd.DataFrame:
    """A leaderboard CSV, or a run folder holding `leaderboard.csv`; one clear error otherwise."""
    path = Path(path)
    csv = path / "leaderboard.csv" if path.is_dir() else path
    if not csv.is_file():
        raise FileNotFoundError(f"{path}: expected a run folder with leaderboard.csv, or a leaderboard CSV")
    try:
        text = csv.read_text(encoding="utf-8")
        check_shape(text)
        frame = pd.read_csv(io.StringIO(text), dtype={"seed": "Int64"})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{csv}: not a readable leaderboard CSV ({reason})") from None
    for column in LEADERBOARD_KEYS:
        if column not in frame.columns:
            raise ValueError(
                f"{csv}: not a leaderboard (no '{column}' column; expected {', '.join(LEADERBOARD_KEYS)} "
                f"and the metrics, as harness run writes it)"
            )
    return frame


def check_shape(text: str) -> None:
    """Every row of a CSV's `text` has the header's number of fields and the text ends with a line end: pandas
    would fill a line cut short (a full disk, an interrupted copy) with NaN and average it in silently."""
    rows = [row for row in csvlib.reader(io.StringIO(text, newline="")) if row]  # quoted line ends stay in a field
    if not rows:
        return
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(rows[0]):
            raise ValueError(
                f"row {number} has {len(row)} fields, the header {len(rows[0])}: a truncated or edited "
                f"file (rerunning the command that wrote it rebuilds it from its results/)"
            )
    if not text.endswith("\n"):
        raise ValueError(
            f"row {len(rows)} has no line end: the file was cut short (rerunning the command that "
            f"wrote it rebuilds it from its results/)"
        )


def summarise(frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and std over seeds per method; references first, then methods in order of appearance."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        metrics = [c for c in frame.columns if c not in IDENTITY_COLUMNS or c.endswith(("_seconds", "_gib"))]
        raise ValueError(f"--columns: {', '.join(missing)} not in the leaderboard; it has: {', '.join(metrics)}")
    labels = row_labels(frame)
    order = [m for m in REFERENCE_ROWS if m in set(labels)] + [
        m for m in dict.fromkeys(labels) if m not in REFERENCE_ROWS
    ]
    grouped = frame.groupby(labels, sort=False)[columns]
    return grouped.mean().reindex(order), grouped.std(ddof=1).reindex(order).fillna(0.0)


def row_labels(frame: pd.DataFrame) -> pd.Series:
    """What a table row is: the method, with its grid point in a sweep (`simu t=0.1,m=5`)."""
    if "variant" not in frame.columns:
        return frame["method"].rename("method")
    variant = frame["variant"].fillna("").astype(str)
    return (frame["method"] + variant.map(lambda v: f" {v}" if v else "")).rename("method")


def _number(x: float) -> str:
    """Three decimals; tiny non-zero values (e.g. forget-quality p-values) in scientific notation."""
    return f"{x:.1e}" if x != 0 and abs(x) < 5e-4 else f"{x:.3f}"


def _cell(mean: float, std: float, n: int, mark: str, fmt: str, note: str = "", interval=None) -> str:
    """One table cell: mean ± std (the mean alone for one seed), its interval when asked for, bold when `mark`
    is "bold", the tie mark when it is TIE, then a footnote's mark."""
    if pd.isna(mean):
        return "–"  # the metric does not apply to this row (e.g. simu_* on other methods)
    text = _number(mean) if n == 1 else f"{_number(mean)} ± {_number(std)}"
    if interval is not None and not pd.isna(interval[0]):
        text += f" [{_number(interval[0])}, {_number(interval[1])}]"
    text += TIE if mark == TIE else ""
    text += note
    if mark != "bold":
        return text
    return f"**{text}**" if fmt == "md" else f"\\textbf{{{text}}}"


def separated_best(means: pd.DataFrame, column: str, replicates: dict, groups: dict, resampler) -> dict[str, str]:
    """label -> "bold" for the best method when the interval of its paired difference (in `Metric.badness`)
    with every other method excludes 0, else label -> TIE for the best and each method it is not separated from
    (a row of one seed without per-item values has no interval, so it separates from nothing)."""
    best = best_methods(means, column)
    if not best:
        return {}
    if len(best) > 1:
        return dict.fromkeys(best, TIE)
    metric, (top,) = metrics.get(column), best
    others = [m for m in means.index if m not in REFERENCE_ROWS and m != top and pd.notna(means.loc[m, column])]
    tied = []
    for other in others:
        value = float(metric.badness(means.loc[other, column]) - metric.badness(means.loc[top, column]))
        difference = replicates[other].map(metric.badness) - replicates[top].map(metric.badness)
        estimate = resampler.estimate(value, difference, [groups[top], groups[other]], column)
        if not estimate.separated(resampler.settings.level):
            tied.append(other)
    return {top: "bold"} if not tied else dict.fromkeys([top, *tied], TIE)


def tie_note(bootstrap: Bootstrap, items: bool) -> str:
    over = "seeds, and items in a column that is an item mean" if items else "seeds only: no per-item file"
    return (
        f"{TIE} best mean, but not separated: the {bootstrap.level:.0%} interval (bootstrap over {over}, Student's t "
        f"on Welch-Satterthwaite degrees of freedom) of its paired difference with each {TIE} row includes 0. "
        "Bold: a best separated from every other row."
    )


def zero_parts(frame: pd.DataFrame, column: str) -> dict[str, int]:
    """The parts of a harmonic mean (`Metric.parts`) that are 0 in some row of `frame`, forget parts taken as
    1 - v, with how many rows: the reason the mean is 0 there."""
    parts = [c for c in frame.columns if any(fnmatchcase(c, p) for p in metrics.get(column).parts)]
    zeros = {}
    for part in parts:
        values = metrics.gain(part, frame[part].astype(float))
        if (values == 0).any():
            zeros[part] = int((values == 0).sum())
    return zeros


def zero_notes(frame: pd.DataFrame, means: pd.DataFrame, columns: list[str]) -> dict[tuple[str, str], str]:
    """(row, column) -> a note naming the parts that make a harmonic mean exactly 0 in that row."""
    labels, notes = row_labels(frame), {}
    for c in (c for c in columns if metrics.get(c).parts):
        for label in means.index[(means[c] == 0).to_numpy()]:
            rows = frame[labels == label]
            parts = ", ".join(
                f"{p} {'= 1' if direction(p) == 'lower' else '= 0'} ({n} of {len(rows)})"
                for p, n in zero_parts(rows, c).items()
            )
            notes[label, c] = f"{label}: {c} is 0, its parts at 0: {parts}"
    return notes


def render(
    frame: pd.DataFrame,
    columns: list[str] | None = None,
    fmt: str = "md",
    items: pd.DataFrame | None = None,
    bootstrap: Bootstrap | None = None,
    intervals: bool = False,
) -> str:
    """The comparison table as Markdown, LaTeX or CSV (CSV: separate mean, std and interval columns, no markup).
    `items`: the per-item values beside the leaderboard (harness.uncertainty.read_items), so that the intervals
    resample items as well as seeds; `intervals`: show them in Markdown and LaTeX."""
    columns = columns or metrics.defaults(frame.columns)
    bootstrap = bootstrap or Bootstrap()
    means, stds = summarise(frame, columns)
    labels = row_labels(frame)
    counts = frame.groupby(labels, sort=False).size().reindex(means.index)
    resampler = resampler_for(frame, items, bootstrap)
    groups = {method: frame[(labels == method).to_numpy()] for method in means.index}
    replicates, bounds = {}, {}
    for c in columns:
        replicates[c] = {method: resampler.replicates(groups[method], c) for method in means.index}
        for method in means.index:
            estimate = resampler.estimate(means.loc[method, c], replicates[c][method], [groups[method]], c)
            bounds[method, c] = estimate.interval(bootstrap.level)
    if fmt == "csv":
        out = pd.DataFrame({"method": means.index, "n_seeds": counts.values})
        for c in columns:
            out[f"{c}_mean"], out[f"{c}_std"] = means[c].values, stds[c].values
            out[f"{c}_lo"] = [bounds[m, c][0] for m in means.index]
            out[f"{c}_hi"] = [bounds[m, c][1] for m in means.index]
        return out.to_csv(index=False)
    marks_of = {c: separated_best(means, c, replicates[c], groups, resampler) for c in columns}
    notes = zero_notes(frame, means, columns)
    marks = {key: f" [{i}]" for i, key in enumerate(notes, 1)}
    header = ["method"] + [f"{c} {metrics.get(c).arrow}".rstrip() for c in columns]
    rows = []
    for method in means.index:
        label = f"{method} (reference)" if method in REFERENCE_ROWS else method
        rows.append(
            [label]
            + [
                _cell(
                    means.loc[method, c],
                    stds.loc[method, c],
                    counts[method],
                    marks_of[c].get(method, ""),
                    fmt,
                    marks.get((method, c), ""),
                    bounds[method, c] if intervals else None,
                )
                for c in columns
            ]
        )
    footnotes = [f"{marks[key].strip()} {note}" for key, note in notes.items()]
    if any(TIE in m.values() for m in marks_of.values()):
        footnotes.append(tie_note(bootstrap, items is not None))
    if fmt == "md":

        def line(cells):
            return "| " + " | ".join(cells) + " |"

        table = [line(header), "|" + "---|" * len(header), *map(line, rows)]
        return "\n".join(table + ([""] + footnotes if footnotes else [])) + "\n"
    if fmt == "latex":

        def esc(s):
            for plain, latex in (
                ("_", r"\_"),
                ("±", r"$\pm$"),
                ("↑", r"$\uparrow$"),
                ("↓", r"$\downarrow$"),
                ("→", r"$\to$"),
                (TIE, r"$^\dagger$"),
            ):
                s = s.replace(plain, latex)
            return s

        spec = "l" + "r" * len(columns)
        body = [" & ".join(esc(x) for x in header) + r" \\", r"\midrule"] + [
            " & ".join(esc(x) for x in r) + r" \\" for r in rows
        ]
        notes_tex = [esc(n) + r" \\" for n in footnotes]
        return (
            "\n".join(
                [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", *body, r"\bottomrule", r"\end{tabular}", *notes_tex]
            )
            + "\n"
        )
    raise ValueError(f"--format {fmt}: expected md, latex or csv")
