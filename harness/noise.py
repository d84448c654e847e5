"""`harness noise`: rerun one configuration under several ATen CPU kernel sets and measure each metric's
spread, from which `harness check` takes its tolerances.

Each kernel set is PyTorch's documented `ATEN_CPU_CAPABILITY` switch (default = scalar code, avx2, avx512).
Every run trains its own embedded models (its own cache), because the training is where rounding differences
grow: that is the noise a user on another CPU sees. Runs go side by side, with the cores split between them.
The statistics (the noise table, the tolerances, the false alarms and missed faults they give) are here too;
`harness.regression` is the check they feed. Nothing here imports torch: the runs are child processes.
"""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from harness.environment import ENVIRONMENT_FILE, read_environments
from harness.files import EXIT_ENVIRONMENT, write_atomically
from harness.metrics import metrics
from harness.progress import note
from harness.regression import Check, check, checked_columns, on_scale
from harness.rows import REFERENCE_ROWS
from harness.tables import read_leaderboard, row_labels

CAPABILITIES = ("default", "avx2", "avx512")  # x86 kernel sets, from the slowest to the widest vectors
SIGMAS = 3.0  # a tolerance covers 3 standard deviations of the measured noise, on the metric's scale
ROUNDING = 1e-6  # a measured tolerance below this is rounding, not noise


def native_capabilities() -> list[str]:
    """The kernel sets this CPU can run: default always, then avx2 and avx512 when its flags list them."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return ["default"]
    return ["default"] + [c for c, flag in (("avx2", "avx2"), ("avx512", "avx512f")) if flag in flags]


def _run_command(run_args: list[str], out: Path, cache: Path, capability: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness",
        "run",
        *run_args,
        "--out",
        str(out / capability),
        "--cache-dir",
        str(cache / f"cache-{capability}"),
    ]


def run_all(run_args: list[str], out: Path, cache: Path, capabilities: list[str], jobs: int) -> None:
    """`harness run RUN_ARGS` once per kernel set, `jobs` at a time, each with cores // jobs threads and its
    own model cache (CACHE/cache-<capability>); each run's output goes to OUT/<capability>.log. A run that
    fails stops here, naming its log."""
    out.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    pending, running = list(capabilities), []
    while pending or running:
        while pending and len(running) < jobs:
            capability = pending.pop(0)
            log = (out / f"{capability}.log").open("w")
            env = os.environ | {"ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": threads}
            note(f"noise: ATEN_CPU_CAPABILITY={capability} OMP_NUM_THREADS={threads}, log {log.name}")
            running.append(
                (
                    capability,
                    log,
                    subprocess.Popen(
                        _run_command(run_args, out, cache, capability), env=env, stdout=log, stderr=subprocess.STDOUT
                    ),
                )
            )
        while all(process.poll() is None for _, _, process in running):  # whichever run ends first
            time.sleep(1)
        capability, log, process = running.pop(next(i for i, r in enumerate(running) if r[2].poll() is not None))
        log.close()
        if process.returncode != 0:
            for _, other_log, other in running:
                other.terminate()
                other_log.close()
            last = ([line for line in Path(log.name).read_text().splitlines() if line.strip()] or [""])[-1]
            if process.returncode == EXIT_ENVIRONMENT:  # the machine's fault in a child is the machine's here too
                raise OSError(errno.EIO, f"ATEN_CPU_CAPABILITY={capability}: {last.strip()}", log.name)
            raise RuntimeError(
                f"ATEN_CPU_CAPABILITY={capability}: harness run exited {process.returncode} "
                f"({last.strip()}); see {log.name}"
            )
        note(f"noise: ATEN_CPU_CAPABILITY={capability} done")
    _check_kernels_ran(out, capabilities)


def _check_kernels_ran(out: Path, capabilities: list[str]) -> None:
    """Every run recorded the kernel set it asked for (torch falls back silently on a CPU without it)."""
    for capability in capabilities:
        ran = {r["aten_cpu_capability"] for r in read_environments(out / capability / ENVIRONMENT_FILE).values()}
        if ran != {capability.upper()}:
            raise RuntimeError(
                f"ATEN_CPU_CAPABILITY={capability}: the run used {', '.join(sorted(ran))} kernels; "
                f"this CPU cannot run {capability} (it can: {', '.join(native_capabilities())})"
            )


# --- the statistics: tolerances from the measured noise, and what they let through --------------------------


def item_counts(run_dir: Path) -> dict[str, int]:
    """Items per evaluated split, read from the target row's per-item file."""
    path = run_dir / "results" / "target.items.jsonl"
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        split = json.loads(line)["split"]
        counts[split] = counts.get(split, 0) + 1
    return counts


