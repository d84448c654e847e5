"""`harness noise`: rerun one configuration under several ATen CPU kernel sets and measure each metric's
spread, from which `harness check` takes its tolerances.

Each kernel set is PyTorch's documented `ATEN_CPU_CAPABILITY` switch (default = scalar code, avx2, avx512).
Every run trains its own embedded models (its own cache), because the training is where rounding differences
grow: that is the noise a user on another CPU sees. Runs go side by side, with the cores split between them.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.cli import EXIT_ENVIRONMENT
from harness.files import write_atomically
from harness.progress import note
from harness.regression import detection, derive_tolerances, item_counts, leave_one_out, noise_table
from harness.results import ENVIRONMENT_FILE, REFERENCE_ROWS, read_environments
from harness.tables import read_leaderboard

CAPABILITIES = ("default", "avx2", "avx512")   # x86 kernel sets, from the slowest to the widest vectors


def native_capabilities() -> list[str]:
    """The kernel sets this CPU can run: default always, then avx2 and avx512 when its flags list them."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return ["default"]
    return ["default"] + [c for c, flag in (("avx2", "avx2"), ("avx512", "avx512f")) if flag in flags]


def _run_command(run_args: list[str], out: Path, cache: Path, capability: str) -> list[str]:
    return [sys.executable, "-m", "harness", "run", *run_args, "--out", str(out / capability),
            "--cache-dir", str(cache / f"cache-{capability}")]


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
            running.append((capability, log, subprocess.Popen(_run_command(run_args, out, cache, capability), env=env,
                                                             stdout=log, stderr=subprocess.STDOUT)))
        while all(process.poll() is None for _, _, process in running):   # whichever run ends first
            time.sleep(1)
        capability, log, process = running.pop(next(i for i, r in enumerate(running) if r[2].poll() is not None))
        log.close()
        if process.returncode != 0:
            for _, other_log, other in running:
                other.terminate()
                other_log.close()
            last = ([line for line in Path(log.name).read_text().splitlines() if line.strip()] or [""])[-1]
            if process.returncode == EXIT_ENVIRONMENT:   # the machine's fault in a child is the machine's here too
                raise OSError(errno.EIO, f"ATEN_CPU_CAPABILITY={capability}: {last.strip()}", log.name)
            raise RuntimeError(f"ATEN_CPU_CAPABILITY={capability}: harness run exited {process.returncode} "
                               f"({last.strip()}); see {log.name}")
        note(f"noise: ATEN_CPU_CAPABILITY={capability} done")
    _check_kernels_ran(out, capabilities)


def _check_kernels_ran(out: Path, capabilities: list[str]) -> None:
    """Every run recorded the kernel set it asked for (torch falls back silently on a CPU without it)."""
    for capability in capabilities:
        ran = {r["aten_cpu_capability"] for r in read_environments(out / capability / ENVIRONMENT_FILE).values()}
        if ran != {capability.upper()}:
            raise RuntimeError(f"ATEN_CPU_CAPABILITY={capability}: the run used {', '.join(sorted(ran))} kernels; "
                               f"this CPU cannot run {capability} (it can: {', '.join(native_capabilities())})")


def summarise(out: Path, capabilities: list[str], reference: str) -> Path:
    """Write OUT/noise.csv (every value under every kernel set) and OUT/tolerances.json (per metric: sigma,
    spread, one-item floor, tolerance, and leave-one-kernel-set-out false alarms); print the tolerances."""
    boards = {c: read_leaderboard(out / c) for c in capabilities}
    counts = item_counts(out / capabilities[0])
    tolerances = derive_tolerances(boards, counts)
    checks = leave_one_out(boards, counts, reference)
    tolerances["false_alarms"] = {
        "rule": f"tolerances derived without the held-out kernel set, its run checked against {reference}'s",
        **{env: {"regressions": check.regressions, "cells": check.cells, "metrics": check.metrics}
           for env, check in checks.items()}}
    missed = detection(boards, reference, {c: m["tolerance"] for c, m in tolerances["metrics"].items()})
    methods = sum(len(set(b["method"]) - set(REFERENCE_ROWS)) for b in boards.values())
    tolerances["detection"] = {
        "rule": f"each kernel set's run with one method's rows replaced by the target's, checked against "
                f"{reference}'s", "faults": methods, "missed": missed}
    write_atomically(out / "noise.csv", noise_table(boards).to_csv(index=False))
    path = out / "tolerances.json"
    write_atomically(path, json.dumps(tolerances, indent=1) + "\n")
    print(f"{'metric':34} {'scale':6} {'sigma':>9} {'spread':>9} {'one item':>9} {'tolerance':>9}")
    for column, m in tolerances["metrics"].items():
        print(f"{column:34} {m['scale']:6} {m['sigma']:9.4f} {m['spread']:9.4f} {m['one_item']:9.4f} "
              f"{m['tolerance']:9.4f}")
    for env, check in checks.items():
        print(f"held out {env}: {len(check.regressions)} false alarm(s) in {check.cells} cells x {check.metrics} "
              f"metrics against {reference}")
    caught = methods - sum(len(m) for m in missed.values())
    print(f"a method replaced by the target (stopped unlearning): caught {caught} of {methods}")
    return path
