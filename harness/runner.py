"""Run benchmark x method x seed: load the target model, unlearn, evaluate, write one result per cell.

Each cell is written atomically as `results/<cell>.json` (with its per-item records beside it as
`<cell>.items.jsonl`), so an interrupted run resumes where it stopped: finished cells are skipped.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import sys
import time
from pathlib import Path

import torch

from evaluators import lm_eval_bridge
from evaluators import lume as lume_eval
from evaluators import tofu as tofu_eval
from evaluators.tofu import RetainReference
from harness.config import BENCHMARKS, LUME_BENCHMARKS, RunConfig, method_config
from harness.data.lume import as_qa, load_lume
from harness.data.tofu import check_template, load_splits
from harness.models import load_model, prepare_embedded, prepare_embedded_lume, seed_everything
from harness.progress import note, progress, quiet_libraries_in_logs
from harness.registry import load_builtin_methods, methods
from harness.results import (cell_done, config_hash, environment, record_environment, write_atomically, write_cell,
                             write_leaderboard)

LUME_MMLU_SUBSTITUTE = "embedded_world_facts_mc"   # LUME's final score without MMLU: the bridge's world-facts MC
TARGET_MIN_EM = 0.9


@dataclasses.dataclass(frozen=True)
class Cell:
    """One method x grid point x seed. `point` holds the swept hyperparameters of a `harness sweep`, as
    ("METHOD.key", value) pairs; it is empty in a plain `harness run`."""

    method: str
    seed: int
    point: tuple[tuple[str, str], ...] = ()

    @property
    def variant(self) -> str:
        """The grid point as `key=value` pairs, e.g. `t=0.1,m=5` (empty outside a sweep)."""
        return ",".join(f"{key.split('.', 1)[1]}={value}" for key, value in self.point)

    @property
    def name(self) -> str:
        """The result file's name: `simu-seed0`, or `simu-t0.1-m5-seed0` in a sweep."""
        parts = [f"{key.split('.', 1)[1]}{value}" for key, value in self.point]
        return re.sub(r"[^A-Za-z0-9._=-]", "_", "-".join([self.method, *parts, f"seed{self.seed}"]))


def cells(cfg: RunConfig) -> list[Cell]:
    """Every method x grid point x seed; a method without grid axes has the single empty point."""
    out = []
    for method in cfg.methods:
        axes = [[(key, v) for v in values] for key, values in cfg.grid.items() if key.split(".")[0] == method]
        out += [Cell(method, seed, point) for point in itertools.product(*axes) for seed in cfg.seeds]
    return out


@dataclasses.dataclass
class Benchmark:
    """Resolved data and models of one benchmark (`retain_dir` None: no retain model to evaluate). `family`
    picks the evaluator (tofu or lume); `forget` and `retain` are the rows the methods train on."""

    name: str
    family: str
    splits: object
    forget: list[dict]
    retain: list[dict]
    forget_split: str
    target_dir: Path | str
    retain_dir: Path | str | None
    model_name: str
    identity: dict
    lm_eval_dir: Path | None = None      # the bridge's task YAMLs, written by `run` when tasks are asked for


def _no_real_paths(cfg: RunConfig) -> None:
    for flag, value in (("--data", cfg.data), ("--model", cfg.model), ("--retain-model", cfg.retain_model)):
        if value:
            raise ValueError(f"{flag}: the embedded benchmark brings its own; use --benchmark tofu or lume for real "
                             f"data and models")


def _need_real_paths(cfg: RunConfig, what: str) -> None:
    if not cfg.data or not cfg.model:
        raise ValueError(f"--benchmark {cfg.benchmark}: needs --data ({what}) and --model (the target model)")


