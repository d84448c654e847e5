"""Unlearning losses (REFERENCES.md): GradDiff, gradient ascent, NPO and SimNPO, as open-unlearning computes
them. Each returns the loss and its forget and retain answer NLLs (token means, detached) for logging."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.data.collate import IGNORE


def answer_nll(model, batch) -> torch.Tensor:
    """Token-mean NLL over the answer tokens (labels are -100 elsewhere)."""
    return model(**batch).loss


def sequence_nll(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed NLL of its answer tokens (-log pi(y|x)) and how many there are, from float32
    log-probabilities (open-unlearning's `compute_batch_nll`)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none").sum(-1)
    return nll, (labels != IGNORE).sum(-1)


def graddiff_loss(model, forget_batch, retain_batch, gamma: float):
    """GradDiff: `-L_forget + gamma * L_retain`."""
    forget_nll = answer_nll(model, forget_batch)
    retain_nll = answer_nll(model, retain_batch)
    return -forget_nll + gamma * retain_nll, forget_nll.detach(), retain_nll.detach()


def grad_ascent_loss(model, forget_batch):
    """Gradient ascent: `-L_forget`, no retain term (the retain NLL is not computed: 0.0 is logged)."""
    forget_nll = answer_nll(model, forget_batch)
    return -forget_nll, forget_nll.detach(), 0.0


def npo_loss(model, reference, forget_batch, retain_batch, beta: float, gamma: float):
    """NPO (Zhang et al. 2024): `-(2/beta) log sigmoid(-beta log(pi_theta(y|x) / pi_ref(y|x)))` over the forget
    rows, mean over rows, with log pi the summed answer log-probability and `reference` the frozen model
    before unlearning; plus `gamma * L_retain` as open-unlearning's NPO adds it."""
    nll, tokens = sequence_nll(model, forget_batch)
    with torch.no_grad():
        reference_nll, _ = sequence_nll(reference, forget_batch)
    log_ratio = reference_nll - nll  # log pi_theta - log pi_ref
    forget_loss = -2 / beta * F.logsigmoid(-beta * log_ratio).mean()
    retain_nll = answer_nll(model, retain_batch)
    return forget_loss + gamma * retain_nll, (nll.sum() / tokens.sum()).detach(), retain_nll.detach()


def simnpo_loss(model, forget_batch, retain_batch, beta: float, delta: float, forget_weight: float, gamma: float):
    """SimNPO (Fan et al. 2024): `-(2/beta) log sigmoid(beta (NLL(y|x)/|y| - delta))` over the forget rows, no
    reference model, the NLL normalised by the answer's length; `forget_weight` times that plus
    `gamma * L_retain`, as open-unlearning's SimNPO (its delta is the paper's margin gamma over beta)."""
    nll, tokens = sequence_nll(model, forget_batch)
    forget_loss = -2 / beta * F.logsigmoid(beta * (nll / tokens - delta)).mean()
    retain_nll = answer_nll(model, retain_batch)
    return forget_weight * forget_loss + gamma * retain_nll, (nll.sum() / tokens.sum()).detach(), retain_nll.detach()
