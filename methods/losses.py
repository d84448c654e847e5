"""Unlearning losses (REFERENCES.md, GradDiff)."""

from __future__ import annotations


def answer_nll(model, batch) -> "torch.Tensor":  # noqa: F821
    """Token-mean NLL over the answer tokens (labels are -100 elsewhere)."""
    return model(**batch).loss


def graddiff_loss(model, forget_batch, retain_batch, gamma: float):
    """GradDiff: `-L_forget + gamma * L_retain`; returns the loss and its two parts for logging."""
    forget_nll = answer_nll(model, forget_batch)
    retain_nll = answer_nll(model, retain_batch)
    return -forget_nll + gamma * retain_nll, forget_nll.detach(), retain_nll.detach()
