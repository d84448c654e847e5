"""Run benchmark x method x seed: prepare the benchmark, unlearn, evaluate, write one result per cell.

Each cell is written atomically as `results/<cell>.json` (with its per-item records beside it as
`<cell>.items.jsonl`), so an interrupted run resumes where it stopped: finished cells are skipped. Started as
several processes (`accelerate launch`, `torchrun`), every rank unlearns each cell together, and rank 0 alone
evaluates and writes.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from evaluators import lm_eval_bridge
from harness import distributed
from harness.config import RunConfig
from harness.data.tofu import check_template
from harness.grid import Cell, Context, cell_config, cells, check_names, swept_values, tracked
from harness.models import peak_memory_gib, reset_peak_memory, resolve_device, seed_everything, weights_digest
from harness.progress import WARNINGS, note, progress, quiet_libraries_in_logs, warn
from harness.registry import benchmarks, methods
from harness.results import (CellsFailed, cell_done, check_writable, environment, locked, record_environment,
                             write_artifacts, write_cell, write_leaderboard)
from methods.base import Diverged


def evaluate_reference_model(ctx: Context, which: str, model_dir) -> dict | None:
    """The target (or retain) model, unchanged, as a leaderboard row of its own; its metrics, or None when
    the row was already done."""
    cell_hash = ctx.cell_hash(which)
    if cell_done(ctx.results_dir, which, cell_hash, ctx.reference_hash):
        return None
    reset_peak_memory(ctx.device)
    model, tokenizer = ctx.load(model_dir)
    result, seconds = ctx.bench.score(model, tokenizer, ctx.prepared, ctx.cfg, ctx.reference)
    if which == "retain":   # the retain model is the reference, and is scored against itself too
        ctx.reference = ctx.bench.reference_from(result, ctx.cfg.retain_model or "embedded retain model")
        result.metrics |= ctx.bench.reference_metrics(result, ctx.reference)
        ctx.reference.save(ctx.results_dir.parent / "reference" / "retain.json")
    row = ctx.row(which, "reference", None, cell_hash) | {
        "steps": 0, "trainable_params": 0, "unlearn_seconds": 0.0, "eval_seconds": seconds,
        "wall_seconds": seconds, "peak_memory_gib": peak_memory_gib(ctx.device)} | result.metrics
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
        warn("no retain model (--retain-model or --retain-eval), so no forget_quality or privleak")
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
    False when the cell was already done (rank 0 decides for all ranks)."""
    mcfg = cell_config(ctx.cfg, cell)
    cell_hash = ctx.cell_hash(cell.method, tracked(cell.method, mcfg))
    main = distributed.is_main()
    if distributed.share(main and cell_done(ctx.results_dir, cell.name, cell_hash, ctx.reference_hash)):
        return False
    start = time.perf_counter()
    reset_peak_memory(ctx.device)
    model, tokenizer = ctx.load(ctx.prepared.target_dir)
    if main:
        ctx.target_digest = ctx.target_digest or weights_digest(model)
    seed_everything(cell.seed + 1_000_003 * distributed.rank())   # ranks sample apart (the GNB labels)
    report = methods[cell.method](mcfg).unlearn(model, tokenizer, ctx.prepared.forget, ctx.prepared.retain)
    if not main:
        return True
    result, eval_seconds = ctx.bench.score(model, tokenizer, ctx.prepared, ctx.cfg, ctx.reference)
    unchanged = weights_digest(model) == ctx.target_digest or ctx.same_as_target(result.metrics)
    if unchanged:
        warn(f"{cell.name}: the unlearned model is the target's (no weight or no metric moved); its row says "
             f"unchanged=True")
    sweep = {"variant": cell.variant} | swept_values(mcfg, cell.point) if cell.point else {}
    row = ctx.row(cell.method, "method", cell.seed, cell_hash) | sweep | {
        "per_device_batch": mcfg.batch_size, "effective_batch": mcfg.batch_size * mcfg.grad_accum *
        distributed.world_size(), "unchanged": unchanged, "steps": report.steps,
        "trainable_params": report.trainable_params, "unlearn_seconds": report.unlearn_seconds,
        "eval_seconds": eval_seconds, "wall_seconds": time.perf_counter() - start,
        "peak_memory_gib": peak_memory_gib(ctx.device)} | result.metrics | report.extra
    write_artifacts(ctx.results_dir.parent / "artifacts" / cell.name, report.artifacts)
    write_cell(ctx.results_dir, cell.name, row, result.items)
    return True


def run(cfg: RunConfig) -> Path:
    """Run every cell that is not done yet and rebuild the leaderboard; returns its path.
    A cell whose unlearning diverges writes no row; the others run, and `CellsFailed` names it at the end."""
    quiet_libraries_in_logs()
    WARNINGS.clear()
    check_names(cfg)
    check_template(cfg.eval.template)
    device = resolve_device(cfg.compute.device)
    distributed.configure(device)
    bench, out_dir, main = benchmarks[cfg.benchmark](), Path(cfg.out_dir), distributed.is_main()
    lm_eval_bridge.check_template(bench.lm_eval_tasks(cfg), cfg.eval.template)
    if main:
        check_writable(out_dir)
    with locked(out_dir, cfg.wait) if main else nullcontext():
        prepared = distributed.main_first(bench.prepare, cfg)   # the embedded models: trained once, then cached
        env = environment(device, cfg.compute.dtype, distributed.world_size())
        ctx = Context(bench, prepared, cfg, out_dir / "results", record_environment(out_dir, env) if main else "",
                      device)
        if main:
            evaluate_reference_models(ctx, out_dir)
        todo, failed = cells(cfg), []
        for i, cell in enumerate(progress(todo, desc="cells", unit="cell", disable=None if main else True), 1):
            start = time.perf_counter()
            try:
                if run_method(ctx, cell) and main:
                    note(f"cell {i}/{len(todo)} {cell.name}: done in {time.perf_counter() - start:.1f} s")
            except Diverged as err:
                failed.append(cell.name)
                warn(f"cell {i}/{len(todo)} {cell.name} failed, no row written: {err}")
        path = write_leaderboard(out_dir, cfg.methods) if main else out_dir / "leaderboard.csv"
        distributed.barrier()
    if failed:
        raise CellsFailed(path, failed)
    return path


def evaluate_reference_models(ctx: Context, out_dir: Path) -> None:
    """The lm-eval tasks' files, the retain reference and the target's row (rank 0)."""
    if tasks := ctx.bench.lm_eval_tasks(ctx.cfg):
        ctx.prepared.lm_eval_dir = lm_eval_bridge.write_embedded_tasks(out_dir / "lm_eval_tasks", ctx.cfg.world,
                                                                          ctx.cfg.lume)
        for task in set(tasks) & set(lm_eval_bridge.EMBEDDED_TASKS):
            note(lm_eval_bridge.describe(task, ctx.cfg.world, ctx.cfg.lume))
    set_retain_reference(ctx)
    if (target := evaluate_reference_model(ctx, "target", ctx.prepared.target_dir)) is not None:
        ctx.bench.warn_if_nothing_to_unlearn(target)
