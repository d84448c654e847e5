"""GradAscent: AdamW ascending the forget set's NLL, with no retain term (open-unlearning's GradAscent)."""

from __future__ import annotations

from methods.fo_graddiff import FOGradDiff
from methods.losses import grad_ascent_loss


class GradAscent(FOGradDiff):
    """FO-GradDiff's optimizer, schedule and settings on `-L_forget` alone (`gamma` is unused)."""

    def loss(self, model, forget_batch, retain_batch):
        return grad_ascent_loss(model, forget_batch)
