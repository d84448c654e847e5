"""Every metric function against small cases computed by hand."""

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from evaluators import mia, text
from evaluators.scoring import score_answers
from evaluators.tofu import answer_prob, normalised_prob
from harness.data import templates
from harness.metrics import Metric, metrics

# --- text metrics -------------------------------------------------------------------------------------------


def test_rouge_l_recall_is_lcs_over_gold_length():
    # LCS("the cat sat on the mat", "the cat sat") = 3 of the gold's 6 tokens
    assert text.rouge_l_recall("the cat sat on the mat", "the cat sat") == pytest.approx(0.5)
    assert text.rouge_l_recall("the cat sat", "the cat sat on the mat") == pytest.approx(1.0)


def test_rouge_l_uses_the_stemmer():
    assert text.rouge_l_recall("the cats ran", "the cat runs") == pytest.approx(2 / 3)  # cats->cat; ran!=run


def test_exact_match_variants():
    assert text.em_strict("Paris.", "  paris ") == 1.0
    assert text.em_strict("Paris", "Paris, France") == 0.0
    assert text.em_contains("Kaai was born in Maibri.", "Yes: Kaai was born in Maibri. He wrote") == 1.0
    assert text.em_contains("born in 1960", "born in 19601") == 0.0  # whole words only
    assert text.em_contains("", "anything") == 0.0


# --- probabilities and MIA ----------------------------------------------------------------------------------


def test_answer_prob_is_geometric_mean_token_probability():
    assert answer_prob({"nll_sum": 3 * math.log(2), "n_tokens": 3}) == pytest.approx(0.5)


def test_normalised_prob():
    half, quarter = {"nll_sum": math.log(2), "n_tokens": 1}, {"nll_sum": math.log(4), "n_tokens": 1}
    assert normalised_prob(half, [quarter, quarter]) == pytest.approx(0.5)


def test_auc_orientation_and_hand_case():
    assert mia.auc([3, 2], [1, 0]) == 1.0
    assert mia.auc([0, 1], [2, 3]) == 0.0
    assert mia.auc([1, 3], [2, 0]) == pytest.approx(0.75)  # 3 of 4 member/non-member pairs ordered right
    assert mia.loss_score(2.0) == -2.0  # low loss = member-like = high score


# --- teacher-forced scoring with a model whose probabilities are known --------------------------------------

V, EOS = 10, 9


class NextDigitLM(torch.nn.Module):
    """Puts logit ln(9) on token (x+1) mod 10 and 0 elsewhere: p(predicted) = 9/18, p(other) = 1/18."""

    def forward(self, input_ids, attention_mask=None, **_):
        logits = torch.zeros(*input_ids.shape, V)
        logits.scatter_(-1, ((input_ids + 1) % V).unsqueeze(-1), math.log(9))
        return SimpleNamespace(logits=logits)


class DigitTokenizer:
    """Each digit 0-8 is a token; EOS and pad are 9."""

    eos_token_id = pad_token_id = EOS

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [int(c) for c in text if c.isdigit()]}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(str(i) for i in ids if not (skip_special_tokens and i == EOS))


@pytest.fixture
def raw_template(monkeypatch):
    monkeypatch.setitem(templates.TEMPLATES, "raw", ("{q}", "{a}"))
    return "raw"


def test_score_answers_by_hand(raw_template):
    [s] = score_answers(NextDigitLM(), DigitTokenizer(), [("01", "23")], batch_size=4, template=raw_template)
    # the answer's NLL and probability count every labelled token, its EOS included (2 and 3 predicted,
    # p=1/2; EOS not, p=1/18)
    assert s["n_tokens"] == 3
    assert s["nll_sum"] == pytest.approx(2 * math.log(2) + math.log(18), rel=1e-5)
    assert answer_prob(s) == pytest.approx((1 / 72) ** (1 / 3), rel=1e-5)
    assert s["label_text"] == "23"  # the labelled tokens decoded, EOS skipped: what zlib compresses
    # the token-level figures drop the EOS, as open-unlearning's tokenwise_logprobs does
    assert s["token_logprobs"] == pytest.approx([-math.log(2), -math.log(2)], rel=1e-5)
    assert s["token_correct"] == [True, True]
    # Min-K%++ statistics of the next-token distribution (1/2 on one token, 1/18 on nine others)
    assert s["token_means"] == pytest.approx([(math.log(1 / 2) + math.log(1 / 18)) / 2] * 2, rel=1e-5)
    assert s["token_variances"] == pytest.approx([(math.log(9) / 2) ** 2] * 2, rel=1e-4)


def test_score_answers_ignores_padding(raw_template):
    pairs = [("01", "23"), ("5", "678")]
    together = score_answers(NextDigitLM(), DigitTokenizer(), pairs, batch_size=2, template=raw_template)
    alone = [score_answers(NextDigitLM(), DigitTokenizer(), [p], batch_size=1, template=raw_template)[0] for p in pairs]
    assert together == alone
    assert together[1]["token_correct"] == [True, True, True]  # 6, 7, 8 (EOS = 9 = 8 + 1, dropped)


# --- which way is better: one place, on Metric -------------------------------------------------------------


def test_badness_is_larger_when_worse_in_every_direction():
    values = pd.Series([0.1, 0.5, 0.8])
    assert Metric("x", "higher").badness(values).tolist() == [-0.1, -0.5, -0.8]
    assert Metric("x", "lower").badness(values).tolist() == [0.1, 0.5, 0.8]
    assert Metric("x", "half").badness(values).tolist() == pytest.approx([0.4, 0.0, 0.3])  # chance is best
    assert Metric("x", "zero").badness(-20.0) == 20.0 and Metric("x", "zero").badness(5.0) == 5.0
    assert Metric("x", "none").badness(values).tolist() == [0.0, 0.0, 0.0]  # a diagnostic: never bold


def test_gain_turns_lower_is_better_around_and_the_registry_delegates():
    assert Metric("x", "lower").gain(0.25) == 0.75 and Metric("x", "higher").gain(0.25) == 0.25
    assert metrics.gain("forget_em_contains", 0.25) == 0.75 and metrics.gain("retain_em_contains", 0.25) == 0.25


def test_declared_tells_a_declared_diagnostic_from_a_column_nobody_declared():
    assert metrics.declared("forget_quality") and metrics.declared("privleak_zlib")  # exact, then a pattern
    assert metrics.declared("simu_critical_neurons") and metrics.get("simu_critical_neurons").better == "none"
    assert not metrics.declared("utility_score") and metrics.get("utility_score").better == "none"
