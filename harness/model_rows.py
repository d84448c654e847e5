"""Rows of models scored as they are: the `reference` rows (the target and retain models, and the retain
reference that forget quality and privleak are measured against) and `harness eval`'s rows of kind `model`
(a folder, a hub name, a PEFT adapter, a cell saved by `--save-models`), which carry their weights' digest."""

from __future__ import annotations

import time
from pathlib import Path

from harness import distributed
from harness.checkpoints import read_card
from harness.grid import Context
from harness.models import peak_memory_gib, reset_peak_memory, weights_digest
from harness.progress import note, warn
from harness.results import cell_done, read_row, write_cell
from harness.rows import effort
from harness.rules import SettingError


def evaluate_reference_model(ctx: Context, which: str, model_dir) -> dict | None:
    """The target (or retain) model, unchanged, as a leaderboard row of its own; its metrics, or None when
    the row was already done (rank 0 decides for every rank; the others evaluate their share, and return None)."""
    cell_hash = ctx.cell_hash(which, target=which == "target")
    if distributed.share(distributed.is_main() and cell_done(ctx.results_dir, which, cell_hash, ctx.reference_hash)):
        return None
    reset_peak_memory(ctx.device)
    model, tokenizer = ctx.load(model_dir)
    result, seconds = ctx.score(model, tokenizer, is_target=which == "target")
    if not distributed.is_main():
        return None
    if which == "retain":  # the retain model is the reference, and is scored against itself too
        ctx.reference = ctx.bench.reference_from(result, ctx.cfg.retain_model or "embedded retain model")
        result.metrics |= ctx.bench.reference_metrics(result, ctx.reference, itself=True)
        ctx.reference.save(ctx.results_dir.parent / "reference" / "retain.json")
    row = (
        ctx.row(which, "reference", None, cell_hash)
        | effort(
            weights_digest=weights_digest(model),
            steps=0,
            trainable_params=0,
            unlearn_seconds=0.0,
            eval_seconds=seconds,
            wall_seconds=seconds,
            peak_memory_gib=peak_memory_gib(ctx.device),
        )
        | result.metrics
    )
    write_cell(ctx.results_dir, which, row, result.items)
    note(f"{which}: evaluated in {seconds:.1f} s")
    return result.metrics


def set_retain_reference(ctx: Context) -> None:
    """Read `--retain-eval`, or evaluate the retain model as the `retain` row (saved as `reference/retain.json`
    and reused on resume); with neither, warn that forget quality and privleak are missing. Rank 0 reads the
    reference; every rank evaluates the retain model when it must be."""
    if distributed.share(distributed.is_main() and read_retain_reference(ctx)):
        evaluate_reference_model(ctx, "retain", ctx.prepared.retain_dir)


def read_retain_reference(ctx: Context) -> bool:
    """The retain reference as `--retain-eval` or this run's saved one gives it (into `ctx.reference`); True
    when the retain model must be evaluated instead."""
    if ctx.cfg.retain_eval:
        ctx.reference = ctx.bench.load_reference(ctx.cfg.retain_eval)
        return False
    if not ctx.bench.retain_reference:
        return False
    if ctx.prepared.retain_dir is None:
        warn("no retain model (--retain-model or --retain-eval), so no forget_quality or privleak")
        return False
    saved = ctx.results_dir.parent / "reference" / "retain.json"
    if saved.exists():
        try:
            ctx.reference = ctx.bench.load_reference(saved, "the saved retain reference")
        except ValueError as err:  # cut short or edited: it is this run's own, so it is made again
            warn(f"{err}; evaluating the retain model again")
        if ctx.reference and cell_done(
            ctx.results_dir, "retain", ctx.cell_hash("retain", target=False), ctx.reference_hash
        ):
            return False
        ctx.reference = None
    return True


