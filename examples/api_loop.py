"""The Python API in a loop: one method at several learning rates, each a `harness.run` into one folder,
the rows collected as a pandas frame (the same rows `harness run` writes from the shell; the loop resumes
like the CLI, so rerunning it skips the rates already done).

Run: python examples/api_loop.py [--out DIR] [--cache-dir DIR] [--preset NAME]
"""

from __future__ import annotations

import argparse

import pandas as pd

import harness

COLUMNS = ["forget_em_contains", "retain_em_contains", "model_utility"]


def main(
    out: str = "runs/example-loop",
    cache_dir: str | None = None,
    preset: str = "tofu-mini-smoke",
    rates=(1e-4, 5e-4, 2e-3),
) -> pd.DataFrame:
    rows = []
    for lr in rates:
        board, folder = harness.run(
            methods=["fo-graddiff"],
            preset=preset,
            out=f"{out}/lr{lr:g}",
            cache_dir=cache_dir,
            settings={"fo-graddiff.lr": lr},
        )
        cell = board[board["kind"] == "method"].iloc[0]
        rows.append({"lr": lr, **{c: cell[c] for c in COLUMNS}})
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return frame


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-loop")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--preset", default="tofu-mini-smoke")
    args = parser.parse_args()
    main(args.out, args.cache_dir, args.preset)
