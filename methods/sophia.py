"""SophiaG (Liu et al. 2023, reference code Liuhong99/Sophia) with optional per-parameter masks.

Hand-written because no library offers Sophia with masks. With mask M on a parameter (REFERENCES.md, SIMU
stage 2), the momentum, the Hessian EMA and the parameter (weight decay included) take their new value only
where M is true and keep their exact old bits elsewhere:

    m_t = M*m_t' + (1-M)*m_{t-1},  h_t = M*h_t' + (1-M)*h_{t-1},  theta_t = M*theta_t' + (1-M)*theta_{t-1}

Every update is element-wise, so on a sharded parameter (FSDP2's DTensor) it runs on this rank's shard
(`to_local()`, a view), with the states and the mask of that shard (a plain mask cannot index a DTensor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.sharding import local

HESSIAN_ESTIMATORS = ("gnb", "squared-grad")


class SophiaG(torch.optim.Optimizer):
    """Each step: `m = b1*m + (1-b1)*g; theta *= 1 - lr*wd; theta -= lr*sign(m)*min(|m|/(rho*bs*h + 1e-15), 1)`.

    `hessian="gnb"` (default): `h` is refreshed by `update_hessian()` from the gradient of a loss on labels
    sampled from the model's own logits (call `gnb_hessian_update` every k steps).
    `hessian="squared-grad"`: SOUL's released behaviour, `h` refreshed every step from the squared gradient of
    the objective itself. (SOUL's second difference, applying the momentum EMA twice, is not reproduced.)
    """

    def __init__(
        self,
        params,
        lr=1e-4,
        betas=(0.965, 0.99),
        rho=0.04,
        weight_decay=0.1,
        hessian="gnb",
        masks: dict[torch.Tensor, torch.Tensor] | None = None,
    ):
        if hessian not in HESSIAN_ESTIMATORS:
            raise ValueError(f"hessian={hessian!r}: expected one of {', '.join(HESSIAN_ESTIMATORS)}")
        super().__init__(params, dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay))
        self.hessian = hessian
        self.masks = dict(masks or {})

    def _state(self, p):
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros(())
            state["exp_avg"] = torch.zeros_like(local(p))
            state["hessian"] = torch.zeros_like(local(p))
        return state

    def _masked(self, p, new, old):
        """`new` where the parameter's mask is true, `old` (bit for bit) elsewhere (both this rank's shard)."""
        mask = self.masks.get(p)
        return new if mask is None else torch.where(mask, new, old)

    @torch.no_grad()
    def update_hessian(self) -> None:
        """`h = b2*h + (1-b2)*g*g` from the gradients now in `.grad` (those of the sampled-label loss for GNB)."""
        for group in self.param_groups:
            b2 = group["betas"][1]
            for p in group["params"]:
                if p.grad is not None:
                    h, g = self._state(p)["hessian"], local(p.grad)
                    h.copy_(self._masked(p, h * b2 + (1 - b2) * g * g, h))

    @torch.no_grad()
    def step(self, closure=None, bs: int = 1):
        """One update; `bs` is the number of tokens in the batch (it scales the Hessian in the clip)."""
        loss = closure() if closure is not None else None
        if self.hessian == "squared-grad":
            self.update_hessian()
        for group in self.param_groups:
            b1, lr, wd, rho = group["betas"][0], group["lr"], group["weight_decay"], group["rho"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p)
                state["step"] += 1
                m, h, theta = state["exp_avg"], state["hessian"], local(p)
                m.copy_(self._masked(p, m * b1 + (1 - b1) * local(p.grad), m))
                ratio = (m.abs() / (rho * bs * h + 1e-15)).clamp(max=1)
                new = theta * (1 - lr * wd) - lr * m.sign() * ratio
                theta.copy_(self._masked(p, new, theta))
        return loss


def gnb_hessian_update(model, optimizer: SophiaG, batches: list[dict], gather_grads=lambda: None) -> None:
    """Gauss-Newton-Bartlett estimate: sample labels from the model's own softmax at every real token of
    `batches`, backpropagate the mean cross-entropy against them, and fold the squared gradient into `h` once
    (`gather_grads` moves the model's gradients to what the optimizer steps: float32 masters, averaged)."""
    optimizer.zero_grad(set_to_none=True)
    for batch in batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[batch["attention_mask"].bool()].float()
        sampled = torch.distributions.Categorical(logits=logits.detach()).sample()
        (F.cross_entropy(logits, sampled) / len(batches)).backward()
    gather_grads()
    optimizer.update_hessian()
    optimizer.zero_grad(set_to_none=True)
