"""Slow: the README's main job on the default embedded benchmark (run with `python -m pytest -m slow`)."""

import pandas as pd
import pytest

from harness.cli import main


@pytest.mark.slow
def test_default_benchmark_target_knows_and_fo_graddiff_forgets(tmp_path):
    assert (
        main(
            ["run", "--methods", "fo-graddiff", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]
        )
        == 0
    )
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv").set_index("method")
    target, fo = board.loc["target"], board.loc["fo-graddiff"]
    assert target["forget_em_contains"] >= 0.9 and target["retain_em_contains"] >= 0.9
    assert target["forget_em_contains"] - fo["forget_em_contains"] >= 0.5
