"""A run's leaderboard: every result row of its folder as one CSV, in a stable order (no torch)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.files import uninterrupted, write_atomically
from harness.results import read_row
from harness.rows import IDENTITY_COLUMNS, KINDS, REFERENCE_ROWS, swept_columns


def build_leaderboard(out_dir: Path, methods: list[str] = (), models: list[str] = ()) -> pd.DataFrame:
    """One row per result file: the reference models first, then the methods' cells in `methods`' order, then
    `harness eval`'s models; rows of earlier commands into the same folder keep the order the folder's
    leaderboard had them in (new models are added after them), the rest by name, each by grid point and seed."""
    rows = [read_row(p) for p in sorted((out_dir / "results").glob("*.json"))]
    frame = pd.DataFrame(rows)
    kinds = frame["kind"].map(lambda k: KINDS.index(k) if k in KINDS else len(KINDS)) if "kind" in frame else 0
    order = list(dict.fromkeys([*REFERENCE_ROWS, *methods, *_previous_order(out_dir), *models]))
    frame["_kind"], frame["_order"] = kinds, frame["method"].map(lambda m: order.index(m) if m in order else len(order))
    swept = swept_columns(frame)
    frame = frame.sort_values(["_kind", "_order", "method", *swept, "seed"], na_position="first").drop(
        columns=["_kind", "_order"]
    )
    frame["seed"] = frame["seed"].astype("Int64")  # integers, empty for the reference rows
    metrics = [c for c in frame.columns if c not in IDENTITY_COLUMNS and c not in swept]
    return frame[[c for c in IDENTITY_COLUMNS if c in frame.columns] + swept + metrics]


def _previous_order(out_dir: Path) -> list[str]:
    """The row names of the folder's leaderboard as it was (an unreadable one gives none)."""
    try:
        return list(dict.fromkeys(pd.read_csv(out_dir / "leaderboard.csv", usecols=["method"])["method"]))
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return []


def write_leaderboard(out_dir: Path, methods: list[str] = (), models: list[str] = ()) -> Path:
    """`OUT/leaderboard.csv`, and beside it `items.csv.gz`, the per-item values its item-mean columns are means
    of, which `harness table` and `harness compare` resample (harness/uncertainty.py)."""
    from harness.uncertainty import write_items

    path = out_dir / "leaderboard.csv"
    with uninterrupted():
        write_atomically(path, build_leaderboard(out_dir, methods, models).to_csv(index=False))
        write_items(out_dir)
    return path