def prepare_benchmark(cfg: RunConfig) -> Benchmark:
    """The embedded worlds and their cached models (tofu-mini, lume-mini), or real data with `--model`."""
    if cfg.benchmark not in BENCHMARKS:
        raise ValueError(f"--benchmark {cfg.benchmark}: unknown; expected one of {', '.join(BENCHMARKS)}")
    if cfg.benchmark in LUME_BENCHMARKS:
        return _prepare_lume(cfg)
    if cfg.benchmark == "tofu":
        _need_real_paths(cfg, "a TOFU folder or hub name")
        if cfg.retain_model and cfg.retain_eval:
            raise ValueError("--retain-model and --retain-eval: give one retain reference, not both")
        identity = {"data": str(cfg.data), "model": str(cfg.model), "retain_model": cfg.retain_model}
        splits = load_splits(cfg.data, cfg.forget_split)
        return Benchmark("tofu", "tofu", splits, splits.forget, splits.retain, cfg.forget_split, cfg.model,
                         cfg.retain_model, Path(str(cfg.model).rstrip("/")).name, identity)
    _no_real_paths(cfg)
    embedded = prepare_embedded(cfg.world, cfg.train, cfg.forget_split, cfg.cache_dir)
    identity = {"world": dataclasses.asdict(cfg.world), "train": dataclasses.asdict(cfg.train)}
    splits = load_splits(embedded.world_dir, cfg.forget_split)
    return Benchmark(cfg.benchmark, "tofu", splits, splits.forget, splits.retain, cfg.forget_split,
                     embedded.target_dir, embedded.retain_dir, f"embedded-llama-{config_hash(identity)}", identity)


def _prepare_lume(cfg: RunConfig) -> Benchmark:
    """LUME has no retain model: its metrics compare forget with retain rows and members with non-members."""
    if cfg.retain_model or cfg.retain_eval:
        raise ValueError(f"--benchmark {cfg.benchmark}: LUME's metrics need no retain model; drop --retain-model "
                         f"and --retain-eval")
    if cfg.benchmark == "lume":
        _need_real_paths(cfg, "a folder of the official LUME files")
        splits, target, name = load_lume(cfg.data), cfg.model, Path(str(cfg.model).rstrip("/")).name
        identity = {"data": str(cfg.data), "model": str(cfg.model)}
    else:
        _no_real_paths(cfg)
        embedded = prepare_embedded_lume(cfg.world, cfg.lume, cfg.train, cfg.cache_dir)
        identity = {"world": dataclasses.asdict(cfg.world), "lume": dataclasses.asdict(cfg.lume),
                    "train": dataclasses.asdict(cfg.train)}
        splits, target = load_lume(embedded.data_dir), embedded.target_dir
        name = f"embedded-llama-{config_hash(identity)}"
    return Benchmark(cfg.benchmark, "lume", splits, as_qa(splits.forget), as_qa(splits.retain), "forget", target,
                     None, name, identity)


def lm_eval_tasks(cfg: RunConfig, bench: Benchmark) -> list[str]:
    """`--lm-eval-tasks`, plus, on LUME without MMLU, the named substitute its final score uses."""
    tasks = list(cfg.lm_eval_tasks)
    if bench.family == "lume" and "mmlu" not in tasks and LUME_MMLU_SUBSTITUTE not in tasks:
        tasks.append(LUME_MMLU_SUBSTITUTE)
    return tasks


def _evaluate(model, tokenizer, bench: Benchmark, cfg: RunConfig, reference: RetainReference | None):
    """The benchmark's figures (TOFU's, plus forget quality and privleak when there is a retain reference; or
    LUME's), then the lm-eval tasks (`lmeval_seconds`), then LUME's final score."""
    start = time.perf_counter()
    if bench.family == "lume":
        result = lume_eval.evaluate(model, tokenizer, bench.splits, cfg.eval)
    else:
        result = tofu_eval.evaluate(model, tokenizer, bench.splits.eval, cfg.eval)
        if reference is not None:
            result.metrics |= tofu_eval.reference_metrics(result, reference)
    tasks = lm_eval_tasks(cfg, bench)
    if tasks:
        bridge_start = time.perf_counter()
        result.metrics |= lm_eval_bridge.run_tasks(model, tokenizer, tasks, bench.lm_eval_dir, cfg.eval.batch_size)
        result.metrics["lmeval_seconds"] = time.perf_counter() - bridge_start
    if bench.family == "lume":
        result.metrics |= _lume_final_score(result.metrics)
    return result, time.perf_counter() - start


def _evaluation_identity(bench: Benchmark, cfg: RunConfig) -> list:
    """What every cell's hash shares: data and models, forget split, evaluation settings, lm-eval tasks."""
    tasks = lm_eval_tasks(cfg, bench)
    return [bench.identity, cfg.forget_split, dataclasses.asdict(cfg.eval)] + ([tasks] if tasks else [])


