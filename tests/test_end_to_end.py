"""`harness run` end to end on a micro world: trains the tiny models, unlearns with FO-GradDiff, evaluates."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from evaluators import mia
from harness.cli import main
from harness.tables import read_leaderboard, regressions

README = Path(__file__).resolve().parents[1] / "README.md"
LEADERBOARDS = README.parent / "leaderboards"
SPLITS = ("forget", "retain", "real_authors", "world_facts")


def harness_run(out: Path, cache: Path, *extra: str) -> int:
    return main(["run", "--methods", "fo-graddiff,so-graddiff,simu", "--out", str(out), "--cache-dir", str(cache),
                 "--preset", "tofu-mini-smoke", *extra])


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory, micro_cache):
    root = tmp_path_factory.mktemp("e2e")
    (root / "cache").symlink_to(micro_cache)
    assert harness_run(root / "run", root / "cache") == 0
    return root


def documented_columns() -> list[str]:
    """Every column named in the README's leaderboard tables, with SPLIT and ATTACK expanded."""
    section = README.read_text().split("## Leaderboard columns", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)
    names = [n.replace("SPLIT", s) for n in names for s in (SPLITS if "SPLIT" in n else ["SPLIT"])]
    return [n.replace("ATTACK", a) for n in names for a in (mia.ATTACKS if "ATTACK" in n else ["ATTACK"])]


def test_leaderboard_has_references_then_methods(micro_run):
    board = pd.read_csv(micro_run / "run" / "leaderboard.csv")
    assert list(board["method"]) == ["target", "retain", "fo-graddiff", "simu", "so-graddiff"]
    assert list(board["kind"]) == ["reference", "reference", "method", "method", "method"]
    assert board.loc[2, "seed"] == 0 and board.loc[2, "steps"] > 0 and board.loc[2, "trainable_params"] > 0


def test_csv_has_every_documented_column(micro_run):
    columns = documented_columns()
    assert len(columns) > 25
    board = pd.read_csv(micro_run / "run" / "leaderboard.csv")
    assert set(columns) <= set(board.columns), set(columns) - set(board.columns)
    common = [c for c in columns if c != "seed" and not c.startswith("simu_")]
    assert not board[common].isna().any().any()
    simu_only = [c for c in columns if c.startswith("simu_")]
    assert simu_only and not board.loc[board["method"] == "simu", simu_only].isna().any().any()


@pytest.mark.parametrize("method", ["fo-graddiff", "so-graddiff"])
def test_methods_lower_forget_em(micro_run, method):
    board = pd.read_csv(micro_run / "run" / "leaderboard.csv").set_index("method")
    assert board.loc["target", "forget_em_contains"] >= 0.5, "the micro target must know its forget set"
    assert board.loc[method, "forget_em_contains"] < board.loc["target", "forget_em_contains"]
    assert board.loc["retain", "forget_em_contains"] < board.loc["target", "forget_em_contains"]


def test_simu_saves_its_masks_and_reports_them(micro_run):
    board = pd.read_csv(micro_run / "run" / "leaderboard.csv").set_index("method")
    folder = micro_run / "run" / "artifacts" / "simu-seed0"
    masks = torch.load(folder / "masks.pt")
    summary = json.loads((folder / "masks.json").read_text())
    assert len(masks) == 2 and all(m.dtype == torch.bool for m in masks.values())   # one per layer
    assert summary["per_layer_critical"] == [int(m.sum()) for m in masks.values()]
    assert board.loc["simu", "simu_critical_neurons"] == sum(summary["per_layer_critical"])
    assert 0 < board.loc["simu", "simu_critical_fraction"] < 1
    assert board.loc["simu", "trainable_params"] < board.loc["so-graddiff", "trainable_params"]


def test_micro_run_reproduces_the_committed_smoke_reference(micro_run):
    """The same run as CI's smoke regression (leaderboards/README.md), checked the way CI checks it."""
    reference = read_leaderboard(LEADERBOARDS / "tofu-mini-smoke.csv")
    assert regressions(read_leaderboard(micro_run / "run"), reference) == []


def test_items_let_anyone_recompute_a_figure(micro_run):
    items = [json.loads(line) for line in (micro_run / "run" / "results" / "fo-graddiff-seed0.items.jsonl").open()]
    forget = [i for i in items if i["split"] == "forget"]
    assert {"prompt", "generation", "gold", "em_contains", "rougeL_recall", "prob"} <= set(forget[0])
    row = json.loads((micro_run / "run" / "results" / "fo-graddiff-seed0.json").read_text())
    assert row["forget_em_contains"] == pytest.approx(sum(i["em_contains"] for i in forget) / len(forget))
    assert {i["split"] for i in items} == {*SPLITS, "holdout"}


def test_rerun_skips_finished_cells(micro_run, capsys):
    results = micro_run / "run" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert harness_run(micro_run / "run", micro_run / "cache") == 0
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")} == before
    err = capsys.readouterr().err
    assert "train target" not in err and "train base" not in err  # the cached models were reused


def test_changed_hyperparameter_reruns_only_that_cell(micro_run):
    results = micro_run / "run" / "results"
    target_before = (results / "target.json").stat().st_mtime_ns
    old = json.loads((results / "fo-graddiff-seed0.json").read_text())["config_hash"]
    assert harness_run(micro_run / "run", micro_run / "cache", "--set", "fo-graddiff.epochs=1") == 0
    new = json.loads((results / "fo-graddiff-seed0.json").read_text())
    assert new["config_hash"] != old and new["steps"] < 5
    assert (results / "target.json").stat().st_mtime_ns == target_before
