"""Our TOFU evaluation against the figures open-unlearning's own code printed on the same committed fixture
(tests/fixtures/open_unlearning: two tiny Llama models, a few authors in TOFU's files; its README says which
commit of open-unlearning made `expected/` and with what command). Needs no open-unlearning at run time.

Every figure both tools report is compared within 1e-5, and every generation must be the same string; what
is not compared is listed in NOT_COMPARED with its reason."""

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main as harness

FIXTURE = Path(__file__).parent / "fixtures" / "open_unlearning"
TOLERANCE = 1e-5

# open-unlearning's metric (its TOFU_SUMMARY.json key) -> our column
OURS = {
    "forget_Q_A_Prob": "forget_prob",
    "forget_Q_A_ROUGE": "forget_rougeL_recall",
    "forget_Q_A_PARA_Prob": "forget_prob_paraphrased",
    "forget_Q_A_PERT_Prob": "forget_prob_perturbed",
    "forget_truth_ratio": "forget_truth_ratio",
    "forget_truth_ratio_prob_mean": "forget_truth_ratio_prob_mean",
    "forget_quality": "forget_quality",
    "exact_memorization": "forget_em_token",
    "extraction_strength": "forget_extraction_strength",
    "retain_exact_memorization": "retain_em_token",
    "retain_extraction_strength": "retain_extraction_strength",
    "mia_loss": "mia_loss_auc",
    "mia_zlib": "mia_zlib_auc",
    "mia_min_k": "mia_min_k_auc",
    "mia_min_k_plus_plus": "mia_min_k_pp_auc",
    "mia_gradnorm": "mia_gradnorm_auc",
    "mia_reference": "mia_reference_auc",
    "privleak": "privleak_min_k",
    "model_utility": "model_utility",
    "retain_Q_A_Prob": "retain_prob",
    "retain_Q_A_PARA_Prob": "retain_prob_paraphrased",
    "retain_Q_A_PERT_Prob": "retain_prob_perturbed",
    "ra_Q_A_Prob": "real_authors_prob_unnormalised",
    "ra_Q_A_Prob_normalised": "real_authors_prob",
    "wf_Q_A_Prob": "world_facts_prob_unnormalised",
    "wf_Q_A_Prob_normalised": "world_facts_prob",
    **{
        f"{ou}_{metric}": f"{ours}_{column}"
        for ou, ours in (("retain", "retain"), ("ra", "real_authors"), ("wf", "world_facts"))
        for metric, column in (
            ("Q_A_ROUGE", "rougeL_recall"),
            ("Truth_Ratio", "truth_ratio"),
            ("truth_ratio_prob_mean", "truth_ratio_prob_mean"),
        )
    },
}
NOT_COMPARED = {
    ("retain", "privleak"): "open-unlearning's retain run has no retain logs, so it uses its default reference "
    "AUC of 0.5; ours scores the retain row against itself (0)",
    ("retain", "mia_reference"): "the retain model as its own reference: open-unlearning reports 0.5, we leave it out",
    ("retain", "forget_quality"): "open-unlearning's retain run has no retain logs (None)",
}
GENERATED = {
    "forget": "forget_Q_A_ROUGE",
    "retain": "retain_Q_A_ROUGE",
    "real_authors": "ra_Q_A_ROUGE",
    "world_facts": "wf_Q_A_ROUGE",
}


def expected(run: str, what: str = "SUMMARY") -> dict:
    return json.loads((FIXTURE / "expected" / f"{run}_TOFU_{what}.json").read_text())


def evaluate(out: Path, *reference: str) -> pd.DataFrame:
    data, target = FIXTURE / "data", FIXTURE / "target"
    args = ["eval", "--benchmark", "tofu", "--data", str(data), "--model", str(target), "--name", "fixture-target"]
    args += ["--template", "ou-base", "--out", str(out), *reference]
    assert harness(args) == 0
    return pd.read_csv(out / "leaderboard.csv").set_index("method")


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """Our rows for both fixture models: the retain model as the `retain` row, the target as a `model` row."""
    out = tmp_path_factory.mktemp("crosscheck")
    return evaluate(out, "--retain-model", str(FIXTURE / "retain")), out


@pytest.mark.parametrize("run,row", [("retain", "retain"), ("target", "fixture-target")])
def test_every_shared_figure_equals_open_unlearnings(ours, run, row):
    board, _ = ours
    compared = []
    for metric, value in expected(run).items():
        if (run, metric) in NOT_COMPARED:
            continue
        assert metric in OURS, f"open-unlearning reports {metric}: map it to our column or say why not"
        column = OURS[metric]
        assert board.loc[row, column] == pytest.approx(value, abs=TOLERANCE), (run, metric, column)
        compared.append(metric)
    assert len(compared) >= 32


@pytest.mark.parametrize("run,items", [("retain", "retain"), ("target", "fixture-target.model")])
def test_every_generation_is_open_unlearnings(ours, run, items):
    _, out = ours
    logs = expected(run, "EVAL")
    records = [json.loads(line) for line in (out / "results" / f"{items}.items.jsonl").open()]
    for split, metric in GENERATED.items():
        theirs = {int(i): v["generation"] for i, v in logs[metric]["value_by_index"].items()}
        mine = {i["index"]: i["generation"] for i in records if i["split"] == split}
        assert mine == theirs, split


def test_its_tofu_eval_json_as_the_retain_reference_gives_its_privleak_and_reference_attack(tmp_path):
    """`--retain-eval` of open-unlearning's TOFU_EVAL.json of the retain model: forget quality, privleak (its
    Min-K% AUC, now of our definition) and the reference-model attack (its per-item losses) come out as its
    own target run printed them."""
    board = evaluate(tmp_path, "--retain-eval", str(FIXTURE / "expected" / "retain_TOFU_EVAL.json"))
    target = expected("target")
    for metric in ("forget_quality", "privleak", "mia_reference"):
        assert board.loc["fixture-target", OURS[metric]] == pytest.approx(target[metric], abs=TOLERANCE), metric
