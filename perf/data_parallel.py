"""Data-parallel evaluation and sharded training, measured side by side in one run on the embedded benchmarks.

Prints:
- for the smoke and tofu-mini targets, `harness eval`'s evaluation seconds (the `--model` row's, after the
  process's first evaluation, its `target` row, has paid the imports; medians over rounds) in one process with
  one thread, in one process with two threads, and in two torchrun processes with one thread each, the
  speed-ups over one process (goal: 2 processes >= 1.6x one process of one thread each), and whether the
  items files are byte-identical;
- the smoke preset's FO-GradDiff, SO-GradDiff, NPO and SIMU on 2 processes, unsharded (data-parallel) and
  `--shard fsdp`: unlearning seconds per step (setup, sharding and SIMU's attribution included) and the ratio.

    python perf/data_parallel.py [--rounds 2] [--cache-dir DIR] [--presets tofu-mini-smoke,tofu-mini]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

import harness

SETUPS = {  # name: (processes, threads per process)
    "1 process, 1 thread": (1, 1),
    "1 process, 2 threads": (1, 2),
    "2 processes, 1 thread each": (2, 1),
}
METHODS = ["fo-graddiff", "so-graddiff", "npo", "simu"]


def harness_command(args: list[str], processes: int, threads: int) -> None:
    """`python -m harness ARGS`, under torchrun when `processes` > 1, with `threads` threads per process."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([*launcher, "-m", "harness", *args], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"harness {' '.join(args)}: exit {done.returncode}\n{done.stderr[-2000:]}")


def preset_flag(preset: str) -> list[str]:
    """tofu-mini is the default benchmark (no preset); the others are presets."""
    return [] if preset == "tofu-mini" else ["--preset", preset]


def eval_seconds(preset: str, target: str, out: Path, setup: str, cache_dir: str | None) -> tuple[float, str]:
    """The `--model` row's evaluation seconds and its items file, for one `harness eval` under `setup`."""
    cache = ["--cache-dir", cache_dir] if cache_dir else []
    args = ["eval", "--device", "cpu", *preset_flag(preset), "--model", target, "--name", "again", "--out", str(out)]
    harness_command([*args, *cache], *SETUPS[setup])
    row = pd.read_csv(out / "leaderboard.csv").set_index("method").loc["again"]
    return float(row["eval_seconds"]), (out / "results" / "again.model.items.jsonl").read_text()


def compare_evaluation(preset: str, rounds: int, root: Path, cache_dir: str | None) -> None:
    preset_name = None if preset == "tofu-mini" else preset
    target = str(harness.prepare(preset=preset_name, cache_dir=cache_dir).target_dir)
    seconds, items = {s: [] for s in SETUPS}, {}
    for i in range(rounds):
        for setup in SETUPS:  # interleaved, so that a slow spell of the machine hits every setup
            took, items[setup] = eval_seconds(preset, target, root / f"{preset}-{i}-{SETUPS[setup]}", setup, cache_dir)
            seconds[setup].append(took)
    median = {s: statistics.median(v) for s, v in seconds.items()}
    base = median["1 process, 1 thread"]
    same = len(set(items.values())) == 1
    print(f"{preset} target, evaluation seconds (median of {rounds}; items byte-identical: {same}):")
    for setup, took in median.items():
        print(f"  {setup:28s} {took:7.2f} s   speed-up {base / took:.2f}x")
    two = median["2 processes, 1 thread each"]
    print(f"  2 processes vs 1 process of 2 threads: {median['1 process, 2 threads'] / two:.2f}x")


def compare_sharding(root: Path, cache_dir: str | None) -> None:
    cache = ["--cache-dir", cache_dir] if cache_dir else []
    common = ["run", "--device", "cpu", "--preset", "tofu-mini-smoke", "--seeds", "0", "--methods", ",".join(METHODS)]
    per_step = {}
    for shard in ("none", "fsdp"):
        harness_command([*common, *cache, "--shard", shard, "--out", str(root / f"shard-{shard}")], 2, 1)
        board = pd.read_csv(root / f"shard-{shard}" / "leaderboard.csv").set_index("method")
        per_step[shard] = board.loc[METHODS, "unlearn_seconds"] / board.loc[METHODS, "steps"]
    print("smoke preset on 2 processes (1 thread each), unlearning seconds per step:")
    print(f"  {'method':12s} {'unsharded':>10s} {'fsdp':>10s} {'fsdp/unsharded':>15s}")
    for method in METHODS:
        none, fsdp = per_step["none"][method], per_step["fsdp"][method]
        print(f"  {method:12s} {none:10.3f} {fsdp:10.3f} {fsdp / none:15.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--presets", default="tofu-mini-smoke,tofu-mini")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        for preset in args.presets.split(","):
            compare_evaluation(preset, args.rounds, Path(root), args.cache_dir)
        compare_sharding(Path(root), args.cache_dir)


if __name__ == "__main__":
    main()
