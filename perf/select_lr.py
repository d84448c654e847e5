"""The learning-rate selection rule every method's default goes through (same grid, same score, same seeds).

Rule: for each method, run the default benchmark at every learning rate of LR_GRID (9 points, uniform in log
space from 1e-5 to 1e-3) over seeds 0, 1 and 2, score each cell with
`hmean(1 - forget_em_contains, retain_em_contains, world_facts_em_contains)`, and keep the learning rate with
the best mean score (ties: the smaller rate). Everything else stays at the method's recipe.

    python perf/select_lr.py --methods fo-graddiff [--out runs/select-lr]
"""

from __future__ import annotations

import argparse

import pandas as pd
from scipy.stats import hmean

from harness.config import RunConfig
from harness.runner import run

LR_GRID = [round(10 ** (-5 + k / 4), 8) for k in range(9)]
SEEDS = [0, 1, 2]
# Compute-only shortcuts that leave every result bit-identical (tested): SIMU's stage-1 scores do not depend on lr.
SHORTCUTS = {"simu": {"reuse_attribution": True}}


def selection_score(row) -> float:
    """Forgetting, retain knowledge and general knowledge, all needed at once (any zero gives zero)."""
    return float(hmean([1 - row["forget_em_contains"], row["retain_em_contains"], row["world_facts_em_contains"]]))


def grid_table(method: str, out: str, cache_dir: str | None) -> pd.DataFrame:
    rows = []
    for lr in LR_GRID:
        cfg = RunConfig(methods=[method], seeds=SEEDS, out=f"{out}/{method}/lr{lr:g}", cache_dir=cache_dir,
                        method_overrides={method: {"lr": lr, **SHORTCUTS.get(method, {})}})
        board = pd.read_csv(run(cfg))
        cells = board[board["method"] == method]
        rows.append({"method": method, "lr": lr, "score": cells.apply(selection_score, axis=1).mean(),
                     **cells[["forget_em_contains", "retain_em_contains", "world_facts_em_contains"]].mean()})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="fo-graddiff")
    parser.add_argument("--out", default="runs/select-lr")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    tables = [grid_table(m, args.out, args.cache_dir) for m in args.methods.split(",")]
    table = pd.concat(tables)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for t in tables:
        best = t.sort_values(["score", "lr"], ascending=[False, True]).iloc[0]
        print(f"{best['method']}: lr={best['lr']:g} (mean score {best['score']:.3f})")


if __name__ == "__main__":
    main()
