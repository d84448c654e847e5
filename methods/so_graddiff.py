"""SO-GradDiff (SOUL): the GradDiff loss with the Sophia second-order optimizer, every parameter trainable (or,
with `lora_r` > 0, LoRA adapters: SOUL's `use_lora`)."""

from __future__ import annotations

from dataclasses import dataclass

from harness import distributed, sharding
from harness.data.collate import IGNORE
from harness.rules import FRACTION, POSITIVE, at_least, one_of
from methods.base import UnlearningMethod
from methods.settings import LoRAOptions, MethodConfig, setting
from methods.sophia import SophiaG, gnb_hessian_update


@dataclass(frozen=True)
class SOGradDiffConfig(MethodConfig, LoRAOptions):
    """SOUL's SO recipe: Sophia with betas (0.9, 0.95), rho 0.04, gamma 2; `lr` from the README's rule."""

    gamma: float = 2.0
    lr: float = 1.7783e-4
    rho: float = setting(0.04, POSITIVE, "Sophia's clipping threshold")
    beta1: float = setting(0.9, FRACTION, "momentum decay")
    beta2: float = setting(0.95, FRACTION, "Hessian EMA decay")
    hessian: str = setting("gnb", one_of("gnb", "squared-grad"), "the Hessian estimate")
    hessian_every: int = setting(10, at_least(1), "steps between Hessian refreshes")


class SOGradDiff(UnlearningMethod):
    settings = SOGradDiffConfig

    def optimizer_masks(self) -> dict | None:
        """Per-parameter update masks for Sophia (SIMU's neurons), each over its whole parameter; None: every
        element moves."""
        return None

    def make_optimizer(self, params):
        """Sophia over `params`, each mask cut to this rank's shard of its parameter (the whole of it unsharded)."""
        c = self.cfg
        masks = {p: sharding.local_mask(p, mask) for p, mask in (self.optimizer_masks() or {}).items()}
        return SophiaG(
            params,
            lr=c.lr,
            betas=(c.beta1, c.beta2),
            rho=c.rho,
            weight_decay=c.weight_decay,
            hessian=c.hessian,
            masks=masks,
        )

    def optimizer_step(self, model, optimizer, params, batches) -> None:
        """Sophia step scaled by the step's supervised tokens (`bs`: those of every micro-batch it accumulated,
        on every rank, as the reference's batch_size x grad_accum x world x block_size); after every k-th step
        a GNB Hessian refresh on the step's forget and retain inputs (in "gnb" mode), as the reference code does
        after iteration k-1, its gradients averaged over the ranks like the loss's."""
        self.weights.gather_grads()
        if self.cfg.max_grad_norm:
            sharding.clip_gradients(params, self.cfg.max_grad_norm)
        tokens = sum((b["labels"] != IGNORE).sum() for pair in batches for b in pair)
        optimizer.step(bs=int(distributed.all_reduce(tokens.float(), "sum")))
        self.weights.write_back()
        optimizer.zero_grad(set_to_none=True)
        steps = int(optimizer.state[params[0]]["step"])
        if optimizer.hessian == "gnb" and steps % self.cfg.hessian_every == 0:
            gnb_hessian_update(model, optimizer, [b for pair in batches for b in pair], self.weights.gather_grads)
