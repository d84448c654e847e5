"""Run benchmark x method x seed (`run`), or score models made elsewhere (`evaluate`): prepare the benchmark,
unlearn, evaluate, write one result per row.

Each row is written atomically as `results/<cell>.json` (with its per-item records beside it as
`<cell>.items.jsonl`), so an interrupted run resumes where it stopped: finished rows are skipped. Rows are of
three kinds: `reference` (the target and retain models), `method` (a cell unlearned here) and `model` (scored
by `harness eval`, as `results/<name>.model.json`); the first and the last are models scored as they are
(harness/model_rows.py). Started as several processes (`accelerate launch`, `torchrun`), every rank unlearns each
cell together (sharded with `--shard fsdp`), every rank evaluates its share of the items, and rank 0 writes.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from harness import distributed
from harness.checkpoints import discard_stale, keep_cell
from harness.config import RunConfig
from harness.curves import Curve
from harness.environment import environment
from harness.files import locked
from harness.grid import Cell, Context, cell_config, cells, swept_values
from harness.leaderboard import write_leaderboard
from harness.model_rows import check_names_free, evaluate_model, evaluate_reference_models
from harness.models import peak_memory_gib, reset_peak_memory, resolve_device, seed_everything, weights_digest
from harness.progress import WARNINGS, note, progress, quiet_libraries_in_logs, warn
from harness.registry import benchmarks, methods
from harness.results import CellsFailed, write_artifacts, write_cell
from harness.rows import cell_effort, effort
from harness.sharding import mode as sharding_mode
from methods.base import Diverged

# --- harness run: the cells ----------------------------------------------------------------------------------


def model_folder(ctx: Context, cell: Cell) -> Path:
    return ctx.results_dir.parent / "models" / cell.name


def run_method(ctx: Context, cell: Cell) -> bool:
    """Unlearn a fresh copy of the target model with the cell's method, grid point and seed, then evaluate
    (and with `save.models`, keep the model; with `eval.every`, draw its curve). False when the cell was already
    done (rank 0 decides for all ranks: `Context.done`)."""
    mcfg = cell_config(ctx.cfg, cell)
    cell_hash = ctx.cell_hash(cell.method, mcfg.hashed(), *ctx.cfg.eval.stopping())
    main = distributed.is_main()
    done = main and ctx.done(cell.name, cell_hash, model_folder(ctx, cell))
    if main and not done:
        discard_stale(model_folder(ctx, cell), cell_hash)
    if distributed.share(done):
        return False
    start = time.perf_counter()
    reset_peak_memory(ctx.device)
    model, tokenizer = ctx.load(ctx.prepared.target_dir)
    if main:
        ctx.target_digest = ctx.target_digest or weights_digest(model)
    seed_everything(cell.seed + 1_000_003 * distributed.rank())  # ranks sample apart (the GNB labels)
    curve = Curve(ctx.light, cell, tokenizer) if ctx.cfg.eval.every else None
    report, model = ctx.unlearn(methods[cell.method](mcfg), model, tokenizer, curve)  # curve: its points taken
    result, eval_seconds = ctx.score(model, tokenizer)  # every rank: data-parallel
    if not main:
        return True
    digest = weights_digest(model)
    unchanged = digest == ctx.target_digest or ctx.same_as_target(result.metrics)
    if unchanged:
        warn(
            f"{cell.name}: the unlearned model is the target's (no weight or no metric moved); its row says "
            f"unchanged=True"
        )
    sweep = {"variant": cell.variant} | swept_values(mcfg, cell.point) if cell.point else {}
    spent = cell_effort(report, mcfg, distributed.world_size(), eval_seconds, time.perf_counter() - start)
    row = (
        ctx.row(cell.method, "method", cell.seed, cell_hash)
        | sweep
        | effort(weights_digest=digest, unchanged=unchanged, peak_memory_gib=peak_memory_gib(ctx.device), **spent)
    )
    row |= result.metrics | report.extra
    write_artifacts(ctx.results_dir.parent / "artifacts" / cell.name, report.artifacts)
    if ctx.cfg.save.models:
        origin = {"cell": cell.name, "benchmark_identity": ctx.benchmark_identity}
        keep_cell(model_folder(ctx, cell), model, tokenizer, row, mcfg.hashed(), origin)
    write_cell(ctx.results_dir, cell.name, row, result.items)
    return True


def run(cfg: RunConfig) -> Path:
    """Run every cell that is not done yet and rebuild the leaderboard; returns its path.
    A cell whose unlearning diverges writes no row; the others run, and `CellsFailed` names it at the end."""
    with started(cfg, "run") as (ctx, out_dir, main):
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


@contextmanager
def started(cfg: RunConfig, command: str, checks=()):
    """What every command does before its rows, on a configuration its door has checked (harness/preflight.py,
    which the command line and the Python API run before they import this module): hold the run folder,
    prepare the benchmark (the embedded models: trained once, then cached) and its reference rows (every rank
    evaluates, rank 0 writes). `checks` run after the benchmark is prepared and before anything is written."""
    quiet_libraries_in_logs()
    WARNINGS.clear()
    device, shard = resolve_device(cfg.compute.device), sharding_mode(cfg.compute.shard)
    distributed.configure(device, shard)
    bench, out_dir, main = benchmarks[cfg.benchmark](), Path(cfg.out_dir), distributed.is_main()
    with locked(out_dir, cfg.wait) if main else nullcontext():
        prepared = distributed.main_first(bench.prepare, cfg)
        ctx = Context(
            bench,
            prepared,
            cfg,
            out_dir / "results",
            environment(device, cfg.compute.dtype, distributed.world_size(), shard),
            device,
        )
        for check in checks:
            check(ctx)
        evaluate_reference_models(ctx, out_dir)
        yield ctx, out_dir, main


# --- harness eval: models made elsewhere ---------------------------------------------------------------------


def evaluate(cfg: RunConfig) -> Path:
    """Score each of `cfg.models` (a folder, a hub name or a PEFT adapter folder) with the benchmark's full
    suite, as rows of kind `model` beside the benchmark's reference rows and any run's cells in the same
    folder; returns the leaderboard's path. Launched as several processes, each scores its share of the items
    (data parallel) and rank 0 writes."""
    with started(cfg, "eval", checks=[check_names_free]) as (ctx, out_dir, main):
        for name, source in zip(cfg.model_names, cfg.models):
            evaluate_model(ctx, name, source)
        path = write_leaderboard(out_dir, cfg.methods, cfg.model_names) if main else out_dir / "leaderboard.csv"
        distributed.barrier()
    return path
