"""Membership-inference attacks (LOSS, zlib, Min-K%, Min-K%++, GradNorm, and the reference-model attack),
their AUC (scikit-learn) and privleak.

Whose definitions: open-unlearning's (`src/evals/metrics/mia/`, commit d3d7cf9), statistic for statistic and
token for token (the token sets: evaluators/scoring.py). Orientation: members (the forget set) are labelled 1
and non-members (holdout) 0, and every attack score is "higher means more likely a member" (each statistic
below is negated where a member's is lower); open-unlearning labels members 0 and keeps the statistics'
signs, so the two AUCs are the same number. An AUC of 1 means the model separates its training data
perfectly and 0.5 means not at all.
"""

from __future__ import annotations

import zlib

import numpy as np
from sklearn.metrics import roc_auc_score

ATTACKS = ("loss", "zlib", "min_k", "min_k_pp", "gradnorm")  # the model's own; `reference` also needs the retain model
MIN_K_PP_VARIANCE_FLOOR = 1e-6  # open-unlearning's `torch.clamp(sigma, min=1e-6)` on the variance


def loss_score(avg_nll: float) -> float:
    """LOSS (Yeom et al. 2018): a member has low average NLL, so the score is its negation."""
    return -avg_nll


def zlib_score(avg_nll: float, text: str) -> float:
    """zlib (Carlini et al. 2021): avg NLL over the zlib-compressed length of the text, negated. The text is
    the labelled tokens decoded without special tokens (`label_text`), as open-unlearning forms it: under
    the `qa` template it begins with the space before the answer, which changes most compressed lengths."""
    return -avg_nll / len(zlib.compress(text.encode("utf-8")))


def _lowest_mean(values, k: float) -> float:
    """Mean of the lowest `max(1, int(k * n))` values, as Shi et al. and open-unlearning count them; 0 for an
    answer with no tokens before its EOS (open-unlearning's score then)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    return float(values[: max(1, int(k * len(values)))].mean()) if len(values) else 0.0


def min_k_score(token_logprobs, k: float = 0.4) -> float:
    """Min-K% (Shi et al. 2024): the mean of the lowest k fraction of token log-probs (higher = member)."""
    return _lowest_mean(token_logprobs, k)


def min_k_pp_score(token_logprobs, token_means, token_variances, k: float = 0.4) -> float:
    """Min-K%++ (Zhang et al. 2024): Min-K% over log-probs z-scored by the mean and std of log p under the
    model's own next-token distribution at each position, the variance floored at 1e-6 as open-unlearning's."""
    stds = np.sqrt(np.maximum(np.asarray(token_variances, dtype=np.float64), MIN_K_PP_VARIANCE_FLOOR))
    return _lowest_mean((np.asarray(token_logprobs) - np.asarray(token_means)) / stds, k)


def gradnorm_score(gradient_norm: float) -> float:
    """GradNorm (Wang et al. 2024): a member's loss is flatter, so its gradient smaller; the score is the mean
    per-parameter gradient norm (evaluators/scoring.py `gradient_norms`), negated."""
    return -gradient_norm


def reference_score(avg_nll: float, reference_avg_nll: float) -> float:
    """The reference-model attack (Carlini et al. 2022's calibrated LOSS, open-unlearning's `ReferenceAttack`):
    the model's average NLL minus the retain model's on the same item, negated."""
    return -(avg_nll - reference_avg_nll)


def attack_scores(scored: dict, gradient_norm: float | None, k: float) -> dict[str, float]:
    """Every attack's score for one teacher-forced item (see `evaluators.scoring.score_answers`); GradNorm's
    when its gradient norm was measured."""
    scores = {
        "loss": loss_score(scored["avg_nll"]),
        "zlib": zlib_score(scored["avg_nll"], scored["label_text"]),
        "min_k": min_k_score(scored["token_logprobs"], k),
        "min_k_pp": min_k_pp_score(scored["token_logprobs"], scored["token_means"], scored["token_variances"], k),
    }
    if gradient_norm is not None:
        scores["gradnorm"] = gradnorm_score(gradient_norm)
    return scores


def auc(member_scores: list[float], nonmember_scores: list[float]) -> float:
    """`roc_auc_score([1]*members + [0]*nonmembers, scores)`."""
    labels = [1] * len(member_scores) + [0] * len(nonmember_scores)
    return float(roc_auc_score(labels, list(member_scores) + list(nonmember_scores)))


def privleak(auc_model: float, auc_reference: float) -> float:
    """MUSE's PrivLeak: `((1-AUC) - (1-AUC_ref)) / (1-AUC_ref) * 100`, the reference being the retain model.
    0 means the model leaks as much as one never trained on the forget set. open-unlearning's 1e-10 in the
    denominator keeps it finite when the reference AUC is 1."""
    return ((1 - auc_model) - (1 - auc_reference)) / (1 - auc_reference + 1e-10) * 100


def mia_score(auc_value: float) -> float:
    """LUME's MIA score `1 - 2|AUC - 0.5|`: 1 when the attack is at chance."""
    return 1 - 2 * abs(auc_value - 0.5)
