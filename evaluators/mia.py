"""Membership-inference scores and their AUC (scikit-learn).

Orientation: members are labelled 1, non-members 0, and every score is "higher means more likely a
member", so an AUC of 1 means the model separates its training data perfectly and 0.5 means not at all.
"""

from __future__ import annotations

from sklearn.metrics import roc_auc_score


def loss_score(avg_nll: float) -> float:
    """LOSS attack: a member has low loss, so the score is the negated average NLL."""
    return -avg_nll


def auc(member_scores: list[float], nonmember_scores: list[float]) -> float:
    """`roc_auc_score([1]*members + [0]*nonmembers, scores)`."""
    labels = [1] * len(member_scores) + [0] * len(nonmember_scores)
    return float(roc_auc_score(labels, list(member_scores) + list(nonmember_scores)))
