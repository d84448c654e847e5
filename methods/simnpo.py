"""SimNPO (Fan et al. 2024, "Simplicity Prevails"): NPO without a reference model, the forget NLL normalised
by the answer's length and shifted by a margin; AdamW, plus the retain NLL, as open-unlearning's SimNPO."""

from __future__ import annotations

from dataclasses import dataclass

from harness.rules import NON_NEGATIVE, POSITIVE
from methods.fo_graddiff import FOGradDiff, FOGradDiffConfig
from methods.losses import simnpo_loss
from methods.settings import setting


@dataclass(frozen=True)
class SimNPOConfig(FOGradDiffConfig):
    """open-unlearning's SimNPO.yaml: beta 4.5, delta 0 (margin), forget weight 0.125, retain weight 1."""

    gamma: float = 1.0
    lr: float = 5.6234e-4
    beta: float = setting(4.5, POSITIVE, "inverse temperature")
    delta: float = setting(0.0, NON_NEGATIVE, "the margin")
    forget_weight: float = setting(0.125, POSITIVE, "the forget loss's weight")


class SimNPO(FOGradDiff):
    settings = SimNPOConfig

    def loss(self, model, forget_batch, retain_batch):
        c = self.cfg
        return simnpo_loss(model, forget_batch, retain_batch, c.beta, c.delta, c.forget_weight, c.gamma)
