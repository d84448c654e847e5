"""Run benchmark x method x seed: prepare the benchmark, unlearn, evaluate, write one result per cell.

Each cell is written atomically as `results/<cell>.json` (with its per-item records beside it as
`<cell>.items.jsonl`), so an interrupted run resumes where it stopped: finished cells are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from evaluators import lm_eval_bridge
from harness.benchmarks.base import Benchmark, Prepared
from harness.config import RunConfig
from harness.data.tofu import check_template
from harness.grid import Cell, cell_config, cells, check_names, swept_values
from harness.models import load_model, seed_everything
from harness.progress import note, progress, quiet_libraries_in_logs
from harness.registry import benchmarks, methods
from harness.results import (cell_done, config_hash, environment, record_environment, write_atomically, write_cell,
                             write_leaderboard)

@dataclasses.dataclass
class Context:
    """What every cell of a run shares: the benchmark, its prepared data and models, the configuration, where
    results go, the retain reference rows are scored against, and the environment they are made in."""

    bench: Benchmark
    prepared: Prepared
    cfg: RunConfig
    results_dir: Path
    environment: str
    reference: object = None

    @property
    def reference_hash(self) -> str | None:
        return None if self.reference is None else self.reference.fingerprint()

    def cell_hash(self, *parts) -> str:
        """What was asked (data, models, evaluation, lm-eval tasks, then the cell's own parts), never a measured
        value, so the same command has the same hash on every machine."""
        tasks = self.bench.lm_eval_tasks(self.cfg)
        return config_hash(self.prepared.identity, self.cfg.forget_split, dataclasses.asdict(self.cfg.eval),
                           *([tasks] if tasks else []), *parts)

    def row(self, method: str, kind: str, seed, cell_hash: str) -> dict:
        return {"benchmark": self.bench.name, "method": method, "kind": kind, "seed": seed,
                "model": self.prepared.model_name, "forget_split": self.prepared.forget_split,
                "template": self.cfg.eval.template, "config_hash": cell_hash, "retain_reference": self.reference_hash,
                "environment": self.environment}


def evaluate_reference_model(ctx: Context, which: str, model_dir) -> dict | None:
    """The target (or retain) model, unchanged, as a leaderboard row of its own; its metrics, or None when
    the row was already done."""
    cell_hash = ctx.cell_hash(which)
    if cell_done(ctx.results_dir, which, cell_hash, ctx.reference_hash):
        return None
    model, tokenizer = load_model(model_dir, ctx.cfg.trust_remote_code)
    result, seconds = ctx.bench.score(model, tokenizer, ctx.prepared, ctx.cfg, ctx.reference)
    if which == "retain":   # the retain model is the reference, and is scored against itself too
        ctx.reference = ctx.bench.reference_from(result, ctx.cfg.retain_model or "embedded retain model")
        result.metrics |= ctx.bench.reference_metrics(result, ctx.reference)
        ctx.reference.save(ctx.results_dir.parent / "reference" / "retain.json")
    row = ctx.row(which, "reference", None, cell_hash) | {
        "steps": 0, "trainable_params": 0, "unlearn_seconds": 0.0, "eval_seconds": seconds,
        "wall_seconds": seconds} | result.metrics
    write_cell(ctx.results_dir, which, row, result.items)
    note(f"{which}: evaluated in {seconds:.1f} s")
    return result.metrics


def set_retain_reference(ctx: Context) -> None:
    """Read `--retain-eval`, or evaluate the retain model as the `retain` row (saved as `reference/retain.json`
    and reused on resume); with neither, warn that forget quality and privleak are missing."""
    if ctx.cfg.retain_eval:
        ctx.reference = ctx.bench.load_reference(ctx.cfg.retain_eval)
        return
    if not ctx.bench.retain_reference:
        return
    if ctx.prepared.retain_dir is None:
        print("warning: no retain model (--retain-model or --retain-eval), so no forget_quality or privleak",
              file=sys.stderr)
        return
    saved = ctx.results_dir.parent / "reference" / "retain.json"
    if saved.exists():
        ctx.reference = ctx.bench.load_reference(saved)
        if cell_done(ctx.results_dir, "retain", ctx.cell_hash("retain"), ctx.reference_hash):
            return
        ctx.reference = None
    evaluate_reference_model(ctx, "retain", ctx.prepared.retain_dir)


def run_method(ctx: Context, cell: Cell) -> bool:
    """Unlearn a fresh copy of the target model with the cell's method, grid point and seed, then evaluate.
    False when the cell was already done."""
    mcfg = cell_config(ctx.cfg, cell)
    cell_hash = ctx.cell_hash(cell.method, dataclasses.asdict(mcfg))
    if cell_done(ctx.results_dir, cell.name, cell_hash, ctx.reference_hash):
        return False
    start = time.perf_counter()
    model, tokenizer = load_model(ctx.prepared.target_dir, ctx.cfg.trust_remote_code)
    seed_everything(cell.seed)
    report = methods[cell.method](mcfg).unlearn(model, tokenizer, ctx.prepared.forget, ctx.prepared.retain)
    result, eval_seconds = ctx.bench.score(model, tokenizer, ctx.prepared, ctx.cfg, ctx.reference)
    sweep = {"variant": cell.variant} | swept_values(mcfg, cell.point) if cell.point else {}
    row = ctx.row(cell.method, "method", cell.seed, cell_hash) | sweep | {
        "steps": report.steps, "trainable_params": report.trainable_params,
        "unlearn_seconds": report.unlearn_seconds, "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - start} | result.metrics | report.extra
    write_artifacts(ctx.results_dir.parent / "artifacts" / cell.name, report.artifacts)
    write_cell(ctx.results_dir, cell.name, row, result.items)
    return True


def write_artifacts(folder: Path, artifacts: dict) -> None:
    """A method's extra files (e.g. SIMU's masks) as `artifacts/<cell>/<name>`, before the row marks it done."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in artifacts.items():
        if name.endswith(".pt"):
            torch.save(value, folder / name)
        else:
            write_atomically(folder / name, json.dumps(value, indent=1) + "\n")


def run(cfg: RunConfig) -> Path:
    """Run every cell that is not done yet and rebuild the leaderboard; returns its path."""
    quiet_libraries_in_logs()
    check_names(cfg)
    check_template(cfg.eval.template)
    bench = benchmarks[cfg.benchmark]()
    out_dir = Path(cfg.out_dir)
    ctx = Context(bench, bench.prepare(cfg), cfg, out_dir / "results", record_environment(out_dir, environment()))
    if bench.lm_eval_tasks(cfg):
        ctx.prepared.lm_eval_dir = lm_eval_bridge.write_embedded_tasks(out_dir / "lm_eval_tasks", cfg.world)
    set_retain_reference(ctx)
    if (target := evaluate_reference_model(ctx, "target", ctx.prepared.target_dir)) is not None:
        bench.warn_if_nothing_to_unlearn(target)
    todo = cells(cfg)
    for i, cell in enumerate(progress(todo, desc="cells", unit="cell"), 1):
        start = time.perf_counter()
        if run_method(ctx, cell):
            note(f"cell {i}/{len(todo)} {cell.name}: done in {time.perf_counter() - start:.1f} s")
    return write_leaderboard(out_dir)
