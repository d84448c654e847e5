"""How well CI's smoke check separates faults from noise: false alarms and detections, per kernel set.

Reads a `harness noise` folder of the smoke configuration (its runs and model caches), the other folders its
tolerances joined (`--with`, as `harness noise --with`), and the committed reference with its tolerances, then
- false alarms: each environment's run checked against the reference, and the held-out counts `harness noise`
  wrote (tolerances derived without that environment);
- detections: under each environment (its kernel set, threads and MKL path, as its run recorded them), three
  injected faults checked against the reference:
  1. a method that stopped unlearning (its rows carry the target's figures), per method;
  2. GradDiff with its forget term switched off (only the retain loss trains), per method;
  3. a metric computed wrong: TOFU's truth ratio with its exponent's sign flipped.

    python perf/check_power.py --noise runs/noise-tofu-mini-smoke --with runs/noise-tofu-mini-smoke-intel-mkl \
        --with runs/noise-tofu-mini-smoke-intel-mkl-2threads

An environment whose run took MKL's Intel path on a CPU that is not Intel's is rerun with `--mkl-intel-path`
(perf/mkl_intel_path.c built) preloaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import evaluators.tofu
import methods.base
import methods.losses
from harness import regression
from harness.cli import main as harness
from harness.noise import other_machine_runs
from harness.regression import read_tolerances
from harness.tables import read_leaderboard

RUN = ["--preset", "tofu-mini-smoke", "--methods", "fo-graddiff,so-graddiff,simu", "--seeds", "0,1,2"]
METHODS = ("fo-graddiff", "so-graddiff", "simu")


def forget_loss_off(model, forget_batch, retain_batch, gamma):
    retain_nll = methods.losses.answer_nll(model, retain_batch)
    return gamma * retain_nll, retain_nll.detach() * 0, retain_nll.detach()


def truth_ratio_flipped(correct, perturbed):
    return math.exp(statistics.mean(s["avg_nll"] for s in perturbed) - correct["avg_nll"])


FAULTS = {
    "forget-loss-off": (methods.base, "graddiff_loss", forget_loss_off),
    "truth-ratio-flipped": (evaluators.tofu, "truth_ratio", truth_ratio_flipped),
}


def child(fault: str, out: str, cache: str) -> int:
    """One faulty smoke run in this process (the parent sets its kernel set)."""
    module, name, replacement = FAULTS[fault]
    setattr(module, name, replacement)
    return harness(["run", *RUN, "--out", out, "--cache-dir", cache])


def run_folders(noise: Path, others: list[Path]) -> dict[str, Path]:
    """Environment name (as tolerances.json names it) -> its run folder: KERNEL_SET in `noise`, or the
    `--with` folder's, named as `harness noise --with` names it."""
    environments = json.loads((noise / "tolerances.json").read_text())["environments"]
    folders = {e: noise / e for e in environments} | other_machine_runs(others)
    return {e: folders[e] for e in environments}


def recorded(run: Path, mkl_intel: Path) -> dict[str, str]:
    """The environment variables a faulty run needs to repeat `run`'s: its kernel set, threads and MKL path
    (the Intel one through `mkl_intel`, preloaded)."""
    [env] = json.loads((run / "environment.json").read_text()).values()
    out = {"ATEN_CPU_CAPABILITY": env["ATEN_CPU_CAPABILITY"], "OMP_NUM_THREADS": env["OMP_NUM_THREADS"]}
    return out | ({"LD_PRELOAD": str(mkl_intel.resolve())} if env.get("mkl_kernels") == "intel" else {})


def fault_folder(out: Path, fault: str, env: str) -> Path:
    return out / f"{fault}-{env.replace('/', '-')}"


def faulty_runs(runs: dict[str, Path], out: Path, mkl_intel: Path) -> None:
    """Every fault under every environment, with as many threads as its run had, two single-thread processes
    at a time (resumable)."""
    jobs = [(fault, env, recorded(run, mkl_intel), run) for env, run in runs.items() for fault in FAULTS]
    while jobs:
        batch = [jobs.pop(0)]
        if batch[0][2]["OMP_NUM_THREADS"] == "1" and jobs and jobs[0][2]["OMP_NUM_THREADS"] == "1":
            batch.append(jobs.pop(0))
        running = []
        for fault, env, variables, run in batch:
            command = [
                sys.executable,
                __file__,
                "--child",
                fault,
                "--out",
                str(fault_folder(out, fault, env)),
                "--cache",
                str(run.parent / f"cache-{run.name}"),
            ]
            running.append(
                subprocess.Popen(
                    command, env=os.environ | variables, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        if any(p.wait() for p in running):
            raise SystemExit("a faulty run failed; rerun it by hand to see why")


def report(runs: dict[str, Path], noise: Path, reference_csv: Path, out: Path) -> None:
    reference, tolerances = read_leaderboard(reference_csv), read_tolerances(reference_csv)
    derived = json.loads((noise / "tolerances.json").read_text())
    capabilities = list(runs)
    boards = {c: read_leaderboard(run) for c, run in runs.items()}
    print("false alarms (failing lines; cells x metrics compared):")
    for cap, board in boards.items():
        found = regression.check(board, reference, tolerances)
        print(f"  {cap:8} run against the reference: {len(found.regressions)} ({found.cells} x {found.metrics})")
        for line in found.regressions:
            print(f"    {line}")
    for cap, held in derived["false_alarms"].items():
        if isinstance(held, dict):
            print(
                f"  {cap:8} held out of the tolerances: {len(held['regressions'])} ({held['cells']} x "
                f"{held['metrics']})"
            )
    print("detections:")
    stopped = derived["detection"]  # measured by `harness noise` with the same tolerances
    caught = stopped["faults"] - sum(len(missed) for missed in stopped["missed"].values())
    print(f"  stopped unlearning (method = target): caught {caught} of {stopped['faults']}")
    for fault in FAULTS:
        checks = [
            regression.check(read_leaderboard(fault_folder(out, fault, c)), reference, tolerances) for c in capabilities
        ]
        if fault == "forget-loss-off":
            found = sum(any(line.startswith(f"{m} (") for line in ch.regressions) for ch in checks for m in METHODS)
            total = len(METHODS) * len(capabilities)
        else:
            found, total = sum(bool(ch.regressions) for ch in checks), len(capabilities)
        lines = ", ".join(f"{c} {len(ch.regressions)} lines" for c, ch in zip(capabilities, checks))
        print(f"  {fault}: caught {found} of {total} ({lines})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", default="runs/noise-tofu-mini-smoke", help="a `harness noise` folder of the smoke")
    parser.add_argument("--reference", default="leaderboards/tofu-mini-smoke.csv")
    parser.add_argument(
        "--with", dest="others", action="append", default=[], help="a folder `harness noise --with` joined"
    )
    parser.add_argument("--mkl-intel-path", default="runs/mkl_intel_path.so", help="perf/mkl_intel_path.c, built")
    parser.add_argument("--out", default="runs/check-power")
    parser.add_argument("--child", choices=sorted(FAULTS), help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.exit(child(args.child, args.out, args.cache))
    noise, out = Path(args.noise), Path(args.out)
    runs = run_folders(noise, [Path(d) for d in args.others])
    faulty_runs(runs, out, Path(args.mkl_intel_path))
    report(runs, noise, Path(args.reference), out)
