"""What `harness eval` costs against the target row inside `harness run`, side by side in one process.

One `harness eval` into a fresh folder on the smoke preset scores the embedded target twice: as its `target`
reference row (the path `harness run` takes for it) and, passed as `--model`, as a row of kind `model` (the
path an outside checkpoint takes: the pre-flight check, the load, the weights' digest, the evaluation), after
one unmeasured round that pays the process's first-evaluation imports. The two rows' figures must be
identical; the script prints each path's evaluation and wall seconds (medians over rounds) and their ratio.

Run: python perf/eval_cost.py [--rounds 3] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import pandas as pd

import harness
from harness.metrics import metrics
from harness.rows import IDENTITY_COLUMNS


def one_round(out: Path, target: str, cache_dir: str | None) -> dict:
    """One fresh folder: the target as its reference row, then the same weights as a model row."""
    board = harness.evaluate(
        models=[target], names=["target-as-model"], preset="tofu-mini-smoke", out=out, cache_dir=cache_dir
    ).leaderboard
    rows = board.set_index("method")
    same = {c for c in rows.columns if c not in IDENTITY_COLUMNS and not metrics.get(c).cost}
    differ = [
        c
        for c in same
        if rows.loc["target", c] != rows.loc["target-as-model", c]
        and not (pd.isna(rows.loc["target", c]) and pd.isna(rows.loc["target-as-model", c]))
    ]
    assert not differ, f"the two paths disagree on {differ}"
    return {
        "run_eval": rows.loc["target", "eval_seconds"],
        "eval_eval": rows.loc["target-as-model", "eval_seconds"],
        "eval_wall": rows.loc["target-as-model", "wall_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    target = str(harness.prepare(preset="tofu-mini-smoke", cache_dir=args.cache_dir).target_dir)
    with tempfile.TemporaryDirectory() as root:
        one_round(Path(root) / "warm-up", target, args.cache_dir)  # the process's first evaluation pays imports
        rounds = [one_round(Path(root) / f"round{i}", target, args.cache_dir) for i in range(args.rounds)]
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"smoke target, {args.rounds} rounds (median seconds; identical figures on both paths):")
    print(f"  target row inside a command (harness run's path): evaluation {median['run_eval']:.2f}")
    print(
        f"  the same model through harness eval --model:      evaluation {median['eval_eval']:.2f}, "
        f"with check, load and digest {median['eval_wall']:.2f}"
    )
    print(
        f"  ratio eval/run: evaluation {median['eval_eval'] / median['run_eval']:.2f}, "
        f"wall {median['eval_wall'] / median['run_eval']:.2f}"
    )


if __name__ == "__main__":
    main()
