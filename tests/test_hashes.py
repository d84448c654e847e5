"""The committed references' hashes stay valid: each row's `config_hash`, recomputed from the command that made
it (its preset and seeds, no training), equals the one in the CSV, so a refactor that moved a setting or a
hash part would be caught here rather than by every user's resumed run starting over."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import context

from harness.config import build
from harness.grid import Cell, cell_config, cells
from harness.registry import benchmarks

ROOT = Path(__file__).resolve().parents[1]
BOARDS = {  # leaderboards/README.md's commands, as config.build's keywords
    "tofu-mini.csv": dict(preset=str(ROOT / "leaderboards" / "tofu-mini.selected.toml"), seeds=[0, 1, 2]),
    "lume-mini.csv": dict(preset=str(ROOT / "leaderboards" / "lume-mini.selected.toml"), seeds=[0, 1, 2]),
    "wmdp-mini.csv": dict(preset=str(ROOT / "leaderboards" / "wmdp-mini.selected.toml"), seeds=[0, 1, 2]),
    "tofu-mini-smoke.csv": dict(
        preset="tofu-mini-smoke", methods=["fo-graddiff", "so-graddiff", "simu"], seeds=[0, 1, 2]
    ),
}


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_committed_hashes_recompute_from_their_commands(board):
    frame = pd.read_csv(ROOT / "leaderboards" / board)
    cfg = build("run", **BOARDS[board])
    ctx = context(cfg)
    committed = {
        f"{m}-{'' if pd.isna(s) else int(s)}": h
        for m, s, h in zip(frame["method"], frame["seed"], frame["config_hash"])
    }
    recomputed = {
        f"{cell.method}-{cell.seed}": ctx.cell_hash(cell.method, cell_config(cfg, cell).hashed()) for cell in cells(cfg)
    }
    recomputed |= {"target-": ctx.cell_hash("target")}
    if benchmarks[cfg.benchmark].retain_reference:
        recomputed["retain-"] = ctx.cell_hash("retain", target=False)
    assert recomputed == committed


def test_a_sweep_cell_hashes_like_the_committed_sweep():
    frame = pd.read_csv(ROOT / "leaderboards" / "tofu-mini-sweep.csv")
    row = frame[(frame["method"] == "simu") & (frame["seed"] == 1)].iloc[3]
    cfg = build("sweep", grid={"simu.lr": [row["simu.lr"]]}, methods=["simu"], seeds=[1])
    [cell] = [c for c in cells(cfg)]
    assert context(cfg).cell_hash("simu", cell_config(cfg, cell).hashed()) == row["config_hash"]
    assert cell == Cell("simu", 1, (("simu.lr", str(row["simu.lr"])),))
