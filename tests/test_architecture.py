"""The layout's promises: a benchmark, a metric and a method each take one file and one registration line (the
toy ones below, registered from this test, run end to end); tables and checks need no torch; no import cycles."""

from __future__ import annotations

import ast
import copy
import dataclasses
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from conftest import context

from evaluators.base import EvalResult
from evaluators.scoring import score_answers
from harness.benchmarks.base import Benchmark, Prepared
from harness.benchmarks.tofu_mini import TofuMini
from harness.cli import main
from harness.config import build, method_config, sections_of
from harness.data.tofu import load_splits
from harness.embedded import prepare_embedded
from harness.metrics import Metric, metrics
from harness.registry import benchmarks, methods
from harness.rules import POSITIVE, at_least
from harness.tables import read_leaderboard, render
from methods.base import UnlearningMethod
from methods.settings import MethodConfig, setting

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "methods", "evaluators")


# --- a toy benchmark, metric and method, as a contributor would write them ----------------------------------

TOY_METRICS = [
    Metric("toy_forget_nll", "higher", "forget answers' NLL", default=True),
    Metric("toy_retain_nll", "lower", "retain answers' NLL", default=True),
]


@dataclass(frozen=True)
class ToyConfig:
    """How many rows the toy scores: the benchmark's own knob (`--set toy.rows=N`, a preset's [toy])."""

    RULES: ClassVar[dict] = {"rows": at_least(1)}

    rows: int = 1000


class ToyNLL(Benchmark):
    """The embedded world's models, scored only by the mean answer NLL on the first `toy.rows` forget and retain
    rows."""

    sections = TofuMini.sections | {"toy": ToyConfig}  # the embedded models' world and recipe, and its own

    def identity(self, cfg) -> dict:
        return TofuMini().identity(cfg) | {"toy": dataclasses.asdict(cfg.section("toy"))}

    def prepare(self, cfg) -> Prepared:
        embedded = prepare_embedded(cfg.section("world"), cfg.section("train"), cfg.forget_split, cfg.cache_dir)
        splits = load_splits(embedded.world_dir, cfg.forget_split)
        return Prepared(
            splits=splits,
            forget=splits.forget,
            retain=splits.retain,
            identity=self.identity(cfg),
            model_name="embedded-toy",
            forget_split=cfg.forget_split,
            target_dir=embedded.target_dir,
        )

    def evaluate(self, model, tokenizer, prepared, cfg) -> EvalResult:
        def nll(rows):
            pairs = [(r["question"], r["answer"]) for r in rows[: cfg.section("toy").rows]]
            return mean(s["avg_nll"] for s in score_answers(model, tokenizer, pairs, cfg.eval.batch_size))

        return EvalResult({"toy_forget_nll": nll(prepared.forget), "toy_retain_nll": nll(prepared.retain)})


