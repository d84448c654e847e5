"""The Benchmark interface: prepare data and models, evaluate a model, and say what the run needs to know.

The runner calls only what is here, so a benchmark is one module with one subclass (see tofu_mini.py): its
settings (`sections`: dataclasses the configuration layer learns from here, so presets, `--set` and `--help`
take them), its evaluation defaults, its lm-eval task files, its target model's config, its data and figures.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from evaluators.base import EvalResult
from harness.progress import warn

if TYPE_CHECKING:
    from evaluators.lm_eval_bridge import OfflineTask

TARGET_MIN_SCORE = 0.9  # below this on a `memorised` column, the target has little to unlearn


@dataclass(kw_only=True)
class Prepared:
    """A benchmark's resolved data and models. `forget` and `retain` are the rows the methods train on,
    `splits` what `evaluate` reads; `identity` is what every row's hash covers (`Benchmark.identity`) and
    `target_identity` what the target's row and the methods' rows add (a real target model's path; an embedded
    target is covered by its recipe in `identity`). Neither ever holds a measured value."""

    splits: object
    forget: list[dict]
    retain: list[dict]
    identity: dict
    model_name: str  # the target's name in the leaderboard's `model` column
    forget_split: str = ""  # the rows' `forget_split` column (TOFU's forget01/05/10)
    target_dir: Path | str | None = None  # the target model; None when `harness eval` scores models without one
    retain_dir: Path | str | None = None  # a retain model to evaluate as the reference, if there is one
    target_identity: dict | None = None
    earlier: list[list[dict]] = dataclasses.field(default_factory=list)  # forget sets unlearned one after another
    #   before `forget`, on the same model (MUSE's sustainability: successive unlearning requests)


class Benchmark(ABC):
    """Subclasses implement `prepare` and `evaluate` (and `check`, to refuse bad input early); the rest has
    defaults."""

    name: str = "base"
    sections: ClassVar[dict[str, type]] = {}  # its own settings, `--set SECTION.KEY=V` and a preset's [SECTION]:
    #   name -> a frozen dataclass whose `RULES` say what each value may be (tofu-mini: world, train)
    eval_defaults: ClassVar[dict] = {}  # EvalConfig values this benchmark uses unless the command sets them
    retain_reference: ClassVar[bool] = False  # scored against a retain model (then the reference hooks apply)
    privleak_column: ClassVar[str] = ""  # its PrivLeak against the retain model, which `eval.stop_at=muse` reads
    memorised: ClassVar[tuple[str, ...]] = ()  # target columns near 1 when there is something to unlearn
    forget_splits: ClassVar[tuple[str, ...]] = ()  # the forget splits `--set forget_split=` may pick (none: one)
    definitions: ClassVar[int] = 1  # raised when a figure's definition changes, so rows scored before re-run

    def check(self, cfg) -> None:
        """What can be checked before anything loads or is written (harness/preflight.py): the paths the
        benchmark takes and its data files' schema, each wrong one as an error of one line. Import nothing heavy
        at module level, so that this stays fast."""

    @abstractmethod
    def identity(self, cfg) -> dict:
        """What every row's hash covers about the benchmark's data and models, from the configuration alone
        (never a measured value): its data's path or its generator's settings, a given retain model."""

    @abstractmethod
    def prepare(self, cfg) -> Prepared:
        """The data and models, `check` having passed (the embedded benchmarks train and cache theirs here)."""

    @abstractmethod
    def evaluate(self, model, tokenizer, prepared: Prepared, cfg) -> EvalResult:
        """The benchmark's own figures of `model` (and the per-item records they come from)."""

    def sample(self, prepared: Prepared, n: int) -> Prepared:
        """`prepared` with each evaluation split cut to a fixed sample of `n` items (`harness.curves.sample_rows`;
        0: all), for the curves' light evaluation (`eval.every`). A benchmark that cannot cut its splits says so."""
        if not n:
            return prepared
        raise ValueError(f"--set eval.curve_items={n}: --benchmark {self.name} cannot sample its splits; use 0 (all)")

    def lm_eval_tasks(self, cfg) -> list[str]:
        """The lm-eval tasks every model is also scored on: `--lm-eval-tasks`, unless the benchmark adds some."""
        return list(cfg.lm_eval_tasks)

    def offline_tasks(self, cfg) -> list[OfflineTask]:
        """lm-eval tasks this benchmark builds from its own data (`lm_eval_bridge.OfflineTask`s, their rows made
        only when the run asks for them), which run with no download; none by default."""
        return []

    def final_metrics(self, metrics: dict[str, float], cfg, before: dict | None) -> dict[str, float]:
        """Figures computed from all the others, lm-eval's included (LUME's final score), and from `before`,
        the figures of the model before unlearning (the run's target row; the row's own when it is the
        target; None when the run has none)."""
        return {}

    def model_config(self, cfg):
        """The target model's transformers config, read without its weights (`--dry-run`): `--model`'s (a
        benchmark that brings its own model says what it is)."""
        if not cfg.model:
            raise ValueError(f"--dry-run: --benchmark {self.name} needs --model (or a preset with a model_shape)")
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)

    def check_retain_reference(self, cfg) -> None:
        """At most one retain reference, and a given `--retain-eval` readable (`load_reference`)."""
        if cfg.retain_model and cfg.retain_eval:
            raise ValueError("--retain-model and --retain-eval: give one retain reference, not both")
        if cfg.retain_eval:
            self.load_reference(cfg.retain_eval)

    def load_reference(self, path, what: str = "--retain-eval"):
        """A saved retain-model reference (`--retain-eval`, or the run's own, `what` naming it in errors)."""
        raise ValueError(f"--retain-eval: --benchmark {self.name} takes no retain reference")

    def reference_from(self, result: EvalResult, source: str):
        """The retain model's reference, from its evaluation."""
        raise NotImplementedError

    def reference_metrics(self, result: EvalResult, reference, itself: bool = False) -> dict[str, float]:
        """The figures that compare a model with the retain reference (`itself`: the retain model's own row,
        where a figure that is no measurement against itself is left out)."""
        return {}

    def warn_if_nothing_to_unlearn(self, target_metrics: dict[str, float]) -> None:
        """Warn when the target model has not memorised what it is to unlearn (or keep)."""
        for column in self.memorised:
            if target_metrics.get(column, 1.0) < TARGET_MIN_SCORE:
                warn(
                    f"the target model scores only {target_metrics[column]:.0%} on {column}; below "
                    f"{TARGET_MIN_SCORE:.0%} there is little to unlearn"
                )


