"""SO-GradDiff (SOUL): the GradDiff loss with the Sophia second-order optimizer, every parameter trainable."""

from __future__ import annotations

import torch

from harness import distributed
from harness.data.collate import IGNORE
from harness.rules import FRACTION, POSITIVE, at_least, one_of
from methods.base import UnlearningMethod
from methods.sophia import SophiaG, gnb_hessian_update


class SOGradDiff(UnlearningMethod):
    """SOUL's SO recipe: Sophia with betas (0.9, 0.95), rho 0.04, gamma 2; `lr` from the README's rule."""

    defaults = {"gamma": 2.0, "lr": 1.7783e-4,
                "options": {"rho": 0.04, "beta1": 0.9, "beta2": 0.95, "hessian": "gnb", "hessian_every": 10}}
    rules = UnlearningMethod.rules | {"rho": POSITIVE, "beta1": FRACTION, "beta2": FRACTION,
                                      "hessian": one_of("gnb", "squared-grad"), "hessian_every": at_least(1)}

    def make_optimizer(self, params, masks=None):
        o = self.cfg.options
        return SophiaG(params, lr=self.cfg.lr, betas=(o["beta1"], o["beta2"]), rho=o["rho"],
                       weight_decay=self.cfg.weight_decay, hessian=o["hessian"], masks=masks)

    def optimizer_step(self, model, optimizer, params, batches) -> None:
        """Sophia step scaled by the step's supervised tokens (`bs`: those of every micro-batch it accumulated,
        on every rank, as the reference's batch_size x grad_accum x world x block_size); after every k-th step
        a GNB Hessian refresh on the step's forget and retain inputs (in "gnb" mode), as the reference code does
        after iteration k-1, its gradients averaged over the ranks like the loss's."""
        self.weights.gather_grads()
        if self.cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        tokens = sum((b["labels"] != IGNORE).sum() for pair in batches for b in pair)
        optimizer.step(bs=int(distributed.all_reduce(tokens.float(), "sum")))
        self.weights.write_back()
        optimizer.zero_grad(set_to_none=True)
        steps = int(optimizer.state[params[0]]["step"])
        if optimizer.hessian == "gnb" and steps % self.cfg.options["hessian_every"] == 0:
            gnb_hessian_update(model, optimizer, [b for pair in batches for b in pair], self.weights.gather_grads)
