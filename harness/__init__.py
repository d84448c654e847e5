"""The reference harness for LLM unlearning: run methods side by side, score them, write leaderboards.

The Python API is the command line's equal: each function takes the keywords of its command's flags
(`benchmark=`, `methods=`, `seeds=`, `preset=`, `out=`, `device=`, `save_models=`, ...) and a `settings`
mapping for `--set`, goes through the same configuration (`harness.config.build`), and writes the same files:

    import harness
    board, folder = harness.run(methods=["simu", "so-graddiff"], seeds=[0, 1],
                                settings={"simu.lr": 3e-4, "eval.max_new_tokens": 64})
    board, folder = harness.evaluate(models=["path/to/my-unlearned-model"], out=folder)
    print(harness.table(folder))

A bad setting raises `harness.SettingError` naming it; a run whose cells diverged raises `CellsFailed` (its
`leaderboard` holds the others). Importing this package loads neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from harness.rules import SettingError

if TYPE_CHECKING:
    import pandas as pd

try:
    __version__ = version("unlearning-harness")  # pyproject.toml's, the one place it is written
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "unknown"
__all__ = ["Result", "SettingError", "evaluate", "prepare", "run", "sweep", "table"]


class Result(NamedTuple):
    """A command's leaderboard (every row in its folder, as `leaderboard.csv` holds them) and that folder."""

    leaderboard: pd.DataFrame
    folder: Path


def _command(command: str, **keywords) -> Result:
    """Build the command's configuration as the CLI does (`config.build`), check everything it names before the
    runner (and torch) is imported (harness/preflight.py), run it, and read its leaderboard."""
    from harness import preflight
    from harness.config import build
    from harness.tables import read_leaderboard

    cfg = build(command, **keywords)
    preflight.check(cfg, command)
    from harness import runner

    path = (runner.evaluate if command == "eval" else runner.run)(cfg)
    return Result(read_leaderboard(path), Path(path).parent)


def run(
    methods: Iterable[str] | str | None = None,
    seeds: Iterable[int] | None = None,
    *,
    benchmark: str | None = None,
    preset: str | None = None,
    out: str | None = None,
    settings: Mapping | None = None,
    **options,
) -> Result:
    """`harness run`: every method x seed on the benchmark. `options` are the other flags as keywords
    (`cache_dir`, `data`, `model`, `retain_model`, `retain_eval`, `template`, `lm_eval_tasks`, `device`,
    `dtype`, `save_models`, `trust_remote_code`, `allow_pickle`, `wait`)."""
    return _command(
        "run", methods=methods, seeds=seeds, benchmark=benchmark, preset=preset, out=out, settings=settings, **options
    )


def sweep(
    grid: Mapping[str, Iterable],
    methods: Iterable[str] | str | None = None,
    seeds: Iterable[int] | None = None,
    *,
    benchmark: str | None = None,
    preset: str | None = None,
    out: str | None = None,
    settings: Mapping | None = None,
    **options,
) -> Result:
    """`harness sweep`: the product of the `grid` axes (`{"simu.t": [0.1, 0.3]}`) x seeds as cells of one run."""
    return _command(
        "sweep",
        grid=grid,
        methods=methods,
        seeds=seeds,
        benchmark=benchmark,
        preset=preset,
        out=out,
        settings=settings,
        **options,
    )


def evaluate(
    models: Iterable[str] | str,
    names: Iterable[str] | str | None = None,
    *,
    benchmark: str | None = None,
    preset: str | None = None,
    out: str | None = None,
    settings: Mapping | None = None,
    **options,
) -> Result:
    """`harness eval`: score each model (a folder, a hub name, a PEFT adapter folder, a saved cell) as a row
    of kind `model` named by `names` (default: the folders' names). `options` as for `run`, with `model` the
    target of a real benchmark."""
    return _command(
        "eval", models=models, names=names, benchmark=benchmark, preset=preset, out=out, settings=settings, **options
    )


def prepare(*, benchmark: str | None = None, preset: str | None = None, settings: Mapping | None = None, **options):
    """The benchmark's data and models as a run sees them (`Prepared`: the `forget` and `retain` rows, the
    evaluation `splits`, the `target_dir` and `retain_dir` model folders), the embedded ones trained and cached
    on first use: what you need to unlearn the same target with a trainer of your own, then `evaluate` it."""
    from harness.config import build
    from harness.registry import benchmarks

    cfg = build("run", benchmark=benchmark, preset=preset, settings=settings, **options)
    bench = benchmarks[cfg.benchmark]()
    bench.check(cfg)
    return bench.prepare(cfg)


def table(
    run: str | Path | Result | pd.DataFrame,
    columns: Iterable[str] | None = None,
    format: str = "md",
    intervals: bool = False,
    level: float = 0.95,
    resamples: int = 1000,
    bootstrap_seed: int = 0,
) -> str:
    """`harness table`: the comparison table of a run folder, a leaderboard CSV, a `Result` or a frame (a frame
    has no per-item values beside it, so its intervals are over seeds only)."""
    import pandas as pd

    from harness.tables import read_leaderboard, render
    from harness.uncertainty import Bootstrap, read_items

    where = run.folder if isinstance(run, Result) else None if isinstance(run, pd.DataFrame) else run
    frame = (
        run.leaderboard if isinstance(run, Result) else run if isinstance(run, pd.DataFrame) else read_leaderboard(run)
    )
    items = read_items(where) if where is not None else None
    settings = Bootstrap(level, resamples, bootstrap_seed)
    return render(frame, list(columns) if columns else None, format, items, settings, intervals)
