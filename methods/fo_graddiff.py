"""FO-GradDiff: AdamW on the GradDiff loss (SOUL's first-order baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import UnlearningMethod
from methods.settings import LoRAOptions, MethodConfig


@dataclass(frozen=True)
class FOGradDiffConfig(MethodConfig, LoRAOptions):
    """`lr` chosen by the README's selection rule; LoRA adapters with `lora_r` > 0."""

    gamma: float = 0.3
    lr: float = 1e-4


class FOGradDiff(UnlearningMethod):
    """All parameters trainable (or LoRA adapters); AdamW with weight decay."""

    settings = FOGradDiffConfig

    def make_optimizer(self, params):
        return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