def sequence_logprob(model, batch) -> torch.Tensor:
    """Each sequence's summed log-probability of its answer tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    return -(nll * (labels != -100)).sum(1)


@dataclass(frozen=True)
class ToyNPOConfig(MethodConfig):
    lr: float = 1e-3
    beta: float = setting(0.1, POSITIVE, "inverse temperature")  # the method's own option


class ToyNPO(UnlearningMethod):
    """NPO (Zhang et al. 2024) with a retain NLL term: a frozen copy of the model is the reference."""

    settings = ToyNPOConfig

    def setup(self, model, tokenizer, forget, retain) -> None:
        self.reference = copy.deepcopy(model).eval().requires_grad_(False)

    def model_copies(self) -> int:
        return 2

    def make_optimizer(self, params):
        return torch.optim.AdamW(params, lr=self.cfg.lr)

    def loss(self, model, forget_batch, retain_batch):
        with torch.no_grad():
            reference = sequence_logprob(self.reference, forget_batch)
        ratio = sequence_logprob(model, forget_batch) - reference
        forget = -2 / self.cfg.beta * F.logsigmoid(-self.cfg.beta * ratio).mean()
        retain = model(**retain_batch).loss
        return forget + self.cfg.gamma * retain, forget.detach(), retain.detach()


@pytest.fixture
def registered():
    """The toys registered for one test, one line each (a plugin would name them in its pyproject.toml's
    harness.benchmarks, harness.methods and harness.metrics entry-point groups instead)."""
    with (
        benchmarks.temporarily("toy-nll", ToyNLL),
        methods.temporarily("toy-npo", ToyNPO),
        metrics.temporarily(*TOY_METRICS),
    ):
        yield
    assert "toy-nll" not in benchmarks and "toy-npo" not in methods  # registered for the test only


def test_a_toy_benchmark_metric_and_method_run_end_to_end(registered, tmp_path, capsys):
    out = tmp_path / "run"  # models of its own, briefly trained: unlearning has something to move either way
    preset = tmp_path / "toy.toml"  # the toy's knob in a preset, the method's option too
    preset.write_text('description = "toy"\nbenchmark = "toy-nll"\n[toy]\nrows = 6\n[methods.toy-npo]\nbeta = 0.2\n')
    assert (
        main(
            [
                "run",
                "--preset",
                "tofu-mini-smoke",
                "--benchmark",
                "toy-nll",
                "--methods",
                "toy-npo,fo-graddiff",
                "--set",
                "train.base_epochs=3",
                "--set",
                "train.target_epochs=3",
                "--set",
                "toy-npo.epochs=3",
                "--set",
                "toy.rows=8",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    board = read_leaderboard(out)
    assert list(board["method"]) == ["target", "toy-npo", "fo-graddiff"] and set(board["benchmark"]) == {"toy-nll"}
    target = board[board["method"] == "target"].iloc[0]
    for method in ("toy-npo", "fo-graddiff"):  # both unlearned: the forget answers got less likely
        assert board.loc[board["method"] == method, "toy_forget_nll"].item() > target["toy_forget_nll"] + 0.5
    table = render(board).splitlines()
    assert table[0] == "| method | toy_forget_nll ↑ | toy_retain_nll ↓ | wall_seconds ↓ |"
    capsys.readouterr()
    assert main(["check", str(out), "--against", str(out / "leaderboard.csv")]) == 0
    assert "cells x 2 metrics within tolerance" in capsys.readouterr().out
    from_preset = build("run", preset=str(preset))
    assert from_preset.section("toy").rows == 6 and from_preset.preset_overrides["toy-npo"] == {"beta": "0.2"}


def test_a_toy_benchmarks_knob_and_a_toy_methods_option_are_settings_like_the_built_ins(registered, tmp_path, capsys):
    cfg = build("run", benchmark="toy-nll", methods=["toy-npo"], settings={"toy.rows": 3, "toy-npo.beta": 0.5})
    assert (
        cfg.section("toy") == ToyConfig(rows=3) and method_config("toy-npo", cfg.overrides_for("toy-npo")).beta == 0.5
    )
    other = build("run", benchmark="toy-nll", methods=["toy-npo"], settings={"toy.rows": 4, "toy-npo.beta": 0.5})
    hashes = [
        context(c).cell_hash("toy-npo", method_config("toy-npo", c.overrides_for("toy-npo")).hashed())
        for c in (
            cfg,
            other,
            build("run", benchmark="toy-nll", methods=["toy-npo"], settings={"toy-npo.beta": "0.5", "toy.rows": "3"}),
        )
    ]
    assert hashes[0] != hashes[1] and hashes[0] == hashes[2]  # the knob is in the benchmark's identity
    for argv, error in (
        (["--set", "toy.rows=0"], "--set toy.rows=0: expected an integer >= 1"),
        (["--set", "toy.size=3"], "--set toy.size: unknown key; toy has: rows"),
        (["--set", "toy-npo.beta=-1"], "--set toy-npo.beta=-1.0: expected a finite number > 0"),
    ):
        assert main(["run", "--benchmark", "toy-nll", "--methods", "toy-npo", "--out", str(tmp_path / "x"), *argv]) == 2
        assert capsys.readouterr().err.strip() == f"harness: error: {error}"
    with pytest.raises(SystemExit):
        main(["run", "--benchmark", "toy-nll", "--help"])
    shown = capsys.readouterr().out
    assert re.search(r"toy\.KEY=V\s+How many rows the toy scores.*: rows\n", shown)
    assert re.search(r"toy-npo:\s+beta \(inverse temperature\)\n", shown)
    assert not (tmp_path / "x").exists()

    assert "toy-nll" in benchmarks and "toy-npo" in methods


def test_an_unregistered_benchmark_lists_the_registered_ones():
    with pytest.raises(
        KeyError,
        match="unknown benchmark 'nope'; registered: lume, lume-mini, muse, muse-mini, tofu, tofu-mini, wmdp, wmdp-mini",
    ):
        benchmarks["nope"]


def test_undeclared_columns_are_diagnostics_and_patterns_pick_the_most_specific():
    assert metrics.get("simu_critical_neurons").better == "none" and metrics.get("my_new_column").better == "none"
    assert metrics.get("forget_truth_ratio").better == "higher" and metrics.get("forget_prob").better == "lower"
    assert metrics.get("lmeval_embedded_real_authors_loglik_perplexity").better == "lower"
    assert metrics.get("lmeval_seconds").cost and not metrics.get("lmeval_seconds").checked
    with pytest.raises(ValueError, match="better='up'; expected one of higher, lower"):
        Metric("x", "up")


# --- what the layout guarantees ------------------------------------------------------------------------------

NO_TORCH = """import sys
class NoTorch:   # as on a machine without torch and transformers: importing either fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"no {name} on this machine")
sys.meta_path.insert(0, NoTorch())
"""


def test_tables_and_checks_work_without_torch():
    """`harness table` and `harness check` import neither torch nor transformers (blocked here, so an import
    of either fails), and importing harness.tables loads neither."""
    board = ROOT / "leaderboards" / "tofu-mini.csv"
    code = NO_TORCH + (
        f"from harness.cli import main\n"
        f"assert main(['table', {str(board)!r}]) == 0\n"
        f"assert main(['check', {str(board)!r}, '--against', {str(board)!r}]) == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "| target (reference) |" in done.stdout and "no regressions" in done.stdout
    code = "import sys, harness.tables, harness.regression; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def _module_imports(path: Path, name: str) -> set[str]:
    """The project modules `path` (module `name`) imports, at its top level or inside a function (a cycle closed
    by a deferred import is a cycle all the same)."""
    found, tree = set(), ast.parse(path.read_text())
    type_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for n in ast.walk(block)
    }  # imports for annotations never run
    for node in tree.body if path.name == "__init__.py" else ast.walk(tree):  # a package's functions (the
        #   Python API's, harness.run) run only when called, never when a submodule imports the package
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    out = set()
    for module in found:
        if module.split(".")[0] in PACKAGES and _path(module):
            parts = module.split(".")
            out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}  # a module imports its packages
    return out - {name}


def _path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def test_no_module_imports_in_a_cycle():
    graph = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            graph[name] = _module_imports(path, name)
    state: dict[str, int] = {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(dep) :] + [module, dep]))
            if dep not in state:
                visit(dep, stack + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert len(graph) > 30


def test_the_runner_only_orchestrates():
    runner = (ROOT / "harness" / "runner.py").read_text()
    assert len(runner.splitlines()) < 150
    assert not any(f'"{name}"' in runner for name in benchmarks.names())  # no branch on a benchmark's name


def test_harness_metrics_lists_every_declaration(capsys):
    assert main(["metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["column", "better", "default", "scale", "tolerance", "meaning"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["forget_quality"].split()[1:5] == ["higher", "yes", "log10", "1"]
    assert rows["simu_critical_neurons"].split()[1:4] == ["none", "linear", "-"]
    assert {"privleak_*", "lume_mia_score", "lmeval_*perplexity"} <= set(rows)


def test_the_help_lists_every_declared_setting(capsys):
    """`harness run --help` is generated from the declarations: every method's own settings (with a rule's
    choices), the keys every method shares, and every section of the benchmark asked about."""
    for benchmark in benchmarks.names():
        with pytest.raises(SystemExit):
            main(["run", "--benchmark", benchmark, "--help"])
        shown = " ".join(capsys.readouterr().out.split())  # the help wraps lines
        for section, kind in sections_of(benchmark).items():
            assert f"{section}.KEY=V" in shown
            assert all(f.name in shown for f in dataclasses.fields(kind)), section
        for name in methods.names():
            settings = methods[name].settings
            assert re.search(rf"{re.escape(name)}: ({'none' if not settings.options() else '[a-z]'})", shown)
            for key in settings.keys():
                rule = settings.rules().get(key)
                shown_key = key + (
                    "=" + rule.expected.removeprefix("one of ").replace(", ", "|")
                    if rule and rule.expected.startswith("one of ")
                    else ""
                )
                assert shown_key in shown, (name, shown_key)
    assert "lume.KEY=V" not in " ".join(sections_of("tofu-mini"))


def test_every_column_a_run_emits_is_declared(micro_run, lume_run):
    """Each column of a run's leaderboard is an identity or effort column (harness/rows.py), a swept value, or a
    figure some metric declares, so none drops silently out of tables and checks."""
    from harness.rows import IDENTITY_COLUMNS, swept_columns

    for folder in (micro_run / "run", lume_run):
        board = read_leaderboard(folder)
        figures = [c for c in board.columns if c not in IDENTITY_COLUMNS and c not in swept_columns(board)]
        assert figures and [c for c in figures if not metrics.declared(c)] == []


GENERIC = [p for p in (ROOT / "harness").glob("*.py") if p.name != "embedded.py"]  # embedded.py: the embedded
#   benchmarks' model builder (the design keeps it here); everything else in harness/ serves any benchmark and method


def test_generic_modules_know_no_benchmark_or_method():
    """No generic module imports a particular method or benchmark, or names one in its code (docstrings and
    help texts may use them as examples); the run's defaults are the one named exception."""
    allowed = {("config.py", "tofu-mini"), ("config.py", "fo-graddiff")}  # RunConfig's defaults
    names = set(benchmarks.names()) | set(methods.names())
    specific = {f"methods.{m.stem}" for m in (ROOT / "methods").glob("*.py")} - {
        "methods.base",
        "methods.settings",
        "methods.__init__",
    }
    specific |= {f"harness.benchmarks.{b.stem}" for b in (ROOT / "harness" / "benchmarks").glob("*.py")} - {
        "harness.benchmarks.base",
        "harness.benchmarks.__init__",
    }
    for path in GENERIC:
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body and isinstance(n.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module not in specific, f"{path.name} imports {node.module}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert node.value not in names or (path.name, node.value) in allowed, f"{path.name}: {node.value!r}"


def test_the_typed_contracts_are_enforced():
    """A method's settings must be a dataclass over MethodConfig (an undecorated class would silently have no
    options); a benchmark's section may not shadow a core section or a method."""

    class Loose(MethodConfig):
        beta: float = 0.1

    with pytest.raises(TypeError, match="settings: expected a @dataclass subclass .* \\(beta not dataclass fields\\)"):
        type("LooseMethod", (ToyNPO,), {"settings": Loose})

    class Shadowing(ToyNLL):
        sections = {"eval": ToyConfig}

    with benchmarks.temporarily("toy-shadow", Shadowing), pytest.raises(ValueError, match="'eval' is a core"):
        build("run", benchmark="toy-shadow")


def test_a_stale_entry_point_is_one_line_naming_it(monkeypatch):
    """An install older than the code (its entry points read from the installed metadata) says which entry point
    no longer loads and how to refresh them, instead of a traceback from importlib."""
    from importlib.metadata import EntryPoint

    from harness.registry import load_entry_point

    stale = EntryPoint("methods", "methods:METRICS", "harness.metrics")
    with pytest.raises(
        RuntimeError,
        match="entry point harness.metrics methods = methods:METRICS does not load .*"
        "reinstall it \\(pip install -e .\\)",
    ):
        load_entry_point(stale)
