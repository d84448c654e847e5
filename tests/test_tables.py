"""`harness table` and `harness check` on synthetic leaderboards."""

import pandas as pd
import pytest

from harness.cli import main
from harness.tables import direction, regressions, render

ROWS = [
    {"method": "target", "kind": "reference", "seed": None, "forget_em_contains": 1.0, "retain_em_contains": 1.0,
     "mia_loss_auc": 1.0, "privleak_loss": -100.0, "wall_seconds": 5.0},
    {"method": "retain", "kind": "reference", "seed": None, "forget_em_contains": 0.0, "retain_em_contains": 1.0,
     "mia_loss_auc": 0.5, "privleak_loss": 0.0, "wall_seconds": 5.0},
    {"method": "a", "kind": "method", "seed": 0, "forget_em_contains": 0.2, "retain_em_contains": 0.8,
     "mia_loss_auc": 0.9, "privleak_loss": -80.0, "wall_seconds": 10.0},
    {"method": "a", "kind": "method", "seed": 1, "forget_em_contains": 0.4, "retain_em_contains": 0.6,
     "mia_loss_auc": 0.7, "privleak_loss": -40.0, "wall_seconds": 12.0},
    {"method": "b", "kind": "method", "seed": 0, "forget_em_contains": 0.1, "retain_em_contains": 0.9,
     "mia_loss_auc": 0.4, "privleak_loss": 20.0, "wall_seconds": 30.0},
    {"method": "b", "kind": "method", "seed": 1, "forget_em_contains": 0.1, "retain_em_contains": 0.7,
     "mia_loss_auc": 0.4, "privleak_loss": 20.0, "wall_seconds": 30.0},
]


@pytest.fixture
def board(tmp_path):
    frame = pd.DataFrame(ROWS)
    frame["seed"] = frame["seed"].astype("Int64")
    frame.to_csv(tmp_path / "leaderboard.csv", index=False)
    return frame


def test_directions():
    assert [direction(c) for c in ("forget_em_contains", "retain_rougeL_recall", "forget_quality",
                                   "forget_truth_ratio", "mia_min_k_auc", "privleak_zlib", "wall_seconds")] == \
        ["min", "max", "max", "max", "half", "zero", "min"]


def test_markdown_table_mean_std_arrows_bold_and_references_first(board):
    text = render(board, ["forget_em_contains", "retain_em_contains", "mia_loss_auc", "privleak_loss"])
    lines = text.splitlines()
    assert lines[0] == "| method | forget_em_contains ↓ | retain_em_contains ↑ | mia_loss_auc →0.5 | privleak_loss →0 |"
    assert lines[2].startswith("| target (reference) | 1.000 |") and lines[3].startswith("| retain (reference) |")
    # a: forget (0.2, 0.4) -> 0.300 ± 0.141; b wins every column, the AUC by |0.4 - 0.5| < |0.8 - 0.5| and
    # privleak by |20| < |-60|
    assert lines[4] == "| a | 0.300 ± 0.141 | 0.700 ± 0.141 | 0.800 ± 0.141 | -60.000 ± 28.284 |"
    assert lines[5] == "| b | **0.100 ± 0.000** | **0.800 ± 0.141** | **0.400 ± 0.000** | **20.000 ± 0.000** |"
    assert "**" not in lines[2] + lines[3]                        # references are never marked best


def test_tied_best_are_all_bold_and_latex_and_csv(board):
    tied = board.assign(retain_em_contains=[1.0, 1.0, 0.8, 0.8, 0.8, 0.8])
    md = render(tied, ["retain_em_contains"])
    assert md.count("**0.800 ± 0.000**") == 2
    latex = render(board, ["forget_em_contains"], "latex")
    assert r"\textbf{0.100 $\pm$ 0.000}" in latex and r"forget\_em\_contains $\downarrow$" in latex
    assert latex.startswith(r"\begin{tabular}{lr}") and latex.rstrip().endswith(r"\end{tabular}")
    csv = render(board, ["forget_em_contains"], "csv").splitlines()
    assert csv[0] == "method,n_seeds,forget_em_contains_mean,forget_em_contains_std"
    assert csv[3].startswith("a,2,0.3")


def test_check_passes_on_identical_input_and_fails_on_a_regression(board, tmp_path, capsys):
    ref = tmp_path / "leaderboard.csv"
    assert main(["check", str(ref), "--against", str(ref)]) == 0
    assert "no regressions: 6 cells" in capsys.readouterr().out
    worse = board.copy()
    worse.loc[2, "forget_em_contains"] = 0.30          # +0.10 on a lower-is-better metric: a regression
    worse.loc[3, "retain_em_contains"] = 0.58          # -0.02: within the default 0.05
    worse.loc[4, "mia_loss_auc"] = 0.60                # 0.4 -> 0.6 is as far from chance: no regression
    worse.loc[5, "wall_seconds"] = 300.0               # timings are not checked
    worse.to_csv(tmp_path / "run.csv", index=False)
    assert main(["check", str(tmp_path / "run.csv"), "--against", str(ref)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["a seed 0: forget_em_contains 0.2 -> 0.3 (↓ is better; tolerance 0.05)"]
    assert main(["check", str(tmp_path / "run.csv"), "--against", str(ref), "--tolerance",
                 "forget_em_contains=0.2"]) == 0


def test_check_reports_missing_cells_and_bad_tolerances(board):
    assert regressions(board[board["method"] != "b"], board) == ["b seed 0: missing from the run",
                                                                 "b seed 1: missing from the run"]
    with pytest.raises(ValueError, match="--tolerance nope: not a column"):
        regressions(board, board, {"nope": 0.1})
