"""SimNPO (Fan et al. 2024, "Simplicity Prevails"): NPO without a reference model, the forget NLL normalised
by the answer's length and shifted by a margin; AdamW, plus the retain NLL, as open-unlearning's SimNPO."""

from __future__ import annotations

from harness.rules import NON_NEGATIVE, POSITIVE
from methods.fo_graddiff import FOGradDiff
from methods.losses import simnpo_loss


class SimNPO(FOGradDiff):
    """open-unlearning's SimNPO.yaml: beta 4.5, delta 0 (margin), forget weight 0.125, retain weight 1."""

    defaults = {"gamma": 1.0, "lr": 5.6234e-4, "options": {"beta": 4.5, "delta": 0.0, "forget_weight": 0.125}}
    rules = FOGradDiff.rules | {"beta": POSITIVE, "delta": NON_NEGATIVE, "forget_weight": POSITIVE}

    def loss(self, model, forget_batch, retain_batch):
        o = self.cfg.options
        return simnpo_loss(model, forget_batch, retain_batch, o["beta"], o["delta"], o["forget_weight"],
                           self.cfg.gamma)