def one_item(column: str, counts: dict[str, int], boards: list[pd.DataFrame]) -> float:
    """How far one item of the split a metric is computed on can move it (its declaration says how): the
    floor under every tolerance."""
    return metrics.get(column).one_item(column, counts, boards)


def noise_table(boards: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Long table of every (row label, seed, metric) across environments: one column per environment, then
    the spread (max - min) on the metric's scale."""
    first = next(iter(boards.values()))
    columns = checked_columns(first, first)
    records = []
    for env, board in boards.items():
        labels, seeds = row_labels(board), board["seed"].astype("string").fillna("")
        for column in columns:
            for label, seed, value in zip(labels, seeds, board[column]):
                records.append(
                    {
                        "method": label,
                        "seed": seed,
                        "metric": column,
                        "environment": env,
                        "value": on_scale(column, value) if pd.notna(value) else value,
                    }
                )
    wide = pd.DataFrame(records).set_index(["method", "seed", "metric", "environment"])["value"]
    wide = wide.unstack(sort=False)[list(boards)].astype(float)
    wide["spread"] = wide.max(axis=1) - wide.min(axis=1)
    return wide.reset_index()


def derive_tolerances(boards: dict[str, pd.DataFrame], counts: dict[str, int], sigmas: float = SIGMAS) -> dict:
    """Per metric: the noise's pooled standard deviation across environments (each method x seed a group),
    its largest spread, the one-item floor, and the tolerance max(sigmas x sigma, spread, one item), or the
    metric's declared tolerance where that is rounding (below ROUNDING)."""
    table = noise_table(boards)
    envs = list(boards)
    derived = {}
    for column, rows in table.groupby("metric", sort=False):
        values = rows[envs]
        n = values.notna().sum(axis=1)
        squares = values.sub(values.mean(axis=1), axis=0).pow(2).sum(axis=1)
        dof = (n - 1).clip(lower=0).sum()
        sigma = float(math.sqrt(squares.sum() / dof)) if dof else 0.0
        spread = float(rows["spread"].max(skipna=True)) if rows["spread"].notna().any() else 0.0
        floor = one_item(column, counts, list(boards.values()))
        # nothing moved it beyond rounding and its items are not counted (an lm-eval column): the declared one, as
        # kernel sets that agree do not show that no other CPU moves it by an item
        measured = max(sigmas * sigma, spread, floor)
        derived[column] = {
            "tolerance": measured if measured > ROUNDING else metrics.get(column).tolerance,
            "sigma": sigma,
            "spread": spread,
            "one_item": floor,
            "scale": metrics.get(column).scale,
        }
    return {
        "environments": envs,
        "items": counts,
        "rule": f"max({sigmas:g} sigma, largest spread, one item); the declared tolerance where that is rounding",
        "metrics": derived,
    }


def stopped_unlearning(board: pd.DataFrame, method: str) -> pd.DataFrame:
    """The fault a regression gate exists for: `method`'s rows carrying the target's figures, as if it had
    changed nothing (method diagnostics kept)."""
    faulty = board.copy()
    target = board[board["method"] == "target"].iloc[0]
    rows = faulty["method"] == method
    for column in checked_columns(board, board):
        faulty.loc[rows, column] = target[column]
    return faulty


def detection(boards: dict[str, pd.DataFrame], reference: str, tolerances: dict[str, float]) -> dict[str, list]:
    """Per kernel set, the methods whose stopping is missed: that kernel set's run with the method replaced
    by the target, checked against the reference kernel set's run, passes."""
    out = {}
    for env, board in boards.items():
        methods = [m for m in dict.fromkeys(board["method"]) if m not in REFERENCE_ROWS]
        out[env] = [
            m for m in methods if not check(stopped_unlearning(board, m), boards[reference], tolerances).regressions
        ]
    return out


def leave_one_out(boards: dict[str, pd.DataFrame], counts: dict[str, int], reference: str) -> dict[str, Check]:
    """False alarms measured on held-out data: for each environment other than `reference`, the tolerances
    derived without it, and its run checked against the reference environment's."""
    out = {}
    for held_out in boards:
        if held_out == reference:
            continue
        rest = {env: b for env, b in boards.items() if env != held_out}
        tolerances = {c: m["tolerance"] for c, m in derive_tolerances(rest, counts)["metrics"].items()}
        out[held_out] = check(boards[held_out], boards[reference], tolerances)
    return out


def other_machine_runs(folders: list[Path]) -> dict[str, Path]:
    """The kernel-set runs in other machines' `harness noise` folders, named FOLDER/<kernel set>: with them the
    tolerances cover those machines' noise too (another CPU vendor's BLAS rounds differently). One clear
    error for a folder without runs, or two folders of one name."""
    runs: dict[str, Path] = {}
    for folder in folders:
        found = {f"{folder.name}/{c}": folder / c for c in CAPABILITIES if (folder / c / "leaderboard.csv").is_file()}
        if not found:
            raise FileNotFoundError(
                f"--with {folder}: expected another machine's `harness noise` folder, with "
                f"{folder}/<{'|'.join(CAPABILITIES)}>/leaderboard.csv"
            )
        if set(found) & set(runs):
            raise ValueError(f"--with {folder}: a folder named {folder.name} is already given; rename one")
        runs |= found
    return runs


def same_command(boards: dict[str, pd.DataFrame]) -> None:
    """Every board holds the same cells made by the same command (method, seed and config_hash, which names
    a configuration and no measured value, so it is the same on every machine)."""
    cells = {
        env: set(zip(row_labels(b), b["seed"].astype("string").fillna(""), b["config_hash"]))
        for env, b in boards.items()
    }
    first, expected = next(iter(cells.items()))
    for env, found in cells.items():
        if found != expected:
            label, seed, _ = sorted(found ^ expected)[0]
            raise ValueError(
                f"{env}: not the same command as {first} ({label}, seed {seed or '-'} differs in its config_hash or "
                "is missing); run the same `harness noise` flags on every machine"
            )


def summarise(out: Path, capabilities: list[str], reference: str, others: dict[str, Path] | None = None) -> Path:
    """Write OUT/noise.csv (every value under every kernel set, and under those of `others`, other machines'
    runs) and OUT/tolerances.json (per metric: sigma, spread, one-item floor, tolerance, and leave-one-out
    false alarms); print the tolerances."""
    boards = {c: read_leaderboard(out / c) for c in capabilities}
    boards |= {env: read_leaderboard(path) for env, path in (others or {}).items()}
    same_command(boards)
    counts = item_counts(out / capabilities[0])
    tolerances = derive_tolerances(boards, counts)
    checks = leave_one_out(boards, counts, reference)
    tolerances["false_alarms"] = {
        "rule": f"tolerances derived without the held-out environment, its run checked against {reference}'s",
        **{
            env: {"regressions": found.regressions, "cells": found.cells, "metrics": found.metrics}
            for env, found in checks.items()
        },
    }
    missed = detection(boards, reference, {c: m["tolerance"] for c, m in tolerances["metrics"].items()})
    methods = sum(len(set(b["method"]) - set(REFERENCE_ROWS)) for b in boards.values())
    tolerances["detection"] = {
        "rule": f"each environment's run with one method's rows replaced by the target's, checked against {reference}'s",
        "faults": methods,
        "missed": missed,
    }
    write_atomically(out / "noise.csv", noise_table(boards).to_csv(index=False))
    path = out / "tolerances.json"
    write_atomically(path, json.dumps(tolerances, indent=1) + "\n")
    print(f"{'metric':34} {'scale':6} {'sigma':>9} {'spread':>9} {'one item':>9} {'tolerance':>9}")
    for column, m in tolerances["metrics"].items():
        print(
            f"{column:34} {m['scale']:6} {m['sigma']:9.4f} {m['spread']:9.4f} {m['one_item']:9.4f} "
            f"{m['tolerance']:9.4f}"
        )
    for env, found in checks.items():
        print(
            f"held out {env}: {len(found.regressions)} false alarm(s) in {found.cells} cells x {found.metrics} "
            f"metrics against {reference}"
        )
    caught = methods - sum(len(m) for m in missed.values())
    print(f"a method replaced by the target (stopped unlearning): caught {caught} of {methods}")
    return path
