"""How fast a bad input is answered, side by side with a valid command's time to its first model load.

Each case is a fresh `harness` process, as a user starts it, timed from its start to its exit (a bad input) or
to the moment it first loads a model (the valid command: the embedded target, on the smoke preset with its
models cached; the process stops there). The goal (issue 25) is every bad input within 3 s on 2 cores, and
well under the valid command's time to its first load: nothing a bad input needs is loaded. Each figure is the
median of `--rounds` runs; the script prints each case's seconds and exit code, then the slowest bad input,
the valid command's time and their ratio.

Run: python perf/bad_input.py [--rounds 3] [--cache-dir DIR]   (a cold cache first trains the micro models)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMOKE = ["--preset", "tofu-mini-smoke"]
FIRST_LOAD = """import os, sys, time
import harness.grid
from harness.cli import main
def first_load(*args, **kwargs):
    print("first model load", flush=True)
    os._exit(0)
harness.grid.load_model = first_load
sys.exit(main(sys.argv[1:]))
"""


def cases(root: Path, target: Path) -> dict[str, list[str]]:
    """A bad input of each class the issue names (and one argparse error, the floor)."""
    data = root / "tofu"
    data.mkdir()
    (data / "forget01.json").write_bytes(b'{"question": "\xff"}\n')
    broken = Path(shutil.copytree(target, root / "cut"))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    unknown = Path(shutil.copytree(target, root / "unknown"))
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps(config | {"model_type": "florble"}))
    real = ["--benchmark", "tofu", "--set", "forget_split=forget01", "--data"]
    return {
        "unknown flag (argparse)": ["run", "--bogus"],
        "--seeds -1": ["run", *SMOKE, "--seeds", "-1"],
        "--methods a,a": ["run", *SMOKE, "--methods", "fo-graddiff,fo-graddiff"],
        "--set simu.lr=0": ["run", *SMOKE, "--methods", "simu", "--set", "simu.lr=0"],
        "--set world.n_perturbed=0": ["run", *SMOKE, "--set", "world.n_perturbed=0"],
        "--lm-eval-tasks unknown": ["run", *SMOKE, "--lm-eval-tasks", "no_such_task"],
        "--lm-eval-tasks without data": ["run", *SMOKE, "--lm-eval-tasks", "wmdp_bio"],
        "--data file not UTF-8": ["run", *real, str(data), "--model", str(target)],
        "--retain-eval missing": [
            "run",
            *real,
            str(data.parent / "none"),
            "--model",
            str(target),
            "--retain-eval",
            str(root / "none.json"),
        ],
        "--model missing": ["eval", *SMOKE, "--model", str(root / "none")],
        "--model truncated weights": ["eval", *SMOKE, "--model", str(broken)],
        "--model unknown architecture": ["eval", *SMOKE, "--model", str(unknown)],
    }


def seconds(argv: list[str], env: dict, script: str | None = None) -> tuple[float, int]:
    command = [sys.executable, "-c", script, *argv] if script else [sys.executable, "-m", "harness", *argv]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", default=None, help="the micro models' cache (default: a fresh one)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bad-input-"))
    cache = Path(args.cache_dir or root / "cache")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    valid = ["run", *SMOKE, "--methods", "fo-graddiff", "--out", str(root / "valid"), "--cache-dir", str(cache)]
    seconds(valid, env, FIRST_LOAD)  # trains and caches the micro models if the cache is cold; not measured
    target = next(cache.rglob("target"))
    rows = []
    for name, argv in cases(root, target).items():
        out = root / "out" / name.replace(" ", "_").replace("/", "_")
        runs = [seconds([*argv, "--out", str(out), "--cache-dir", str(cache)], env) for _ in range(args.rounds)]
        assert not out.exists(), f"{name}: wrote {out}"
        rows.append((name, statistics.median(s for s, _ in runs), runs[0][1]))
    first_load = statistics.median(seconds(valid, env, FIRST_LOAD)[0] for _ in range(args.rounds))
    width = max(len(name) for name, _, _ in rows)
    for name, median, code in rows:
        print(f"{name:{width}}  {median:5.2f} s  exit {code}")
    slowest = max(rows, key=lambda row: row[1])
    print(
        f"slowest bad input: {slowest[0]}, {slowest[1]:.2f} s (goal: 3 s); a valid command to its first model "
        f"load: {first_load:.2f} s; ratio {slowest[1] / first_load:.2f}"
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
