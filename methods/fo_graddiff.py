"""FO-GradDiff: AdamW on the GradDiff loss (SOUL's first-order baseline)."""

from __future__ import annotations

import torch

from methods.base import UnlearningMethod


class FOGradDiff(UnlearningMethod):
    """All parameters trainable; AdamW with weight decay. `lr` chosen by the README's selection rule."""

    defaults = {"gamma": 0.3, "lr": 1e-4}

    def make_optimizer(self, params):
        return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
