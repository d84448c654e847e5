"""A run's result files: one row per cell (`results/<cell>.json`) with its per-item records beside it, a
method's extra files, and whether a cell is done (what resume relies on). No torch import here except where
a method's `.pt` file is written: `harness table` and `harness check` read results on any machine."""

from __future__ import annotations

import io
import json
from pathlib import Path

from harness.files import uninterrupted, write_atomically
from harness.progress import warn


def write_cell(results_dir: Path, cell: str, row: dict, items: list[dict]) -> None:
    """Items first, then the row: the row's JSON existing is what marks the cell done."""
    results_dir.mkdir(parents=True, exist_ok=True)
    with uninterrupted():
        write_atomically(results_dir / f"{cell}.items.jsonl", "".join(json.dumps(i) + "\n" for i in items))
        write_atomically(results_dir / f"{cell}.json", json.dumps(row, indent=1) + "\n")


def read_row(path: Path) -> dict:
    """One result row; a truncated or corrupt file is an error naming it."""
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a result row ({err}); rerun `harness run` to redo its cell") from None
    if not isinstance(row, dict) or not isinstance(row.get("method"), str):
        raise ValueError(
            f"{path}: not a result row (expected a JSON object with a 'method', found "
            f"{type(row).__name__ if not isinstance(row, dict) else 'none'}); rerun `harness run` to "
            f"redo its cell"
        )
    return row


def items_complete(path: Path) -> bool:
    """A cell's per-item file is whole: every line one JSON record, the last one ended (an items file cut short
    would otherwise be kept beside its row on resume)."""
    try:
        text = path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            return False
        return all(isinstance(json.loads(line), dict) for line in text.splitlines())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def cell_done(results_dir: Path, cell: str, cell_hash: str, reference_hash: str | None = None) -> bool:
    """The cell's row exists for this configuration and was scored against this retain reference. A corrupt
    row (a disk that filled up, a copy cut short) is reported by name, and its cell runs again."""
    path = results_dir / f"{cell}.json"
    if not path.exists():
        return False
    try:
        row = read_row(path)
    except ValueError as err:
        warn(f"{str(err).split(';')[0]}; running its cell again")
        return False
    if row.get("config_hash") != cell_hash or row.get("retain_reference") != reference_hash:
        return False
    items = results_dir / f"{cell}.items.jsonl"
    if not items_complete(items):
        warn(f"{items}: missing or cut short; running its cell again")
        return False
    return True


def write_artifacts(folder: Path, artifacts: dict) -> None:
    """A method's extra files (e.g. SIMU's masks) as `artifacts/<cell>/<name>`, before the row marks it done:
    `.pt` with torch (loaded only here, by the runner), anything else as JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in artifacts.items():
        if name.endswith(".pt"):
            import torch

            buffer = io.BytesIO()  # torch.save reports a full disk as a RuntimeError naming no file
            torch.save(value, buffer)
            write_atomically(folder / name, buffer.getvalue())
        else:
            write_atomically(folder / name, json.dumps(value, indent=1) + "\n")


class CellsFailed(RuntimeError):
    """Some cells of a run failed (their rows are not written); the leaderboard holds the others."""

    def __init__(self, leaderboard: Path, cells: list[str]):
        super().__init__(
            f"{len(cells)} cell(s) failed and wrote no row: {', '.join(cells)} (the warnings above say "
            f"why; the leaderboard {leaderboard} holds the others)"
        )
        self.leaderboard, self.cells = leaderboard, cells
