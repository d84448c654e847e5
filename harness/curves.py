"""Unlearning curves (`--set eval.every=K` or `eval.every=epoch`): a light evaluation while a cell unlearns, and
`eval.stop_at`, which stops the cell at the first evaluation that meets a rule.

The light evaluation is the benchmark's own (`Benchmark.evaluate`, its lm-eval tasks, its figures against the
retain reference and from the target row), on a fixed sample of `eval.curve_items` items of each split (the same
items for every evaluation, cell and method: `Benchmark.sample`), without the GradNorm attack. It runs before the
first step (step 0), every K optimizer steps or at each epoch's end, and after the last step, in eval mode with
the random state put back afterwards, so the cell trains exactly as it would without it: the final row's figures
do not change, and `eval.every` is no part of its hash. Each point is one row of `OUT/curves/<cell>.csv`: the
cell's method, variant and seed, step, epoch, the last step's learning rate, the unlearning loss and its forget
and retain parts (means over the micro-batches since the last point; empty at step 0), then every figure. Every rank evaluates its share (as the final evaluation does); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import operator
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from evaluators.base import STOP_RULE
from harness import distributed
from harness.files import write_atomically

POINT_COLUMNS = ("method", "variant", "seed", "step", "epoch", "lr", "loss", "forget_loss", "retain_loss")


def curve_path(out_dir: Path, cell: str) -> Path:
    return out_dir / "curves" / f"{cell}.csv"


@dataclasses.dataclass(frozen=True)
class StopRule:
    """`METRIC<=V` or `METRIC>=V`, met by the first evaluation whose METRIC is on that side of V."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> StopRule | None:
        match = STOP_RULE.fullmatch(text) if text else None
        return cls(match[1], match[2], float(match[3])) if match else None

    def met(self, figures: dict) -> bool:
        value = figures.get(self.metric)
        compare = operator.le if self.op == "<=" else operator.ge
        return value is not None and not np.isnan(value) and compare(value, self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


class Curve:
    """The curve of one cell: `due` says when a point is taken, `observe` takes it (and says whether the stop
    rule is met), `write` saves the points. `ctx` is the run's harness.grid.Context, with the sampled data."""

    def __init__(self, ctx, cell, tokenizer):
        self.ctx, self.cell, self.tokenizer = ctx, cell, tokenizer  # cell: harness.grid.Cell
        every = str(ctx.cfg.eval.every)
        self.every = None if every == "epoch" else int(every)
        self.rule = StopRule.parse(ctx.cfg.eval.stop_rule(ctx.bench.privleak_column))
        self.points: list[dict] = []
        self.stopped_at: int | None = None

    def due(self, step: int, end_of_epoch: bool, last: bool) -> bool:
        """Step 0, every K-th step (or each epoch's end), and the last step, each once."""
        if self.points and self.points[-1]["step"] == step:
            return False
        return step == 0 or last or (end_of_epoch if self.every is None else step % self.every == 0)

    def observe(self, model, point: dict) -> bool:
        """Evaluate `model` at `point` (step, epoch, lr, losses) and keep the row; True when the stop rule is met
        (every rank gets rank 0's answer)."""
        figures = self.evaluate(model)
        cell = {"method": self.cell.method, "variant": self.cell.variant, "seed": self.cell.seed}
        self.points.append(cell | point | figures)
        stop = bool(self.rule and distributed.is_main() and point["step"] > 0 and self.rule.met(figures))
        if distributed.share(stop):
            self.stopped_at = point["step"]
            return True
        return False

    def evaluate(self, model) -> dict:
        """The light evaluation, in eval mode and without touching the training's random state."""
        training = model.training
        state = random.getstate(), np.random.get_state()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                model.eval()
                result, _ = self.ctx.score(model, self.tokenizer)
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])
            model.train(training)
        return {k: v for k, v in result.metrics.items() if not k.endswith("_seconds")}

    def write(self, out_dir: Path) -> Path | None:
        """The points as `OUT/curves/<cell>.csv` (rank 0); None elsewhere or without points."""
        if not distributed.is_main() or not self.points:
            return None
        path = curve_path(out_dir, self.cell.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, pd.DataFrame(self.points).to_csv(index=False))
        return path


def light_context(ctx):
    """The run's context for curve points: each split cut to the fixed sample, and no GradNorm attack (a backward
    pass per item, and gradients the loop must not see)."""
    cfg = dataclasses.replace(ctx.cfg, eval_settings=ctx.cfg.eval_settings | {"gradnorm": False})
    prepared = ctx.bench.sample(ctx.prepared, ctx.cfg.eval.curve_items)
    return dataclasses.replace(ctx, cfg=cfg, prepared=prepared, digests={})


def sample_rows(rows: list, n: int) -> list:
    """A fixed sample of `n` of `rows` in their order (seeded, the same on every call); all of them when n is
    0 or at least their number."""
    if not n or n >= len(rows):
        return list(rows)
    keep = sorted(random.Random(0).sample(range(len(rows)), n))
    return [rows[i] for i in keep]
