"""The layout's promises: a benchmark, a metric and a method each take one file and one registration line (the
toy ones below, registered from this test, run end to end); tables and checks need no torch; no import cycles."""

from __future__ import annotations

import ast
import copy
import subprocess
import sys
from pathlib import Path
from statistics import mean

import pytest
import torch
import torch.nn.functional as F

from evaluators.base import EvalResult
from evaluators.scoring import score_answers
from harness.benchmarks.base import Benchmark, Prepared
from harness.cli import main
from harness.data.tofu import load_splits
from harness.embedded import prepare_embedded
from harness.metrics import Metric, metrics
from harness.registry import benchmarks, methods
from harness.tables import read_leaderboard, render
from methods.base import UnlearningMethod

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "methods", "evaluators")


# --- a toy benchmark, metric and method, as a contributor would write them ----------------------------------

TOY_METRICS = [Metric("toy_forget_nll", "higher", "forget answers' NLL", default=True),
               Metric("toy_retain_nll", "lower", "retain answers' NLL", default=True)]


class ToyNLL(Benchmark):
    """The embedded world's models, scored only by the mean answer NLL on the forget and retain rows."""

    def prepare(self, cfg) -> Prepared:
        embedded = prepare_embedded(cfg.world, cfg.train, cfg.forget_split, cfg.cache_dir)
        splits = load_splits(embedded.world_dir, cfg.forget_split)
        return Prepared(splits, splits.forget, splits.retain, cfg.forget_split, embedded.target_dir, None,
                        "embedded-toy", {"world": str(cfg.world), "train": str(cfg.train)})

    def evaluate(self, model, tokenizer, prepared, cfg) -> EvalResult:
        def nll(rows):
            pairs = [(r["question"], r["answer"]) for r in rows]
            return mean(s["avg_nll"] for s in score_answers(model, tokenizer, pairs, cfg.eval.batch_size))
        return EvalResult({"toy_forget_nll": nll(prepared.forget), "toy_retain_nll": nll(prepared.retain)})


def sequence_logprob(model, batch) -> torch.Tensor:
    """Each sequence's summed log-probability of its answer tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    return -(nll * (labels != -100)).sum(1)


class ToyNPO(UnlearningMethod):
    """NPO (Zhang et al. 2024) with a retain NLL term: a frozen copy of the model is the reference."""

    defaults = {"lr": 1e-3, "gamma": 1.0, "options": {"beta": 0.1}}

    def setup(self, model, tokenizer, forget, retain) -> None:
        self.reference = copy.deepcopy(model).eval().requires_grad_(False)

    def make_optimizer(self, params):
        return torch.optim.AdamW(params, lr=self.cfg.lr)

    def loss(self, model, forget_batch, retain_batch):
        beta = self.cfg.options["beta"]
        with torch.no_grad():
            reference = sequence_logprob(self.reference, forget_batch)
        ratio = sequence_logprob(model, forget_batch) - reference
        forget = -2 / beta * F.logsigmoid(-beta * ratio).mean()
        retain = model(**retain_batch).loss
        return forget + self.cfg.gamma * retain, forget.detach(), retain.detach()


@pytest.fixture
def registered():
    """Register the toys for one test, and put the registries back after it."""
    metrics.all()   # the declared metrics loaded first, so that putting them back keeps them
    saved = dict(methods._items), dict(benchmarks._items), dict(metrics._metrics)
    benchmarks.register("toy-nll")(ToyNLL)        # a plugin would name these in its pyproject.toml's
    methods.register("toy-npo")(ToyNPO)           # harness.benchmarks, harness.methods and harness.metrics
    metrics.register(*TOY_METRICS)                # entry-point groups instead
    yield
    methods._items, benchmarks._items, metrics._metrics = saved


def test_a_toy_benchmark_metric_and_method_run_end_to_end(registered, tmp_path, capsys):
    out = tmp_path / "run"   # models of its own, briefly trained: unlearning has something to move either way
    assert main(["run", "--preset", "tofu-mini-smoke", "--benchmark", "toy-nll", "--methods", "toy-npo,fo-graddiff",
                 "--set", "train.base_epochs=3", "--set", "train.target_epochs=3", "--set", "toy-npo.epochs=3",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    board = read_leaderboard(out)
    assert list(board["method"]) == ["target", "toy-npo", "fo-graddiff"] and set(board["benchmark"]) == {"toy-nll"}
    target = board[board["method"] == "target"].iloc[0]
    for method in ("toy-npo", "fo-graddiff"):      # both unlearned: the forget answers got less likely
        assert board.loc[board["method"] == method, "toy_forget_nll"].item() > target["toy_forget_nll"] + 0.5
    table = render(board).splitlines()
    assert table[0] == "| method | toy_forget_nll ↑ | toy_retain_nll ↓ | wall_seconds ↓ |"
    capsys.readouterr()
    assert main(["check", str(out), "--against", str(out / "leaderboard.csv")]) == 0
    assert "cells x 2 metrics within tolerance" in capsys.readouterr().out


def test_an_unregistered_benchmark_lists_the_registered_ones():
    with pytest.raises(KeyError, match="unknown benchmark 'nope'; registered: lume, lume-mini, tofu, tofu-mini"):
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
    code = NO_TORCH + (f"from harness.cli import main\n"
                       f"assert main(['table', {str(board)!r}]) == 0\n"
                       f"assert main(['check', {str(board)!r}, '--against', {str(board)!r}]) == 0\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "| target (reference) |" in done.stdout and "no regressions" in done.stdout
    code = "import sys, harness.tables, harness.regression; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def _module_imports(path: Path, name: str) -> set[str]:
    """The project modules `path` (module `name`) imports at its top level (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    out = set()
    for module in found:
        if module.split(".")[0] in PACKAGES and _path(module):
            parts = module.split(".")
            out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}   # a module imports its packages
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
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(dep):] + [module, dep]))
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
    assert not any(f'"{name}"' in runner for name in benchmarks.names())   # no branch on a benchmark's name


def test_harness_metrics_lists_every_declaration(capsys):
    assert main(["metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["column", "better", "default", "scale", "tolerance", "meaning"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["forget_quality"].split()[1:5] == ["higher", "yes", "log10", "1"]
    assert rows["simu_critical_neurons"].split()[1:4] == ["none", "linear", "-"]
    assert {"privleak_*", "lume_mia_score", "lmeval_*perplexity"} <= set(rows)
