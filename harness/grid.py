"""The cells of a run (method x grid point x seed), each cell's method configuration, and what they share."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import time
from pathlib import Path

from evaluators import lm_eval_bridge
from evaluators.base import EvalResult
from harness import distributed, hashing, rows
from harness.benchmarks.base import Benchmark, Prepared
from harness.checkpoints import is_saved
from harness.config import RunConfig, method_config
from harness.curves import curve_path, light_context
from harness.environment import record_environment
from harness.metrics import metrics
from harness.models import load_model
from harness.progress import note
from harness.results import cell_done, read_row
from harness.sharding import gathered
from harness.sharding import mode as sharding_mode


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


def cell_config(cfg: RunConfig, cell: Cell):
    """The cell's method config: defaults, preset, `--set`, then the cell's grid point."""
    overrides = cfg.overrides_for(cell.method) | {key.split(".", 1)[1]: v for key, v in cell.point}
    return dataclasses.replace(method_config(cell.method, overrides), template=cfg.eval.template)


def swept_values(mcfg, point) -> dict:
    """The grid point's values as leaderboard columns named like the grid key (`simu.t`), typed."""
    return {key: getattr(mcfg, key.split(".", 1)[1]) for key, _ in point}


@dataclasses.dataclass
class Context:
    """What every cell of a run shares: the benchmark, its prepared data and models, the configuration, where
    results go, the retain reference rows are scored against, and the environment they are made in."""

    bench: Benchmark
    prepared: Prepared
    cfg: RunConfig
    results_dir: Path
    env: dict  # the environment the rows are made in, recorded with the first row
    device: str = "cpu"
    reference: object = None
    target_digest: str | None = None  # the target's weights digest: every cell loads the same target, so hashed once
    digests: dict = dataclasses.field(default_factory=dict)  # harness eval: the digests of names already in OUT
    lm_eval_dir: Path | None = None  # the offline lm-eval tasks' files, when the run asks for some

    @functools.cached_property
    def environment(self) -> str:
        """The environment record's key, written into OUT/environment.json when the first row needs it, so a
        command that stops on bad input leaves no record behind (rank 0 alone writes)."""
        return record_environment(self.results_dir.parent, self.env) if distributed.is_main() else ""

    @functools.cached_property
    def target_row(self) -> dict:
        """The target's row, read once (it is written before the first cell)."""
        return read_row(self.results_dir / "target.json")

    @property
    def benchmark_identity(self) -> str:
        """The benchmark's data and models as a hash (a saved model's card records the one it was unlearned on)."""
        return hashing.config_hash(self.prepared.identity, self.cfg.forget_split)

    @property
    def reference_hash(self) -> str | None:
        return None if self.reference is None else self.reference.fingerprint()

    @property
    def shard(self) -> str:
        """`none`, or `fsdp` (by `--shard` or an FSDP accelerate config): how the cells train."""
        return sharding_mode(self.cfg.compute.shard)

    @property
    def compute(self) -> dict:
        """How the rows are computed: device kind, dtype, processes, sharding (`cuda:1` and `cuda:0` are the
        same)."""
        return {
            "device": self.device.split(":")[0],
            "dtype": self.cfg.compute.dtype,
            "world_size": distributed.world_size(),
            "shard": self.shard,
        }

    def cell_hash(self, *parts, target: bool = True) -> str:
        """The row's hash (harness/hashing.py); the target model's identity is left out of the rows that do not
        depend on it (the retain row, `harness eval`'s), so they resume whether or not the command named one."""
        return hashing.cell_hash(
            self.prepared.identity,
            self.prepared.target_identity if target else None,
            self.cfg.forget_split,
            self.cfg.eval.hashed(),
            self.lm_eval_tasks,
            self.compute,
            *([{"definitions": self.bench.definitions}] if self.bench.definitions > 1 else []),
            *parts,
        )

    @functools.cached_property
    def light(self) -> Context:
        """This context for the curves' light evaluation (harness/curves.py), made once per run."""
        return light_context(self)

    @functools.cached_property
    def lm_eval_tasks(self) -> list[str]:
        return self.bench.lm_eval_tasks(self.cfg)

    @functools.cached_property
    def offline_tasks(self) -> list:
        """The benchmark's own lm-eval tasks (`lm_eval_bridge.OfflineTask`), made once per run."""
        return self.bench.offline_tasks(self.cfg)

    def write_offline_tasks(self, folder: Path) -> None:
        """The benchmark's offline lm-eval tasks, written as files lm-eval reads when the run asks for any task
        (all of them: lm-eval indexes the folder once per process, so a later command asking for another finds
        it), and what those it asks for are."""
        if not self.lm_eval_tasks:
            return
        self.lm_eval_dir = lm_eval_bridge.write_tasks(folder, self.offline_tasks)
        for task in [t for t in self.offline_tasks if t.name in self.lm_eval_tasks]:
            note(f"lm-eval {task.name}: {task.description}, prompt {lm_eval_bridge.PROMPT!r}")

    def before_unlearning(self) -> dict | None:
        """The target row's figures when the run has one (it is written before any other row), else None."""
        path = self.results_dir / "target.json"
        return read_row(path) if path.exists() else None

    def score(self, model, tokenizer, is_target: bool = False) -> tuple[EvalResult, float]:
        """Everything a row reports about a model, and the seconds it took: the benchmark's figures, those
        against the retain reference, the lm-eval tasks (timed as `lmeval_seconds`), then the benchmark's
        figures computed from all the others and from the model before unlearning (`is_target`: this is
        it). Every rank of a run calls it: the benchmark's evaluation is data-parallel (each rank its share of
        the batches, every rank all the records); the rest is rank 0's, the others return there."""
        start = time.perf_counter()
        result = self.bench.evaluate(model, tokenizer, self.prepared, self.cfg)
        if not distributed.is_main():
            return result, time.perf_counter() - start
        if self.reference is not None:
            result.metrics |= self.bench.reference_metrics(result, self.reference)
        if self.lm_eval_tasks:
            bridge_start = time.perf_counter()
            result.metrics |= lm_eval_bridge.run_tasks(
                model,
                tokenizer,
                self.lm_eval_tasks,
                self.lm_eval_dir,
                [task.name for task in self.offline_tasks],
                self.cfg.eval.batch_size,
            )
            result.metrics["lmeval_seconds"] = time.perf_counter() - bridge_start
        before = result.metrics if is_target else self.before_unlearning()
        result.metrics |= self.bench.final_metrics(result.metrics, self.cfg, before)
        return result, time.perf_counter() - start

    def unlearn(self, method, model, tokenizer, curve=None):
        """`method` run on `model` (sharded under `--shard fsdp`), its report, and the model evaluation and
        `--save-models` take: `model` itself, the adapted model wrapping it (LoRA), or the sharded weights
        gathered into a fresh replicated copy. `curve` (harness/curves.py) takes its points as it trains, and is
        written once it has. With `Prepared.earlier`, each earlier forget set is unlearned first, in turn, by a
        fresh instance of the method on the same model (MUSE's sustainability), and the report sums them."""
        sharded = self.shard == "fsdp"
        # `sharded` only when asked for, so a plugin's own `unlearn(model, tokenizer, forget, retain)` still runs
        extra = {"sharded": True} if sharded else {}
        reports = []
        for forget in self.prepared.earlier:
            reports.append(type(method)(method.cfg).unlearn(model, tokenizer, forget, self.prepared.retain, **extra))
        method.curve = curve
        report = method.unlearn(model, tokenizer, self.prepared.forget, self.prepared.retain, **extra)
        if curve is not None:
            curve.write(self.results_dir.parent)
        del method  # its masters, masks and frozen copies, before the copy is made
        if report.model is not None:  # the trained model wraps the one given (LoRA adapters over it)
            model, report.model = report.model, None
        if sharded:
            model = gathered(model, self.load(self.prepared.target_dir)[0])
        return summed(reports, report), model

    def load(self, model_dir):
        """A fresh copy of a model and its tokenizer on the run's device and dtype, as its flags allow loading
        it, with gradient checkpointing when asked for."""
        model, tokenizer = load_model(
            model_dir, self.cfg.trust_remote_code, self.cfg.allow_pickle, self.device, self.cfg.compute.dtype
        )
        if self.cfg.compute.gradient_checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
        return model, tokenizer

    def done(self, cell: str, cell_hash: str, model_folder: Path) -> bool:
        """The cell's row is written for this configuration, with what the run asks for beside it: its model
        (`save.models`) and its curve (`eval.every`); a done cell missing one runs again to make it."""
        if not cell_done(self.results_dir, cell, cell_hash, self.reference_hash):
            return False
        if self.cfg.save.models and not is_saved(model_folder, cell_hash):
            note(f"{cell}: done, but its model was not saved; running it again to save it")
            return False
        if self.cfg.eval.every and not curve_path(self.results_dir.parent, cell).exists():
            note(f"{cell}: done, but without its curve; running it again to draw it")
            return False
        return True

    def same_as_target(self, figures: dict) -> bool:
        """Every checked figure equals the target row's."""
        target = self.target_row
        shared = [k for k in figures if k in target and metrics.get(k).checked]
        return bool(shared) and all(figures[k] == target[k] for k in shared)

    def row(self, method: str, kind: str, seed, cell_hash: str, model: str | None = None) -> dict:
        """The identity columns every row starts with (`model`: the evaluated model, default the target)."""
        return rows.identity(
            benchmark=self.bench.name,
            method=method,
            kind=kind,
            seed=seed,
            model=model or self.prepared.model_name,
            forget_split=self.prepared.forget_split,
            template=self.cfg.eval.template,
            config_hash=cell_hash,
            retain_reference=self.reference_hash,
            environment=self.environment,
            compute=self.compute,
        )


def summed(earlier: list, last):
    """The report of a sequence of unlearning requests: the last one's, with every request's steps and
    unlearning time added (and `requests`, their number, when there were several)."""
    if not earlier:
        return last
    last.steps += sum(r.steps for r in earlier)
    last.unlearn_seconds += sum(r.unlearn_seconds for r in earlier)
    last.extra = {"requests": len(earlier) + 1} | last.extra
    return last
