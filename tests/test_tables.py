"""`harness table` on synthetic leaderboards (the `board` fixture of conftest.py)."""

from harness.tables import direction, render


def test_directions():
    assert [
        direction(c)
        for c in (
            "forget_em_contains",
            "retain_rougeL_recall",
            "forget_quality",
            "forget_truth_ratio",
            "mia_min_k_auc",
            "privleak_zlib",
            "wall_seconds",
        )
    ] == ["lower", "higher", "higher", "higher", "half", "zero", "lower"]


def test_markdown_table_mean_std_arrows_bold_and_references_first(board):
    text = render(board, ["forget_em_contains", "retain_em_contains", "mia_loss_auc", "privleak_loss"])
    lines = text.splitlines()
    assert lines[0] == "| method | forget_em_contains ↓ | retain_em_contains ↑ | mia_loss_auc →0.5 | privleak_loss →0 |"
    assert lines[2].startswith("| target (reference) | 1.000 |") and lines[3].startswith("| retain (reference) |")
    # a: forget (0.2, 0.4) -> 0.300 ± 0.141; b has the best mean in every column, the AUC by |0.4 - 0.5| <
    # |0.8 - 0.5| and privleak by |20| < |-60|; two seeds (t with 1 degree of freedom) separate it only where
    # the seeds' differences agree: retain, 0.1 above a on both
    assert lines[4] == "| a | 0.300 ± 0.141† | 0.700 ± 0.141 | 0.800 ± 0.141† | -60.000 ± 28.284† |"
    assert lines[5] == "| b | 0.100 ± 0.000† | **0.800 ± 0.141** | 0.400 ± 0.000† | 20.000 ± 0.000† |"
    assert "†" not in lines[2] + lines[3]  # references are never marked best
    separated = board.assign(forget_em_contains=[1.0, 0.0, 0.30, 0.31, 0.10, 0.11])
    assert "| b | **0.105 ± 0.007** |" in render(separated, ["forget_em_contains"])


def test_tied_best_are_marked_not_bold_and_latex_and_csv(board):
    tied = board.assign(retain_em_contains=[1.0, 1.0, 0.8, 0.8, 0.8, 0.8])
    md = render(tied, ["retain_em_contains"])
    assert md.count("| 0.800 ± 0.000† |") == 2 and "**" not in md
    assert "† best mean, but not separated" in md
    separated = board.assign(forget_em_contains=[1.0, 0.0, 0.30, 0.31, 0.10, 0.11])
    latex = render(separated, ["forget_em_contains"], "latex")
    assert r"\textbf{0.105 $\pm$ 0.007}" in latex and r"forget\_em\_contains $\downarrow$" in latex
    assert latex.startswith(r"\begin{tabular}{lr}") and latex.rstrip().endswith(r"\end{tabular}")
    csv = render(board, ["forget_em_contains"], "csv").splitlines()
    assert csv[0] == (
        "method,n_seeds,forget_em_contains_mean,forget_em_contains_std,forget_em_contains_lo,forget_em_contains_hi"
    )
    assert csv[3].startswith("a,2,0.3")
