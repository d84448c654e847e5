"""NPO (Zhang et al. 2024, "Negative Preference Optimization"): AdamW on the NPO forget loss against a frozen
copy of the model before unlearning, plus the retain NLL, as open-unlearning's NPO."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from harness.rules import POSITIVE
from methods import lora
from methods.fo_graddiff import FOGradDiff, FOGradDiffConfig
from methods.losses import npo_loss
from methods.settings import setting


def frozen_copy(model) -> torch.nn.Module:
    """The reference model: a copy of `model` as it is now, in eval mode, taking no gradients."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


@dataclass(frozen=True)
class NPOConfig(FOGradDiffConfig):
    """open-unlearning's NPO.yaml: beta 0.1, forget and retain weights 1 (`gamma` is the retain weight)."""

    gamma: float = 1.0
    lr: float = 1e-3
    beta: float = setting(0.1, POSITIVE, "NPO's inverse temperature")


class NPO(FOGradDiff):
    settings = NPOConfig

    def model_copies(self) -> int:
        return 1 if lora.enabled(self.cfg) else 2

    def setup(self, model, tokenizer, forget, retain) -> None:
        """The reference: a frozen copy, or with LoRA none (the adapted model with its adapter off is the base)."""
        self.reference = None if lora.enabled(self.cfg) else frozen_copy(model)

    def frozen_models(self) -> list[torch.nn.Module]:
        return [] if self.reference is None else [self.reference]

    def loss(self, model, forget_batch, retain_batch):
        reference = lora.AdapterDisabled(model) if self.reference is None else self.reference
        return npo_loss(model, reference, forget_batch, retain_batch, self.cfg.beta, self.cfg.gamma)
