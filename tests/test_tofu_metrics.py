"""The full TOFU metric suite against hand-computed cases (REFERENCES.md, TOFU section)."""

import json
import math
import zlib

import numpy as np
import pytest
from scipy.stats import hmean, ks_2samp

from evaluators import mia
from evaluators.base import EvalResult
from evaluators.tofu import (
    RetainReference,
    lume_style_aggregate,
    model_utility,
    reference_metrics,
    truth_ratio,
    truth_ratio_stat,
)


def test_truth_ratio_is_perturbed_over_correct_probability():
    correct = {"avg_nll": 1.0}
    perturbed = [{"avg_nll": 2.0}, {"avg_nll": 3.0}]
    # R = exp(-mean(2, 3)) / exp(-1) = exp(-1.5): the model prefers the correct answer
    assert truth_ratio(correct, perturbed) == pytest.approx(math.exp(-1.5))


def test_truth_ratio_orientation_per_split():
    # forget: min(R, 1/R), so preferring either side by the same factor scores the same, and R=1 scores 1
    assert truth_ratio_stat("forget", [2.0, 0.5]) == pytest.approx(0.5)
    assert truth_ratio_stat("forget", [1.0]) == pytest.approx(1.0, abs=1e-9)  # open-unlearning: 1 / (R + 1e-10)
    # retain / real / world: max(0, 1 - R), rewarding a preference for the correct answer only
    assert truth_ratio_stat("retain", [0.25, 2.0]) == pytest.approx((0.75 + 0.0) / 2)
    assert truth_ratio_stat("world_facts", [0.5]) == pytest.approx(0.5)


def test_forget_quality_is_scipys_ks_pvalue_and_privleak_per_attack():
    model_ratios, retain_ratios = [0.2, 0.5, 0.9, 1.3, 2.0], [0.8, 1.0, 1.1, 1.2, 1.5, 3.0]
    items = [{"split": "forget", "truth_ratio_raw": r} for r in model_ratios] + [
        {"split": "retain", "truth_ratio_raw": 9}
    ]
    result = EvalResult({"mia_loss_auc": 0.7, "mia_min_k_auc": 0.5}, items)
    reference = RetainReference(retain_ratios, {"loss": 0.5, "min_k": 0.6}, "test")
    metrics = reference_metrics(result, reference)
    assert metrics["forget_quality"] == ks_2samp(model_ratios, retain_ratios).pvalue
    assert metrics["privleak_loss"] == pytest.approx(((1 - 0.7) - 0.5) / 0.5 * 100)  # -40: leaks more
    assert metrics["privleak_min_k"] == pytest.approx(((1 - 0.5) - 0.4) / 0.4 * 100)  # +25
    assert mia.privleak(0.8, 1.0) == pytest.approx(0.2 / 1e-10 * 100)  # open-unlearning's epsilon: finite


def test_model_utility_is_the_harmonic_mean_of_nine():
    values = {
        f"{s}_{m}": v
        for (s, m), v in zip(
            [
                (s, m)
                for s in ("retain", "real_authors", "world_facts")
                for m in ("prob", "rougeL_recall", "truth_ratio")
            ],
            [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
        )
    }
    assert model_utility(values) == pytest.approx(9 / sum(1 / v for v in [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]))
    assert model_utility(values | {"world_facts_truth_ratio": 0.0}) == 0.0


def test_lume_style_aggregate():
    m = {
        "forget_rougeL_recall": 0.2,
        "forget_em_contains": 0.5,
        "retain_rougeL_recall": 0.8,
        "retain_em_contains": 0.5,
        "mia_loss_auc": 0.75,
        "world_facts_em_contains": 0.9,
    }
    out = lume_style_aggregate(m)
    task = hmean([0.8, 0.5, 0.8, 0.5])
    assert out["lume_style_task_aggregate"] == pytest.approx(task)
    assert out["mia_score"] == pytest.approx(0.5)  # 1 - 2|0.75 - 0.5|
    assert out["lume_style_aggregate"] == pytest.approx((task + 0.5 + 0.9) / 3)


def test_min_k_and_min_k_plus_plus_on_known_vectors():
    logprobs = [-1.0, -5.0, -2.0, -0.5, -3.0]
    assert mia.min_k_score(logprobs, k=0.4) == pytest.approx((-5 - 3) / 2)  # the lowest 40%: two tokens
    assert mia.min_k_score(logprobs, k=0.1) == pytest.approx(-5)  # at least one token
    seven = [-7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0]  # int(0.4 * 7) = 2, not ceil = 3
    assert mia.min_k_score(seven, k=0.4) == pytest.approx((-7 - 6) / 2)
    means, stds = [-2.0] * 5, [1.0, 2.0, 1.0, 0.5, 1.0]
    z = [(lp - mu) / sd for lp, mu, sd in zip(logprobs, means, stds)]  # [1, -1.5, 0, 3, -1]
    variances = [sd**2 for sd in stds]
    assert mia.min_k_pp_score(logprobs, means, variances, k=0.4) == pytest.approx(np.mean(sorted(z)[:2]))
    # open-unlearning's floor: the variance at least 1e-6, so the std at least 1e-3
    assert mia.min_k_pp_score([-1.0], [-2.0], [0.0], k=0.4) == pytest.approx(1.0 / 1e-3)
    assert mia.min_k_score([], k=0.4) == 0.0  # an answer that is only its EOS


def test_zlib_and_loss_scores():
    text = "Jorcor Aiquilisa was born in Lumxan."
    assert mia.zlib_score(2.0, text) == pytest.approx(-2.0 / len(zlib.compress(text.encode())))
    assert mia.loss_score(2.0) == -2.0


def test_retain_reference_round_trip_and_open_unlearning_logs(tmp_path):
    ours = RetainReference([0.5, 1.5], {"loss": 0.55, "zlib": 0.5, "min_k": 0.52, "min_k_pp": 0.51}, "retain")
    ours.save(tmp_path / "retain.json")
    assert RetainReference.load(tmp_path / "retain.json").forget_truth_ratios == [0.5, 1.5]
    logs = {
        "forget_truth_ratio": {"agg_value": 0.6, "value_by_index": {"1": {"score": 1.5}, "0": {"score": 0.5}}},
        "mia_min_k": {"agg_value": 0.52},
        "mia_loss": {"agg_value": 0.55},
    }
    (tmp_path / "TOFU_EVAL.json").write_text(json.dumps(logs))
    loaded = RetainReference.load(tmp_path / "TOFU_EVAL.json")
    assert loaded.forget_truth_ratios == [0.5, 1.5] and loaded.mia_auc == {"loss": 0.55, "min_k": 0.52}
    (tmp_path / "bad.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match=r"--retain-eval .*bad.json: expected fields 'forget_truth_ratios'"):
        RetainReference.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="--retain-eval .*missing.json: no such file"):
        RetainReference.load(tmp_path / "missing.json")
