"""The cells of a run (method x grid point x seed), each cell's method configuration, and what they share."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from pathlib import Path

from harness import distributed
from harness.benchmarks.base import Benchmark, Prepared
from harness.config import RunConfig, method_config
from harness.metrics import metrics
from harness.models import load_model
from harness.registry import methods
from harness.results import config_hash, read_row, record_environment


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


def tracked(method: str, mcfg) -> dict:
    """The cell's method config as its hash covers it: without the options that change no figure, nor the
    options added later while they keep the value that behaves as before (`UnlearningMethod.added`)."""
    values, cls = dataclasses.asdict(mcfg), methods[method]
    values["options"] = {k: v for k, v in values["options"].items()
                         if k not in cls.untracked and not (k in cls.added and cls.added[k] == v)}
    return values


def swept_values(mcfg, point) -> dict:
    """The grid point's values as leaderboard columns named like the grid key (`simu.t`), typed."""
    return {key: mcfg.options.get(key.split(".", 1)[1], getattr(mcfg, key.split(".", 1)[1], None))
            for key, _ in point}


@dataclasses.dataclass
class Context:
    """What every cell of a run shares: the benchmark, its prepared data and models, the configuration, where
    results go, the retain reference rows are scored against, and the environment they are made in."""

    bench: Benchmark
    prepared: Prepared
    cfg: RunConfig
    results_dir: Path
    env: dict                          # the environment the rows are made in, recorded with the first row
    device: str = "cpu"
    reference: object = None
    target_digest: str | None = None   # the target's weights digest: every cell loads the same target, so hashed once
    digests: dict = dataclasses.field(default_factory=dict)   # harness eval: the digests of names already in OUT

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
        return config_hash(self.prepared.identity, self.cfg.forget_split)

    @property
    def reference_hash(self) -> str | None:
        return None if self.reference is None else self.reference.fingerprint()

    @property
    def compute(self) -> dict:
        """How the rows are computed: device kind, dtype, processes (`cuda:1` and `cuda:0` are the same)."""
        return {"device": self.device.split(":")[0], "dtype": self.cfg.compute.dtype,
                "world_size": distributed.world_size()}

    def cell_hash(self, *parts, target: bool = True) -> str:
        """What was asked (data, models, evaluation, lm-eval tasks, how it computes, then the row's own parts),
        never a measured value, so the same command has the same hash on every machine. The target model's
        identity is left out of the rows that do not depend on it (the retain row, `harness eval`'s rows), so
        they resume whether or not the command named a target. One float32 process on the CPU adds nothing, so
        hashes made before devices existed stay valid."""
        tasks = self.bench.lm_eval_tasks(self.cfg)
        compute = {k: v for k, v in self.compute.items() if v != {"device": "cpu", "dtype": "float32",
                                                                  "world_size": 1}[k]}
        of_target = [self.prepared.target_identity] if target and self.prepared.target_identity else []
        return config_hash(self.prepared.identity, *of_target, self.cfg.forget_split,
                           dataclasses.asdict(self.cfg.eval), *([tasks] if tasks else []),
                           *([compute] if compute else []), *parts)

    def load(self, model_dir):
        """A fresh copy of a model and its tokenizer on the run's device and dtype, as its flags allow loading
        it, with gradient checkpointing when asked for."""
        model, tokenizer = load_model(model_dir, self.cfg.trust_remote_code, self.cfg.allow_pickle, self.device,
                                      self.cfg.compute.dtype)
        if self.cfg.compute.gradient_checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
        return model, tokenizer

    def same_as_target(self, figures: dict) -> bool:
        """Every checked figure equals the target row's."""
        target = self.target_row
        shared = [k for k in figures if k in target and metrics.get(k).checked]
        return bool(shared) and all(figures[k] == target[k] for k in shared)

    def row(self, method: str, kind: str, seed, cell_hash: str, model: str | None = None) -> dict:
        """The identity columns every row starts with (`model`: the evaluated model, default the target)."""
        return {"benchmark": self.bench.name, "method": method, "kind": kind, "seed": seed,
                "model": model or self.prepared.model_name, "forget_split": self.prepared.forget_split,
                "template": self.cfg.eval.template, "config_hash": cell_hash, "retain_reference": self.reference_hash,
                "environment": self.environment} | self.compute