def no_real_paths(cfg) -> None:
    """An embedded benchmark brings its own data and models."""
    target = "--model" if cfg.methods else "--target"  # harness eval's --model is what it scores
    for flag, value in (("--data", cfg.data), (target, cfg.model), ("--retain-model", cfg.retain_model)):
        if value:
            raise ValueError(
                f"{flag}: the embedded benchmark brings its own; use --benchmark tofu or lume for real data and models"
            )


def no_retain_model(cfg, figures: str) -> None:
    """A benchmark whose figures need no retain model refuses one (`figures`: "LUME's metrics")."""
    if cfg.retain_model or cfg.retain_eval:
        raise ValueError(
            f"--benchmark {cfg.benchmark}: {figures} need no retain model; drop --retain-model and --retain-eval"
        )


def need_real_paths(cfg, what: str) -> None:
    """Real data, and a target model when there are methods to unlearn it with (`harness eval` scores models
    without one)."""
    if cfg.methods and (not cfg.data or not cfg.model):
        raise ValueError(f"--benchmark {cfg.benchmark}: needs --data ({what}) and --model (the target model)")
    if not cfg.data:
        raise ValueError(f"--benchmark {cfg.benchmark}: needs --data ({what})")


def model_name(path) -> str:
    """A model's short name for the leaderboard: its folder's (or hub repository's) last part ('' for none)."""
    return Path(str(path).rstrip("/")).name if path else ""


def target_identity(cfg) -> dict | None:
    """A real target's part of the hash of the rows that depend on it."""
    return {"model": str(cfg.model)} if cfg.model else None