def _lume_final_score(metrics: dict) -> dict:
    """`lume_final_score_mmlu`, or `lume_final_score_<substitute>` when no MMLU was run."""
    if "lmeval_mmlu_acc" in metrics:
        name, general = "mmlu", metrics["lmeval_mmlu_acc"]
    else:
        name, general = "world_facts_mc", metrics[f"lmeval_{LUME_MMLU_SUBSTITUTE}_acc"]
    return {f"lume_final_score_{name}": lume_eval.final_score(metrics["lume_task_aggregate"], general,
                                                              metrics["lume_mia_score"])}


@dataclasses.dataclass(frozen=True)
class Stamp:
    """What every row of this run carries besides its own hash: the retain reference its forget quality and
    privleak were scored against, and the environment it was made in (both recorded, never hashed)."""

    reference: RetainReference | None
    environment: str

    @property
    def reference_hash(self) -> str | None:
        """A fingerprint of the retain model's measured values (not of where they were read from): a resume
        re-runs the cells that were scored against other values."""
        if self.reference is None:
            return None
        return config_hash(self.reference.forget_truth_ratios, self.reference.mia_auc)


def _base_row(bench: Benchmark, cfg: RunConfig, method: str, kind: str, seed, cell_hash: str, stamp: Stamp) -> dict:
    return {"benchmark": bench.name, "method": method, "kind": kind, "seed": seed, "model": bench.model_name,
            "forget_split": bench.forget_split, "template": cfg.eval.template, "config_hash": cell_hash,
            "retain_reference": stamp.reference_hash, "environment": stamp.environment}


def retain_reference(bench: Benchmark, cfg: RunConfig, out_dir: Path, environment_key: str) -> Stamp:
    """The run's stamp with the retain model's reference: evaluated as the `retain` row (and saved as
    `reference/retain.json`), or read from `--retain-eval`; no reference (with a warning) when there is
    neither."""
    if cfg.retain_eval:
        return Stamp(RetainReference.load(cfg.retain_eval), environment_key)
    if bench.family == "lume":
        return Stamp(None, environment_key)
    if bench.retain_dir is None:
        print("warning: no retain model (--retain-model or --retain-eval), so no forget_quality or privleak",
              file=sys.stderr)
        return Stamp(None, environment_key)
    path = out_dir / "reference" / "retain.json"
    cell_hash = config_hash(*_evaluation_identity(bench, cfg), "retain")
    if path.exists():
        saved = Stamp(RetainReference.load(path), environment_key)
        if cell_done(out_dir / "results", "retain", cell_hash, saved.reference_hash):
            return saved
    model, tokenizer = load_model(bench.retain_dir, cfg.trust_remote_code)
    result, eval_seconds = _evaluate(model, tokenizer, bench, cfg, None)
    stamp = Stamp(RetainReference.from_result(result, cfg.retain_model or "embedded retain model"), environment_key)
    result.metrics |= tofu_eval.reference_metrics(result, stamp.reference)
    stamp.reference.save(path)
    _write_reference_row(bench, cfg, "retain", cell_hash, stamp, result, eval_seconds, out_dir / "results")
    return stamp


def run_target(bench: Benchmark, cfg: RunConfig, results_dir: Path, stamp: Stamp) -> None:
    """Evaluate the target model (before unlearning) as a leaderboard row of its own."""
    cell_hash = config_hash(*_evaluation_identity(bench, cfg), "target")
    if cell_done(results_dir, "target", cell_hash, stamp.reference_hash):
        return
    model, tokenizer = load_model(bench.target_dir, cfg.trust_remote_code)
    result, eval_seconds = _evaluate(model, tokenizer, bench, cfg, stamp.reference)
    _write_reference_row(bench, cfg, "target", cell_hash, stamp, result, eval_seconds, results_dir)
    _warn_if_nothing_to_unlearn(result.metrics)


def _write_reference_row(bench, cfg, which: str, cell_hash: str, stamp: Stamp, result, eval_seconds: float,
                         results_dir) -> None:
    row = _base_row(bench, cfg, which, "reference", None, cell_hash, stamp) | {
        "steps": 0, "trainable_params": 0, "unlearn_seconds": 0.0, "eval_seconds": eval_seconds,
        "wall_seconds": eval_seconds} | result.metrics
    write_cell(results_dir, which, row, result.items)
    note(f"{which}: evaluated in {eval_seconds:.1f} s")


