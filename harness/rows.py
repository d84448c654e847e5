"""A leaderboard row's schema, in one place: the identity columns every row starts with, the effort columns
the runner adds (declared here as cost metrics: shown, never regression-checked), the kinds of row, and the
helpers that read rows back. Every other column is a figure some metric declares (harness/metrics.py). No
torch: `harness table` and `harness check` read rows on any machine."""

from __future__ import annotations

import pandas as pd

from harness.metrics import Metric

IDENTITY = [
    "benchmark",
    "method",
    "variant",
    "kind",
    "seed",
    "model",
    "weights_digest",
    "forget_split",
    "template",
    "config_hash",
    "retain_reference",
    "environment",
    "device",
    "dtype",
    "world_size",
    "shard",
]
EFFORT = [
    "per_device_batch",
    "effective_batch",
    "unchanged",
    "steps",
    "trainable_params",
    "lora_r",
    "unlearn_seconds",
    "eval_seconds",
    "wall_seconds",
    "peak_memory_gib",
]
IDENTITY_COLUMNS = IDENTITY + EFFORT  # first in every leaderboard, in this order; never figures
REFERENCE_ROWS = ("target", "retain")
KINDS = ("reference", "method", "model")  # a row's `kind`: the target and retain models, a cell, harness eval's
LEADERBOARD_KEYS = ("method", "seed")  # what names a row: tables group by the first, check matches on both

# The effort columns' meaning (and any `*_seconds` a benchmark or method adds, such as lm-eval's time).
COST = [
    Metric("wall_seconds", "lower", "wall time (s)", default=True, cost=True),
    Metric("*_seconds", "lower", "time (s)", cost=True),
    Metric("steps", "lower", "optimizer steps", cost=True),
    Metric("trainable_params", "lower", "trainable parameters", cost=True),
    Metric("lora_r", "none", "LoRA rank (a LoRA cell's; absent: full updates)", cost=True),
    Metric("requests", "none", "unlearning requests made one after another (MUSE's sust_K; absent: one)", cost=True),
    Metric("stopped_at_step", "none", "the step eval.stop_at stopped the cell at (empty: it never did)", cost=True),
    Metric("peak_memory_gib", "lower", "peak memory (GiB): CUDA allocated, or the process's RSS", cost=True),
]


def identity(
    *,
    benchmark: str,
    method: str,
    kind: str,
    seed,
    model: str,
    forget_split: str,
    template: str,
    config_hash: str,
    retain_reference: str | None,
    environment: str,
    compute: dict,
) -> dict:
    """The identity columns a row starts with (`compute`: device, dtype, world_size, shard)."""
    if kind not in KINDS:
        raise ValueError(f"row kind '{kind}': expected one of {', '.join(KINDS)}")
    return {
        "benchmark": benchmark,
        "method": method,
        "kind": kind,
        "seed": seed,
        "model": model,
        "forget_split": forget_split,
        "template": template,
        "config_hash": config_hash,
        "retain_reference": retain_reference,
        "environment": environment,
    } | compute


def effort(**values) -> dict:
    """The effort columns of a row (any of EFFORT, plus `weights_digest`); an undeclared one is an error, so a
    new column is added here, where tables and checks learn what it is."""
    unknown = set(values) - set(EFFORT) - {"weights_digest"}
    if unknown:
        raise ValueError(f"effort column(s) {', '.join(sorted(unknown))}: not declared in harness/rows.py")
    return values


def cell_effort(report, settings, world_size: int, eval_seconds: float, wall_seconds: float) -> dict:
    """A method cell's effort columns from its method's report and settings (`lora_r` for a LoRA cell only)."""
    lora = {"lora_r": settings.lora_r} if getattr(settings, "lora_r", 0) else {}
    return lora | {
        "per_device_batch": settings.batch_size,
        "effective_batch": settings.batch_size * settings.grad_accum * world_size,
        "steps": report.steps,
        "trainable_params": report.trainable_params,
        "unlearn_seconds": report.unlearn_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": wall_seconds,
    }


def is_model(frame: pd.DataFrame) -> pd.Series:
    """Which rows are `harness eval`'s (kind `model`): one model each, with no seeds."""
    return frame["kind"].eq("model") if "kind" in frame else pd.Series(False, index=frame.index)


def swept_columns(frame: pd.DataFrame) -> list[str]:
    """A sweep's hyperparameter columns, named like the grid key (`simu.t`): the only names with a dot."""
    return [c for c in frame.columns if "." in c]


def method_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The methods' rows (no references), with `variant` ('' outside a sweep) naming their grid point."""
    cells = frame[~frame["method"].isin(REFERENCE_ROWS)].copy()
    cells["variant"] = cells["variant"].fillna("") if "variant" in cells else ""
    return cells
