"""The committed reference leaderboards: rendered tables in step with their CSVs, the README showing them, the
trade-off plot a real figure, and the commands that made them documented."""

from pathlib import Path

import pytest

from harness.tables import read_leaderboard, render

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ROOT / "leaderboards"


@pytest.mark.parametrize("name, seeds", [("tofu-mini", [0, 1, 2]), ("tofu-mini-smoke", [0]), ("lume-mini", [0])])
def test_committed_leaderboards_have_references_then_three_methods(name, seeds):
    board = read_leaderboard(BOARDS / f"{name}.csv")
    references = ["target"] if name.startswith("lume") else ["target", "retain"]     # LUME has no retain model
    assert list(board["method"][:len(references)]) == references
    assert set(board["method"][len(references):]) == {"fo-graddiff", "so-graddiff", "simu"}
    assert all(sorted(board.loc[board["method"] == m, "seed"]) == seeds for m in ("fo-graddiff", "so-graddiff", "simu"))


@pytest.mark.parametrize("name", ["tofu-mini", "lume-mini"])
def test_rendered_table_is_the_csv_rendered_and_the_readme_shows_it(name):
    table = (BOARDS / f"{name}.md").read_text()
    assert table == render(read_leaderboard(BOARDS / f"{name}.csv"))
    assert table in (ROOT / "README.md").read_text()


def test_committed_tradeoff_plot_is_a_figure_and_in_the_readme(figure_stats):
    width, _, inked, colours = figure_stats(BOARDS / "tofu-mini-tradeoff.png")
    assert width > 1000 and 0.01 < inked < 0.6
    assert colours > 50
    assert "](leaderboards/tofu-mini-tradeoff.png)" in (ROOT / "README.md").read_text()


def test_commands_that_made_them_are_documented():
    readme = (BOARDS / "README.md").read_text()
    assert "<!-- tofu-mini-command -->" in readme and "--seeds 0,1,2" in readme
    assert "<!-- lume-mini-command -->" in readme and "--benchmark lume-mini" in readme
    smoke = readme.split("<!-- smoke-command -->", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert "--preset tofu-mini-smoke" in smoke
    assert "harness check runs/smoke --against leaderboards/tofu-mini-smoke.csv" in smoke