def _warn_if_nothing_to_unlearn(metrics: dict) -> None:
    for split in ("forget", "retain"):
        for column in (f"{split}_em_contains", f"lume_{split}_knowledge", f"lume_{split}_regurgitation"):
            if metrics.get(column, 1.0) < TARGET_MIN_EM:
                print(f"warning: the target model scores only {metrics[column]:.0%} on {column}; below "
                      f"{TARGET_MIN_EM:.0%} there is little to unlearn", file=sys.stderr)


def cell_config(cfg: RunConfig, cell: Cell):
    """The cell's method config: defaults, preset, `--set`, then the cell's grid point."""
    overrides = cfg.overrides_for(cell.method) | {key.split(".", 1)[1]: v for key, v in cell.point}
    return dataclasses.replace(method_config(cell.method, overrides), template=cfg.eval.template)


def _swept_values(mcfg, point) -> dict:
    """The grid point's values as leaderboard columns named like the grid key (`simu.t`), typed."""
    return {key: mcfg.options.get(key.split(".", 1)[1], getattr(mcfg, key.split(".", 1)[1], None))
            for key, _ in point}


def run_method(bench: Benchmark, cfg: RunConfig, cell: Cell, results_dir: Path, stamp: Stamp) -> bool:
    """Unlearn a fresh copy of the target model with the cell's method, grid point and seed, then evaluate.
    The cell's hash covers what was asked (data, models, evaluation and method settings), never a measured
    value, so the same command has the same hash on every machine. False when the cell was already done."""
    mcfg = cell_config(cfg, cell)
    cell_hash = config_hash(*_evaluation_identity(bench, cfg), cell.method, dataclasses.asdict(mcfg))
    if cell_done(results_dir, cell.name, cell_hash, stamp.reference_hash):
        return False
    start = time.perf_counter()
    model, tokenizer = load_model(bench.target_dir, cfg.trust_remote_code)
    seed_everything(cell.seed)
    report = methods[cell.method](mcfg).unlearn(model, tokenizer, bench.forget, bench.retain)
    result, eval_seconds = _evaluate(model, tokenizer, bench, cfg, stamp.reference)
    sweep = {"variant": cell.variant} | _swept_values(mcfg, cell.point) if cell.point else {}
    row = _base_row(bench, cfg, cell.method, "method", cell.seed, cell_hash, stamp) | sweep | {
        "steps": report.steps, "trainable_params": report.trainable_params,
        "unlearn_seconds": report.unlearn_seconds, "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - start} | result.metrics | report.extra
    _write_artifacts(results_dir.parent / "artifacts" / cell.name, report.artifacts)
    write_cell(results_dir, cell.name, row, result.items)
    return True


def _write_artifacts(folder: Path, artifacts: dict) -> None:
    """A method's extra files (e.g. SIMU's masks) as `artifacts/<cell>/<name>`, before the row marks it done."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in artifacts.items():
        path = folder / name
        if name.endswith(".pt"):
            torch.save(value, path)
        else:
            write_atomically(path, json.dumps(value, indent=1) + "\n")


def run(cfg: RunConfig) -> Path:
    """Run every cell that is not done yet and rebuild the leaderboard; returns its path."""
    quiet_libraries_in_logs()
    load_builtin_methods()
    for name in cfg.methods:
        methods[name]  # an unknown name fails here, before any training
    for name in cfg.method_overrides:
        if name not in cfg.methods:
            raise ValueError(f"--set {name}.*: method '{name}' is not in --methods ({', '.join(cfg.methods)})")
    for key in cfg.grid:
        if key.split(".")[0] not in cfg.methods:
            raise ValueError(f"--grid {key}: method '{key.split('.')[0]}' is not in --methods "
                             f"({', '.join(cfg.methods)})")
    check_template(cfg.eval.template)
    bench = prepare_benchmark(cfg)
    out_dir = Path(cfg.out_dir)
    results_dir = out_dir / "results"
    if lm_eval_tasks(cfg, bench):
        bench.lm_eval_dir = lm_eval_bridge.write_embedded_tasks(out_dir / "lm_eval_tasks", cfg.world)
    stamp = retain_reference(bench, cfg, out_dir, record_environment(out_dir, environment()))
    run_target(bench, cfg, results_dir, stamp)
    todo = cells(cfg)
    for i, cell in enumerate(progress(todo, desc="cells", unit="cell"), 1):
        start = time.perf_counter()
        if run_method(bench, cfg, cell, results_dir, stamp):
            note(f"cell {i}/{len(todo)} {cell.name}: done in {time.perf_counter() - start:.1f} s")
    return write_leaderboard(out_dir)
