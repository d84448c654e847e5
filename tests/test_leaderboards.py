"""The committed reference leaderboards: rendered tables in step with their CSVs, the README showing them, the
trade-off plot a real figure, their tolerances and environments beside them, the commands that made them
documented, and the lock file they were made with."""

import json
from importlib import metadata
from pathlib import Path

import pytest

from harness.tables import read_leaderboard, render

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ROOT / "leaderboards"


@pytest.mark.parametrize("name, seeds", [("tofu-mini", [0, 1, 2]), ("tofu-mini-smoke", [0, 1, 2]), ("lume-mini", [0])])
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
    assert "--preset tofu-mini-smoke" in smoke and "--seeds 0,1,2" in smoke
    assert "harness check runs/smoke --against leaderboards/tofu-mini-smoke.csv" in smoke
    for name in ("tofu-mini", "tofu-mini-smoke"):
        assert f"cp runs/noise-{name}/tolerances.json leaderboards/{name}.tolerances.json" in readme
        assert f"leaderboards/{name}.environment.json" in readme


@pytest.mark.parametrize("name", ["tofu-mini", "tofu-mini-smoke"])
def test_references_carry_measured_tolerances_and_their_environment(name):
    board = read_leaderboard(BOARDS / f"{name}.csv")
    tolerances = json.loads((BOARDS / f"{name}.tolerances.json").read_text())
    assert tolerances["environments"] == ["default", "avx2", "avx512"]
    for column, entry in tolerances["metrics"].items():
        assert column in board.columns
        assert entry["tolerance"] >= max(3 * entry["sigma"], entry["spread"], entry["one_item"]) > 0
    environments = json.loads((BOARDS / f"{name}.environment.json").read_text())
    assert set(board["environment"]) <= set(environments)
    assert {env["aten_cpu_capability"] for env in environments.values()} == {"AVX2"}


def test_the_lock_file_pins_what_the_references_were_made_with():
    """constraints.txt pins every package exactly, torch to the CPU wheel, and the README installs with it."""
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins["torch"] == "2.13.0"
    environments = json.loads((BOARDS / "tofu-mini.environment.json").read_text()).values()
    for package in ("transformers", "tokenizers", "datasets", "lm_eval", "scipy", "scikit-learn", "pandas"):
        pinned = pins[package]
        assert all(env[package] == pinned for env in environments), package
        assert metadata.version(package) == pinned, f"{package}: installed without -c constraints.txt?"
    readme = (ROOT / "README.md").read_text()
    assert readme.count("pip install -c constraints.txt torch==2.13.0 && pip install -c constraints.txt -e") == 2
