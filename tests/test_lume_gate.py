"""LUME's award gate: a submission counted only if its MMLU stayed above 75% of the model's before unlearning
(0.371 for the organisers' 7B), as columns on every LUME row."""

import pandas as pd
import pytest

from evaluators.lume import award_gate
from harness.config import build
from harness.metrics import metrics
from harness.registry import benchmarks
from harness.rules import SettingError

FIGURES = {"lume_task_aggregate": 0.5, "lume_mia_score": 0.8, "lmeval_mmlu_acc": 0.40}


def test_the_threshold_is_three_quarters_of_the_model_before_unlearning():
    assert award_gate(0.40, 0.495) == {"lume_mmlu_threshold": pytest.approx(0.37125), "lume_mmlu_pass": 1.0}
    assert award_gate(0.30, 0.495)["lume_mmlu_pass"] == 0.0
    assert award_gate(0.375, 0.5)["lume_mmlu_pass"] == 0.0  # "above" the threshold, as the organisers say
    assert award_gate(0.30, 0.495, share=0.5)["lume_mmlu_pass"] == 1.0


def gate(settings=None, before="none", metrics_=None):
    figures = dict(metrics_ or FIGURES)
    cfg = build("eval", benchmark="lume", data="d", models=["m"], settings=settings or {})
    reference = figures if before == "itself" else (None if before == "none" else before)
    return benchmarks["lume"]().final_metrics(figures, cfg, reference)


def test_a_row_is_gated_against_the_target_row():
    passing = gate(before={"lume_general": 0.495})
    assert passing["lume_mmlu_threshold"] == pytest.approx(0.37125) and passing["lume_mmlu_pass"] == 1.0
    failing = gate(before={"lume_general": 0.6})  # 0.40 is not above 0.45
    assert failing["lume_mmlu_pass"] == 0.0


def test_the_target_row_passes_its_own_gate():
    itself = gate(before="itself")
    assert itself["lume_mmlu_threshold"] == pytest.approx(0.75 * 0.40) and itself["lume_mmlu_pass"] == 1.0


def test_a_model_scored_without_its_target_takes_the_figure_given(capsys):
    given = gate(settings={"gate.mmlu_before": 0.495})
    assert given["lume_mmlu_threshold"] == pytest.approx(0.37125) and given["lume_mmlu_pass"] == 1.0


def test_without_a_model_before_unlearning_the_gate_is_left_out_with_a_note(capsys):
    figures = gate()
    assert "lume_mmlu_pass" not in figures and "lume_mmlu_threshold" not in figures
    assert "gate.mmlu_before" in capsys.readouterr().err


def test_the_gate_settings_are_checked_and_hashed_only_when_set():
    with pytest.raises(SettingError, match="gate.share"):
        build("run", benchmark="lume", data="d", model="m", settings={"gate.share": 0})
    lume = benchmarks["lume"]()
    assert "gate" not in lume.identity(build("run", benchmark="lume", data="d", model="m"))
    set_gate = build("run", benchmark="lume", data="d", model="m", settings={"gate.mmlu_before": 0.495})
    assert lume.identity(set_gate)["gate"]["mmlu_before"] == 0.495


def test_every_lume_row_carries_the_gate_against_its_target(lume_run):
    board = pd.read_csv(lume_run / "leaderboard.csv").set_index("method")
    threshold = 0.75 * board.loc["target", "lume_general"]
    assert board["lume_mmlu_threshold"].tolist() == pytest.approx([threshold] * len(board))
    assert board["lume_mmlu_pass"].tolist() == [float(g > threshold) for g in board["lume_general"]]
    assert board.loc["target", "lume_mmlu_pass"] == 1.0
    assert metrics.get("lume_mmlu_pass").better == "higher" and metrics.declared("lume_mmlu_threshold")