def evaluate_reference_models(ctx: Context, out_dir: Path) -> None:
    """The offline lm-eval tasks' files, the retain reference and the target's row (every rank evaluates;
    rank 0 writes)."""
    if distributed.is_main():
        ctx.write_offline_tasks(out_dir / "lm_eval_tasks")
    set_retain_reference(ctx)
    if ctx.prepared.target_dir is None:
        return
    if (target := evaluate_reference_model(ctx, "target", ctx.prepared.target_dir)) is not None:
        ctx.bench.warn_if_nothing_to_unlearn(target)


# --- harness eval: models made elsewhere ------------------------------------------------------------------


def model_row_file(name: str) -> str:
    """A model row's result file (`results/<name>.model.json`): never a cell's (those end in `seed<k>`)."""
    return f"{name}.model"


def check_names_free(ctx: Context) -> None:
    """Before anything is written: a name whose row is already in the run folder must hold the same weights
    (then the row resumes, or is redone for changed settings), else the command stops on it. Only then is the
    model loaded twice (once here for its digest). A row scored in another dtype has another digest, so
    there the folder or hub name must be the row's own."""
    if not distributed.is_main():
        return
    for name, source in zip(ctx.cfg.model_names, ctx.cfg.models):
        path = ctx.results_dir / f"{model_row_file(name)}.json"
        if not path.exists():
            continue
        previous = read_row(path)
        if previous.get("dtype") != ctx.cfg.compute.dtype:
            if previous.get("model") != str(source):
                raise _clash(name, path, previous, f"{source}, another model, in {ctx.cfg.compute.dtype}")
            continue
        model, _ = ctx.load(source)
        digest = ctx.digests[name] = weights_digest(model)
        del model
        if previous.get("weights_digest") != digest:
            raise _clash(name, path, previous, f"{source} is {digest}")


def _clash(name: str, path: Path, previous: dict, this: str) -> SettingError:
    return SettingError(
        "name",
        name,
        f"{path} holds the row of other weights ({previous.get('model')}, digest "
        f"{previous.get('weights_digest')} in {previous.get('dtype')}; {this}): pick another --name, "
        f"or delete that file to replace its row",
        "flag",
    )


def evaluate_model(ctx: Context, name: str, source: str) -> None:
    """One model as a row of kind `model`: skipped when its row is done for these weights (`check_names_free`
    found its digest the row's) and settings. Every rank scores its share; rank 0 writes."""
    cell_hash, file = ctx.cell_hash("model", target=False), model_row_file(name)
    main = distributed.is_main()
    if distributed.share(
        main and name in ctx.digests and cell_done(ctx.results_dir, file, cell_hash, ctx.reference_hash)
    ):
        if main:
            note(f"{name}: already evaluated (the same weights and settings)")
        return
    start = time.perf_counter()
    reset_peak_memory(ctx.device)
    model, tokenizer = ctx.load(source)
    if main:
        warn_if_other_benchmark(ctx, name, source)
    result, seconds = ctx.score(model, tokenizer)  # every rank: data-parallel
    if not main:
        return
    digest = weights_digest(model)
    row = (
        ctx.row(name, "model", None, cell_hash, model=str(source))
        | effort(
            weights_digest=digest,
            eval_seconds=seconds,
            wall_seconds=time.perf_counter() - start,
            peak_memory_gib=peak_memory_gib(ctx.device),
        )
        | result.metrics
    )
    write_cell(ctx.results_dir, file, row, result.items)
    note(f"{name}: evaluated in {seconds:.1f} s")


def warn_if_other_benchmark(ctx: Context, name: str, source: str) -> None:
    """A model saved by `--save-models` knows the benchmark configuration it was unlearned on: say so when it
    is scored on another (its row would not be comparable with its cell's)."""
    card = read_card(source)
    if card and card.get("benchmark_identity") not in (None, ctx.benchmark_identity):
        warn(
            f"{name}: {source} was unlearned on another configuration of {card.get('benchmark')} (its card says "
            f"{card.get('benchmark_identity')}, this run is {ctx.benchmark_identity}); give the run's --preset "
            f"and --set to compare it with its cell"
        )
