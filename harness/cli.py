"""`harness`: the command line. `harness run` runs benchmark x method x seed and writes a leaderboard."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from harness import presets
from harness.data.templates import TEMPLATES
from harness.files import EXIT_ENVIRONMENT, environment_fault
from harness.registry import benchmarks, methods
from harness.results import CellsFailed
from harness.rules import SettingError

RUN_EPILOG = """\
Benchmarks (--benchmark NAME):
{benchmarks}

--set keys (repeatable), for --benchmark {benchmark} (--benchmark NAME --help lists another's):
{forget_split}{sections}
  METHOD.KEY=V    a method's hyperparameter, e.g. fo-graddiff.lr=3e-4; every method takes
{shared}
                  and its own:
{methods}

Offline lm-eval tasks of --benchmark {benchmark} (--lm-eval-tasks): {offline}

Real TOFU: harness run --benchmark tofu --data DIR_OR_HUB_NAME --model PATH [--retain-model PATH |
  --retain-eval FILE] --methods simu,so-graddiff.

Several processes (data parallel, each evaluating its share of the items; rank 0 writes; world size, shard
and effective batch are in each row and its hash): accelerate launch -m harness run ... on GPUs,
torchrun --nproc_per_node N -m harness run --device cpu ... on CPUs; --shard fsdp shards the model over them.
Check the memory first: harness run --preset NAME --dry-run [--shard fsdp --processes N].

Presets (--preset NAME, or --preset FILE.toml of your own; flags and --set given beside it win):
{presets}

Output: OUT/results/<cell>.json (one row per cell), OUT/results/<cell>.items.jsonl (per-item generations
and scores), OUT/leaderboard.csv (all cells plus the target and retain reference rows, and harness eval's
models), with --save-models OUT/models/<cell>/ (a Hugging Face folder and model card per cell). Rerunning the
same command skips finished cells, so an interrupted run resumes.

Exit codes: 0 done; 1 some cells failed (a diverging loss: no row for them, the others ran); 2 bad input
(one line naming it, within seconds, before any work, nothing written); 74 a fault of the machine (a full disk,
access lost mid-run: the line names the path; no partial file is left, rerun to resume); 130 interrupted by
Ctrl-C or SIGTERM (the file being written is finished; rerun the same command to resume). One process per
--out: a second stops, or --wait.
"""


EVAL_EPILOG = """\
Examples:
  harness eval --model runs/tofu-mini/models/simu-seed0                   # a cell kept by --save-models
  harness eval --model ~/my-unlearned --name mine --model ~/lora-adapter --name mine-lora
  harness eval --benchmark tofu --data DIR --model MINE --target TARGET --retain-model RETAIN

--set keys: as for harness run (eval.*, compute.*, the benchmark's own sections; no METHOD.*). Exit codes: 0 done; 2 bad
input (one line naming it, before anything is written: a missing folder, pickle-only weights without
--allow-pickle, an unknown architecture, a name that clashes); 74 a fault of the machine (a full disk); 130
interrupted.
"""


WIDTH = 118


def _wrapped(head: str, text: str, indent: int = 18) -> str:
    """`head` padded to `indent`, then `text` wrapped under it."""
    import textwrap

    return textwrap.fill(
        text, WIDTH, initial_indent=f"  {head}".ljust(indent) if head else " " * indent, subsequent_indent=" " * indent
    )


def _keys(settings, names: list[str]) -> str:
    """Each key with its choices (a `one_of` rule's), comma-separated."""
    shown = []
    for name in names:
        rule = settings.RULES.get(name) if hasattr(settings, "RULES") else settings.rules().get(name)
        choices = (
            rule.expected.removeprefix("one of ").replace(", ", "|")
            if rule and rule.expected.startswith("one of ")
            else ""
        )
        meaning = settings.meta(name, "help") if hasattr(settings, "meta") else ""
        shown.append((f"{name}={choices}" if choices else name) + (f" ({meaning})" if meaning else ""))
    return ", ".join(shown)


def sections_help(benchmark: str) -> str:
    """One entry per section the benchmark's runs take: its keys (and choices) and the first line of its
    dataclass's docstring, generated from the declarations (harness/config.py, `Benchmark.sections`)."""
    import dataclasses

    from harness.config import sections_of

    lines = []
    for name, kind in sections_of(benchmark).items():
        what = " ".join((kind.__doc__ or "").split()).split(". ")[0].rstrip(".")
        fields = [f.name for f in dataclasses.fields(kind)]
        lines.append(_wrapped(f"{name}.KEY=V", f"{what}: {_keys(kind, fields)}"))
    return "\n".join(lines)


def methods_help() -> tuple[str, str]:
    """The keys every method takes, and each registered method's own, from its settings dataclass (imports the
    methods, and torch with them: only when --help is asked for)."""
    from methods.settings import MethodConfig

    own, indent = [], max(20, 6 + max(len(name) for name in methods.names()))  # "    NAME: ", wide enough for each
    for name in methods.names():
        settings = methods[name].settings
        own.append(_wrapped(f"  {name}:", _keys(settings, settings.options()) or "none", indent))
    return _wrapped("", _keys(MethodConfig, MethodConfig.shared())), "\n".join(own)


def benchmarks_help() -> str:
    """Each registered benchmark and the first sentence of its module's docstring."""
    import sys

    lines = []
    for name in benchmarks.names():
        doc = " ".join((sys.modules[benchmarks[name].__module__].__doc__ or "").split())
        for lead in (f"{name}: ", f"{name}, "):
            doc = doc.removeprefix(lead)
        lines.append(_wrapped(name, doc.split(". ")[0].rstrip(".")))
    return "\n".join(lines)


def run_epilog(benchmark: str | None = None) -> str:
    from harness.config import RunConfig

    benchmark = benchmark or RunConfig.benchmark
    shared, own = methods_help()
    splits = benchmarks[benchmark].forget_splits
    default = RunConfig.forget_split if RunConfig.forget_split in splits else "the forget set"
    forget_split = _wrapped("forget_split=V", f"{'|'.join(splits)} (default {default})") if splits else ""
    return RUN_EPILOG.format(
        benchmark=benchmark,
        benchmarks=benchmarks_help(),
        offline=", ".join(t.name for t in benchmarks[benchmark]().offline_tasks(RunConfig(benchmark=benchmark)))
        or "none",
        forget_split=forget_split + "\n" if forget_split else "",
        sections=sections_help(benchmark),
        shared=shared,
        methods=own,
        presets=presets.listing(),
    )


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}': expected comma-separated {kind.__name__} values") from None

    return parse


def _add_common_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    """The flags every command that scores models shares (`run`, `sweep`, `eval`, `noise`)."""
    parser.add_argument(
        "--benchmark",
        default=None,
        choices=benchmarks.names(),
        action=_Benchmark,
        help="the benchmark to run (default: tofu-mini; each is listed below, with its settings and offline "
        "lm-eval tasks for the one given before --help)",
    )
    parser.add_argument(
        "--lm-eval-tasks",
        type=_csv(str),
        default=None,
        help="comma-separated lm-eval tasks run on every model, as columns lmeval_<task>_<metric>: the "
        "benchmark's own offline tasks (listed below), or any lm-eval task (mmlu, ...) whose data can be loaded",
    )
    parser.add_argument("--out", default=None, help=f"run folder (default: {default_out})")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="where trained embedded models are cached (default: $HARNESS_CACHE or ~/.cache/unlearning-harness)",
    )
    parser.add_argument(
        "--preset",
        default=None,
        metavar="NAME_OR_FILE",
        help="a configuration file: one of the presets listed below (harness/presets/NAME.toml), "
        "or a .toml file of your own in the same format",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="--benchmark tofu: a folder of official TOFU files "
        "(.json/.jsonl/.parquet) or a hub dataset name such as locuslab/TOFU",
    )
    parser.add_argument(
        "--retain-model",
        default=None,
        help="the retain model (trained without the forget set), "
        "evaluated as the reference for forget_quality and privleak",
    )
    parser.add_argument(
        "--retain-eval",
        default=None,
        help="instead of --retain-model: a saved retain-model "
        "evaluation (OUT/reference/retain.json of an earlier run, or open-unlearning's "
        "TOFU_EVAL.json)",
    )
    parser.add_argument(
        "--template",
        choices=list(TEMPLATES),
        default=None,
        help="prompt template: qa ('Question: q\\nAnswer: a', the default on TOFU), llama2 "
        "('[INST] q [/INST]'), chat (the tokenizer's chat template), raw (the input as is, the "
        "default on LUME), or open-unlearning's, tokenized as it does: ou-base ('Question: q\\nAnswer: ' "
        "then a, its base models'), ou-llama2-chat (its Llama-2-7b-chat's), ou-chat (the chat template with "
        "its system prompt and date)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=None,
        help="let transformers run code shipped with the model (off by default)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        default=None,
        help="also load weights from pickle checkpoints (.bin), which can run code; by default only safetensors load",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        default=None,
        help="when another harness process holds the run folder, wait for it (default: stop, naming the process)",
    )
    parser.add_argument(
        "--device",
        default=None,
        metavar="auto|cpu|cuda|cuda:N|mps",
        help="where models, batches, SIMU's attribution, optimizer states and evaluation live "
        "(default: auto, the accelerator when there is one, else the CPU)",
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="the model's weights and activations (default float32; the 7B and 1B presets: "
        "bfloat16). Below float32 the optimizer steps float32 master weights and keeps float32 "
        "states, and weights outside SIMU's mask keep their bits",
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="none|fsdp",
        help="fsdp: shard the trained model's float32 weights, gradients and optimizer states over the "
        "run's processes with PyTorch FSDP2 (launch several: torchrun or accelerate launch); "
        "evaluation gathers the weights once (default none: data parallel, each process holds all)",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration value (see below); repeatable",
    )


def _add_run_arguments(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The flags `run` and `sweep` share."""
    _add_common_arguments(parser, "runs/BENCHMARK" + ("-sweep" if sweep else ""))
    parser.add_argument(
        "--methods",
        type=_csv(str),
        default=None,
        help="comma-separated method names, of "
        + ", ".join(methods.names())
        + " (default: "
        + ("the methods named by --grid)" if sweep else "fo-graddiff)"),
    )
    parser.add_argument("--seeds", type=_csv(int), default=None, help="comma-separated seeds (default: 0)")
    parser.add_argument(
        "--model", default=None, help="--benchmark tofu: the target model, any AutoModelForCausalLM folder or hub name"
    )
    parser.add_argument(
        "--save-models",
        action="store_true",
        default=None,
        help="keep each cell's unlearned model as a Hugging Face folder, OUT/models/<cell>/ "
        "(safetensors in the run's dtype, the tokenizer, a model card with the cell's row); its size "
        "is printed. Off by default: a 7B cell is 13 GB",
    )


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common_arguments(parser, "runs/BENCHMARK, beside harness run's rows")
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="PATH_OR_NAME",
        help="a model to score (repeatable): any AutoModelForCausalLM folder or hub name, a PEFT "
        "adapter folder (loaded over its base model), or a cell saved by harness run --save-models",
    )
    parser.add_argument(
        "--name",
        dest="names",
        action="append",
        default=None,
        metavar="LABEL",
        help="the row's name, one per --model in order (default: the folder's name)",
    )
    parser.add_argument(
        "--target",
        dest="model",
        default=None,
        metavar="PATH_OR_NAME",
        help="--benchmark tofu/lume: the target model, scored as the target row (the embedded benchmarks bring theirs)",
    )


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other bad input (the usage is in --help), and an
    epilog may be made only when the help is shown (`epilog_for`: called with the `--benchmark` given, it
    reads the methods' and benchmarks' declarations)."""

    epilog_for = None
    benchmark = None

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        if self.epilog_for is not None:
            self.epilog = self.epilog_for(self.benchmark)
        return super().format_help()


def _lazy_epilog(parser: Parser) -> Parser:
    parser.epilog_for = run_epilog
    return parser


class _Benchmark(argparse.Action):
    """`--benchmark NAME`, remembered by the parser so that `--help` after it lists that benchmark's sections."""

    def __call__(self, parser, namespace, value, option_string=None):
        parser.benchmark = value
        setattr(namespace, self.dest, value)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="harness",
        description="Reference harness for LLM unlearning: run unlearning methods side by side "
        "on the same model and data, score them with the benchmarks' own metrics, and write leaderboards.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run benchmark x methods x seeds and write results and leaderboard.csv",
        description="Unlearn a fresh copy of the target model with each method and seed, evaluate "
        "it, and write one result per cell plus OUT/leaderboard.csv.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _lazy_epilog(run)
    _add_run_arguments(run)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print each method's memory per process in GiB (weights, gradients, master weights, "
        "optimizer states, activations, logits) for the dtype, device and process count, from the "
        "model's shape on the meta device: no weights loaded, nothing trained or written",
    )
    run.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="with --dry-run: plan for N processes (default: the processes this command runs in)",
    )
    sweep = sub.add_parser(
        "sweep",
        help="run a grid of method hyperparameters as cells of one run",
        description="Run every point of the grid (the product of the --grid axes) x seed as a "
        "cell of one run, resumable like `run`, with one leaderboard. Rows carry the grid point "
        "in `variant` and each swept value in a column named like its key (`simu.t`). SIMU "
        "reuses stage-1 scores across points that share them (reuse_attribution=true; it changes "
        "time, not results); --set simu.reuse_attribution=false turns that off.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _lazy_epilog(sweep)
    sweep.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="METHOD.KEY=V1,V2,...",
        help="one axis of the grid, e.g. simu.t=0.1,0.3,0.5 (repeatable; keys as for --set)",
    )
    _add_run_arguments(sweep, sweep=True)
    evaluate = sub.add_parser(
        "eval",
        help="score models made elsewhere (or saved by --save-models) beside a run's",
        description="Score each --model with the benchmark's full metric suite, as a row of "
        "kind `model` named --name (default: the folder's name) in OUT/results/<name>.model.json "
        "and OUT/leaderboard.csv, beside the target and retain reference rows (which come too "
        "on the embedded benchmarks) and any harness run's cells in the same --out, so table, "
        "check, plot and compare treat it like a method. The row carries its weights' digest: "
        "the same weights again resume, other weights under a name already in OUT are refused.",
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_eval_arguments(evaluate)
    table = sub.add_parser(
        "table",
        help="a comparison table of a run: methods as rows, mean ± std over seeds",
        description="Methods as rows (target and retain first, marked as references), each metric "
        "as mean ± std over seeds with an arrow for the better direction. The best method is bold "
        "only where it is separated from every other: the bootstrap interval (over seeds, and over "
        "items where the leaderboard's items.csv.gz has them) of their paired difference excludes 0; "
        "otherwise it and the methods it ties with are marked †.",
    )
    table.add_argument("run", metavar="RUN_DIR_OR_CSV", help="a run folder (with leaderboard.csv) or a leaderboard CSV")
    table.add_argument("--format", default="md", choices=["md", "latex", "csv"], help="output format (default: md)")
    table.add_argument(
        "--columns",
        type=_csv(str),
        default=None,
        help="comma-separated metric columns (default: forget/retain/world em_contains, ROUGE-L, "
        "model_utility, forget_quality, mia_loss_auc, wall_seconds)",
    )
    table.add_argument(
        "--intervals", action="store_true", help="show each mean's bootstrap interval (always in --format csv)"
    )
    _add_bootstrap_arguments(table)
    check = sub.add_parser(
        "check",
        help="compare a run with a reference leaderboard; exit 1 on a regression",
        description="Compare a run with a reference leaderboard: per method (and grid point), "
        "the mean over the seeds both hold, metric by metric; print one line per metric that got "
        "worse by more than its tolerance and exit 1 if any did. Tolerances come from "
        "NAME.tolerances.json beside the reference NAME.csv (written by `harness noise`); without "
        "one, 0.05 absolute (1 decade for forget_quality, 10 points for privleak). Forget quality "
        "is compared in log10; an MIA AUC is worse when further from 0.5, privleak when further "
        "from 0. Seeds and methods the run lacks are listed, not failed. Timings and simu_* "
        "diagnostics are not checked. When the run's environment (NAME.environment.json, "
        "OUT/environment.json) differs from the reference's, the differences are printed.",
    )
    check.add_argument("run", metavar="RUN_CSV", help="the run's leaderboard CSV (or its run folder)")
    check.add_argument("--against", required=True, metavar="REFERENCE_CSV", help="the reference leaderboard")
    check.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=ABS",
        help="override one metric's tolerance, on its scale (repeatable)",
    )
    noise = sub.add_parser(
        "noise",
        help="measure each metric's noise across CPU kernel sets; write tolerances",
        description="Run the same `harness run` once per ATen CPU kernel set "
        "(ATEN_CPU_CAPABILITY=default, avx2, avx512: those this CPU has), each training its own "
        "models, side by side with the cores split between them. Writes OUT/<kernel set>/ (the "
        "runs), OUT/noise.csv (every value under every kernel set) and OUT/tolerances.json: per "
        "metric the pooled standard deviation across kernel sets, the largest spread, one item's "
        "worth of the metric's split, and the tolerance max(3 sigma, spread, one item), plus the "
        "false alarms of a check whose tolerances were derived without one kernel set. Each run "
        "has its own model cache, CACHE_DIR/cache-<kernel set> (CACHE_DIR defaults to OUT). "
        "Rerunning resumes. --with DIR adds another machine's OUT of the same command to the "
        "tolerances (another CPU vendor's BLAS rounds differently from all of this CPU's kernel sets). "
        "Copy tolerances.json beside a reference as NAME.tolerances.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _lazy_epilog(noise)
    noise.add_argument(
        "--capabilities",
        type=_csv(str),
        default=None,
        help="comma-separated kernel sets (default: those this CPU has, of default,avx2,avx512)",
    )
    noise.add_argument(
        "--reference-capability",
        default=None,
        help="the kernel set the reference leaderboard is made with, against which the held-out "
        "false alarms are counted (default: avx2 when measured)",
    )
    noise.add_argument(
        "--jobs", type=int, default=None, help="runs at once (default: one per core, at most one per kernel set)"
    )
    noise.add_argument(
        "--with",
        dest="others",
        action="append",
        default=[],
        metavar="DIR",
        help="another machine's OUT of the same command (repeatable): its runs join this machine's in the "
        "tolerances, as DIR_NAME/<kernel set>, so they cover that CPU's noise too",
    )
    _add_run_arguments(noise)
    sub.add_parser(
        "metrics",
        help="list the declared metrics: which way is better, scale, default tolerance",
        description="Every metric declared through the harness.metrics entry points (the built-in "
        "evaluators' and any plugin's): its column (or pattern), which way is better, whether `harness "
        "table` shows it by default, its scale and `harness check`'s tolerance without a measured one. "
        "Columns declared nowhere are diagnostics: shown, never ranked or checked.",
    )
    plot = sub.add_parser(
        "plot",
        help="PNG figures of a run: trade-off, SIMU's neurons per layer, sweep curves",
        description="Write PNGs with matplotlib: the forget/retain trade-off (forget em_contains "
        "against retain em_contains and against model utility, one point per method and seed, plus "
        "the method means); SIMU's critical neurons per layer (from artifacts/*/masks.json); and, "
        "for a sweep, each metric against each swept value. Given several run folders of MUSE's "
        "scalability or sustainability (forget_split=scal_K or sust_K), each role's column against K "
        "instead (requests.png, requests.csv). Prints the paths written.",
    )
    plot.add_argument(
        "run", metavar="RUN_DIR", nargs="+", help="a run folder (with leaderboard.csv), or several scal_K/sust_K runs"
    )
    plot.add_argument("--out", default=None, help="where the PNGs go (default: RUN_DIR/plots)")
    compare = sub.add_parser(
        "compare",
        help="a sweep's methods at equal tuning budget and at matched forgetting",
        description="Read a sweep (harness sweep, the same grid for every method) and write: "
        "selection.csv, every grid point's mean forget, retain and utility (the columns declared "
        "for those roles) and its score, the seed mean of hmean(1 - forget, retain, utility), a "
        "failed cell scoring 0, with each method's best point marked (ties: the earlier point); "
        "selected.toml, a preset with each method at its selected point (harness run --preset "
        "FILE reruns them); matched.md and matched.csv, retain and utility where each method's "
        "curve over its grid first reaches each forget level, linearly interpolated on the mean "
        "curve, ± the std of the same on each seed's curve, and its bootstrap interval (over seeds, "
        "and items where the sweep's items.csv.gz has them); matched.png, the curves; with --pair "
        "A,B, pair.md and pair.csv, the paired comparison. Prints the selection and the tables.",
    )
    compare.add_argument(
        "sweep",
        metavar="SWEEP_DIR_OR_CSV",
        nargs="+",
        help="a sweep's run folder or leaderboard CSV; several (of one benchmark and target, each method in one "
        "of them) are compared as one, e.g. the committed sweep and your method's",
    )
    compare.add_argument(
        "--out",
        default=None,
        help="where the files go (default: SWEEP_DIR/compare, or NAME-compare beside a NAME.csv; required "
        "for several sweeps)",
    )
    compare.add_argument(
        "--levels",
        type=_csv(float),
        default=None,
        help="comma-separated forget levels to match at (default: 0.5,0.25,0.1)",
    )
    compare.add_argument(
        "--pair",
        type=_csv(str),
        default=None,
        metavar="A,B",
        help="two methods to compare paired (the same seeds and items): A - B at their selected points and at "
        "each matched level, with its interval and p-value (pair.md, pair.csv)",
    )
    compare.add_argument(
        "--forget",
        default=None,
        metavar="COLUMN",
        help="the column that stands for forgetting in the selection and the matching, instead of the one the "
        "benchmark declares (e.g. muse_forget_verbmem for MUSE's VerbMem; muse_forget_knowmem is declared)",
    )
    _add_bootstrap_arguments(compare)
    return parser


def _add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    """The bootstrap's settings (harness/uncertainty.py): over seeds, and over items where the per-item file
    beside the leaderboard has them."""
    group = parser.add_argument_group("intervals (bootstrap over seeds and items)")
    group.add_argument("--level", type=float, default=0.95, help="the intervals' level (default: 0.95)")
    group.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    group.add_argument("--bootstrap-seed", type=int, default=0, help="the draws' seed (default: 0)")


def _bootstrap(args):
    from harness.uncertainty import Bootstrap

    return Bootstrap(args.level, args.resamples, args.bootstrap_seed)


def _tolerances(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--tolerance {pair}: expected METRIC=ABS with a number") from None
    return out


def run_table(args) -> int:
    from harness.tables import read_leaderboard, render
    from harness.uncertainty import read_items

    settings, frame = _bootstrap(args), read_leaderboard(args.run)
    sys.stdout.write(render(frame, args.columns, args.format, read_items(args.run), settings, args.intervals))
    return 0


def run_metrics(args) -> int:
    from harness.metrics import metrics

    rows = [
        (
            m.name,
            m.better + (" (cost)" if m.cost else ""),
            "yes" if m.default else "",
            m.scale,
            f"{m.tolerance:g}" if m.checked else "-",
            m.display,
        )
        for m in metrics.all()
    ]
    header = ("column", "better", "default", "scale", "tolerance", "meaning")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def run_compare(args) -> int:
    import pandas as pd

    from harness.compare import LEVELS, compare

    if args.pair is not None and (len(args.pair) != 2 or args.pair[0] == args.pair[1]):
        raise ValueError(f"--pair {','.join(args.pair)}: expected two different methods, A,B")
    pair = tuple(args.pair or ()) or None
    paths = compare(args.sweep, args.out, args.levels or LEVELS, pair, _bootstrap(args), args.forget)
    selection = pd.read_csv(paths["selection.csv"])
    print(selection.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(paths["matched.md"].read_text(encoding="utf-8"))
    if "pair.md" in paths:
        print(paths["pair.md"].read_text(encoding="utf-8"))
    for path in paths.values():
        print(path)
    return 0


def run_plot(args) -> int:
    from harness.plots import plot_requests, plot_run

    several = len(args.run) > 1
    paths = (
        plot_requests(args.run, args.out or Path(args.run[0]) / "plots") if several else plot_run(args.run[0], args.out)
    )
    for path in paths:
        print(path)
    return 0


def run_check(args) -> int:
    from harness.environment import environment_differences, environment_path, read_environments
    from harness.regression import check as regression_check
    from harness.regression import read_tolerances, tolerances_path
    from harness.tables import read_leaderboard

    run_frame, reference = read_leaderboard(args.run), read_leaderboard(args.against)
    tolerances = read_tolerances(args.against)
    check = regression_check(run_frame, reference, tolerances, _tolerances(args.tolerance))
    if tolerances is None:
        print(f"note: no {tolerances_path(args.against).name} beside the reference; default tolerances")
    run_env, reference_env = (
        _row_environments(read_environments(environment_path(p)), frame)
        for p, frame in ((args.run, run_frame), (args.against, reference))
    )
    if not run_env or not reference_env:
        missing = environment_path(args.run if not run_env else args.against)
        print(f"note: no environment record ({missing}); cannot tell whether the environments differ")
    elif differences := environment_differences(run_env, reference_env):
        print("note: the run's environment differs from the reference's (reference -> run):")
        print("\n".join(f"  {line}" for line in differences))
    for line in check.notes:
        print(f"note: {line}")
    for line in check.regressions:
        print(line)
    if check.regressions:
        print(f"{len(check.regressions)} regression(s) against {args.against}", file=sys.stderr)
        return 1
    print(f"no regressions: {check.cells} cells x {check.metrics} metrics within tolerance of {args.against}")
    return 0


def _row_environments(records: dict[str, dict], frame) -> dict[str, dict]:
    """The environment records some row of `frame` was made in (a folder may hold records of rows since
    replaced)."""
    if "environment" not in frame.columns:
        return records
    return {key: env for key, env in records.items() if key in set(frame["environment"])}


def run_noise(args, argv: list[str]) -> int:
    from harness.noise import CAPABILITIES, native_capabilities, other_machine_runs, run_all, same_command, summarise
    from harness.tables import read_leaderboard

    capabilities = args.capabilities or native_capabilities()
    if not set(capabilities) <= set(CAPABILITIES) or len(capabilities) < 2:
        raise ValueError(f"--capabilities {','.join(capabilities)}: expected two or more of {', '.join(CAPABILITIES)}")
    reference = args.reference_capability or ("avx2" if "avx2" in capabilities else capabilities[-1])
    if reference not in capabilities:
        raise ValueError(f"--reference-capability {reference}: not among --capabilities {','.join(capabilities)}")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: expected 1 or more")
    others = other_machine_runs([Path(d) for d in args.others])
    from harness.config import RunConfig, check_method_settings

    check_method_settings(config_from_args(args))  # the run's own flags fail here, before any run starts
    out = Path(args.out or f"runs/noise-{args.benchmark or args.preset or RunConfig.benchmark}")
    made = {c: out / c for c in capabilities if (out / c / "leaderboard.csv").is_file()}
    if others and made:  # rerun to add another machine's runs: a different command fails before anything runs
        same_command({env: read_leaderboard(path) for env, path in (made | others).items()})
    jobs = args.jobs or max(1, min(len(capabilities), os.cpu_count() or 1))
    run_all(_without_flags(argv, NOISE_ONLY_FLAGS), out, Path(args.cache_dir or out), capabilities, jobs)
    print(f"tolerances: {summarise(out, capabilities, reference, others)}")
    return 0


NOISE_ONLY_FLAGS = ("--capabilities", "--reference-capability", "--jobs", "--with", "--out", "--cache-dir")


def _without_flags(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """`argv` after the subcommand, less the given flags (`--flag value` or `--flag=value`)."""
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        elif not arg.startswith(tuple(f"{f}=" for f in flags)):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success; 1 when a check finds regressions or some cells failed; 2 on bad input (one line
    naming it); 130 when interrupted (Ctrl-C or SIGTERM) after the current write, with how to resume."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    previous = (
        signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    )
    checked = False  # every input passed its checks (then a refused access is the machine's fault)
    try:
        if args.command == "noise":
            return run_noise(args, argv)
        if args.command in ("table", "check", "plot", "metrics", "compare"):
            commands = {
                "table": run_table,
                "check": run_check,
                "plot": run_plot,
                "metrics": run_metrics,
                "compare": run_compare,
            }
            return commands[args.command](args)
        cfg = config_from_args(args)
        if getattr(args, "dry_run", False):
            return dry_run(cfg, args.processes)
        from harness import preflight

        preflight.check(cfg, args.command)  # before torch is imported
        checked = True
        from harness.runner import evaluate, run

        path = (evaluate if args.command == "eval" else run)(cfg)
        if not _is_main():
            return 0
    except KeyboardInterrupt:
        where = f" in {args.out or 'the run folder'}" if args.command in ("run", "sweep", "noise", "eval") else ""
        print(
            f"harness: interrupted; finished cells are kept{where}: run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except CellsFailed as err:
        if not _is_main():
            return 1
        _print_summary(err.leaderboard)
        print(f"harness: error: {err}", file=sys.stderr)
        return 1
    except SettingError as err:
        print(f"harness: error: {err.cli()}", file=sys.stderr)
        return 2
    except OSError as err:
        if environment_fault(err, checked):
            print(
                f"harness: error: {err.filename or 'a file'}: {err.strerror} (a fault of the machine, not of the "
                f"input: free space or restore access, then run the same command again to resume)",
                file=sys.stderr,
            )
            return EXIT_ENVIRONMENT
        print(f"harness: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) else str(err)  # KeyError's str() adds quotes
        print(f"harness: error: {message}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"leaderboard: {path}")
    _print_summary(path)
    return 0


def dry_run(cfg, processes: int | None = None) -> int:
    from harness.config import check_method_settings
    from harness.memory import print_plan
    from harness.models import resolve_device
    from harness.registry import benchmarks as registered

    check_method_settings(cfg)
    print_plan(cfg, registered[cfg.benchmark](), resolve_device(cfg.compute.device), processes)
    return 0


def _is_main() -> bool:
    """Whether this process reports: always, but in a run of several processes only rank 0."""
    from harness import distributed

    return distributed.is_main()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


KEYWORDS = (
    "benchmark",
    "methods",
    "seeds",
    "out",
    "cache_dir",
    "preset",
    "data",
    "model",
    "retain_model",
    "retain_eval",
    "template",
    "lm_eval_tasks",
    "device",
    "dtype",
    "shard",
    "trust_remote_code",
    "allow_pickle",
    "wait",
    "save_models",
    "grid",
    "settings",
    "models",
    "names",
)


def config_from_args(args):
    """The flags as `config.build`'s keywords (the CLI only parses; what defines a run is in harness/config.py).
    The methods' hyperparameters are left to the pre-flight, which checks them last (they import torch)."""
    from harness.config import build

    command = "run" if args.command == "noise" else args.command
    return build(command, check_methods=False, **{key: getattr(args, key) for key in KEYWORDS if hasattr(args, key)})


def _print_summary(path) -> None:
    """The leaderboard's default columns, then every warning of the run again (they scroll away above)."""
    import pandas as pd

    from harness.metrics import metrics
    from harness.progress import WARNINGS

    frame = pd.read_csv(path, dtype={"seed": "Int64"})
    cols = [c for c in ("method", "variant", "seed") if c in frame.columns] + metrics.defaults(frame.columns)
    print(frame[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if WARNINGS:
        print(f"{len(WARNINGS)} warning(s) in this run:", file=sys.stderr)
        print("\n".join(f"  {w}" for w in WARNINGS), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
