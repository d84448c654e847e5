"""Unlearning curves (`eval.every`) and early stopping (`eval.stop_at`) on the micro world: a curve changes no
figure of its row, a stop rule stops the cell where it says, `harness plot` draws the curves."""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from harness.cli import main
from harness.curves import POINT_COLUMNS, StopRule

ROW_COLUMNS_THAT_VARY = ("_seconds", "_gib")  # times and memory differ from run to run; nothing else may


def test_a_curve_changes_no_figure_of_its_row(micro_run, tmp_path):
    """The smoke run's fo-graddiff cell, run again with eval.every (it is done, but without its curve): the same
    row, hash and weights digest, and a curve from step 0 to the last step. Same kernels and threads as the smoke
    run."""
    out = tmp_path / "run"
    shutil.copytree(micro_run / "run", out, ignore=shutil.ignore_patterns("models", "plots"))
    command = [sys.executable, "-m", "harness", "run", "--preset", "tofu-mini-smoke", "--methods", "fo-graddiff"]
    command += ["--seeds", "0", "--out", str(out), "--cache-dir", str(micro_run / "cache")]
    command += ["--set", "eval.every=3", "--set", "eval.curve_items=8"]
    env = os.environ | {"ATEN_CPU_CAPABILITY": "default"}  # and the smoke run's threads: on some CPUs 1 and 2
    done = subprocess.run(command, env=env, capture_output=True, text=True)  # threads train other weights
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fo-graddiff-seed0: done, but without its curve; running it again to draw it" in done.stderr
    before = pd.read_json(micro_run / "run" / "results" / "fo-graddiff-seed0.json", typ="series")
    after = pd.read_json(out / "results" / "fo-graddiff-seed0.json", typ="series")
    same = [k for k in before.index if not k.endswith(ROW_COLUMNS_THAT_VARY) and k != "environment"]  # threads
    assert after[same].equals(before[same]), [k for k in same if after[k] != before[k]]  # hash, digest too
    curve = pd.read_csv(out / "curves" / "fo-graddiff-seed0.csv")
    assert list(curve.columns[: len(POINT_COLUMNS)]) == list(POINT_COLUMNS)
    steps = int(before["steps"])
    assert list(curve["step"]) == sorted({0, *range(3, steps + 1, 3), steps})
    assert curve["forget_em_contains"].iloc[0] == 1.0 and curve["loss"].iloc[1:].notna().all()
    assert (curve["lr"].iloc[1:] > 0).all() and "forget_quality" in curve and "mia_gradnorm_auc" not in curve


def test_a_stop_rule_stops_the_cell_and_the_plot_draws_its_curve(micro_cache, micro_run, tmp_path, figure_stats):
    out = tmp_path / "run"
    rule = "forget_em_contains<=0.5"
    args = ["run", "--preset", "tofu-mini-smoke", "--methods", "fo-graddiff,so-graddiff", "--seeds", "0,1"]
    args += [
        "--out",
        str(out),
        "--cache-dir",
        str(micro_cache),
        "--set",
        "eval.every=1",
        "--set",
        f"eval.stop_at={rule}",
    ]
    assert main(args) == 0
    board = pd.read_csv(out / "leaderboard.csv").set_index(["method", "seed"])
    full = pd.read_csv(micro_run / "run" / "leaderboard.csv").set_index(["method", "seed"])
    for cell in ("fo-graddiff", 0), ("so-graddiff", 1):
        curve = pd.read_csv(out / "curves" / f"{cell[0]}-seed{cell[1]}.csv")
        stopped = board.loc[cell, "stopped_at_step"]
        assert stopped == board.loc[cell, "steps"] == curve["step"].iloc[-1] < full.loc[cell, "steps"]
        assert StopRule.parse(rule).met(curve.iloc[-1].to_dict())
        assert not any(StopRule.parse(rule).met(p.to_dict()) for _, p in curve.iloc[1:-1].iterrows())
        assert board.loc[cell, "config_hash"] != full.loc[cell, "config_hash"]  # the rule changed the model
    assert main(["plot", str(out)]) == 0
    width, height, inked, colours = figure_stats(out / "plots" / "curves.png")
    assert width > 2 * height and inked > 0.02 and colours > 20


@pytest.mark.parametrize(
    "setting, message",
    [
        ("eval.every=0", "--set eval.every=0: expected a number of optimizer steps >= 1, or epoch"),
        ("eval.curve_items=-1", "--set eval.curve_items=-1: expected an integer >= 0"),
        ("eval.stop_at=forget<1", "--set eval.stop_at=forget<1: expected METRIC<=V, METRIC>=V"),
    ],
)
def test_bad_curve_settings_are_one_line(setting, message, tmp_path, capsys):
    assert main(["run", "--methods", "npo", "--set", setting, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_stop_rule_needs_points_a_column_and_for_muse_a_retain_model(tmp_path, capsys):
    out = ["--out", str(tmp_path / "o")]
    assert main(["run", "--methods", "npo", "--set", "eval.stop_at=muse", *out]) == 2
    assert "a stop rule is checked at curve points: set eval.every" in capsys.readouterr().err
    assert main(["run", "--methods", "npo", "--set", "eval.every=5", "--set", "eval.stop_at=nonsense>=1", *out]) == 2
    assert "nonsense is no declared column" in capsys.readouterr().err
    lume = ["--benchmark", "lume-mini", "--set", "eval.every=5", "--set", "eval.stop_at=muse"]
    assert main(["run", "--methods", "npo", *lume, *out]) == 2
    assert "MUSE's rule compares with the retain model; --benchmark lume-mini has none" in capsys.readouterr().err
    assert main(["run", "--methods", "npo", "--set", "eval.every=5", "--shard", "fsdp", *out]) == 2
    assert "curve points (eval.every) are taken on an unsharded model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_muse_is_the_loss_attack_reaching_the_retain_model():
    assert str(StopRule.parse("privleak_loss>=0")) == "privleak_loss>=0"
    rule = StopRule.parse("privleak_loss>=0")
    assert not rule.met({"privleak_loss": -100.0}) and rule.met({"privleak_loss": 3.0}) and not rule.met({})
