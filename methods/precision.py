"""Float32 master weights for a model held in bfloat16 or float16, as DeepSpeed's bf16 mode keeps them.

Hand-written because torch's optimizers update a parameter in its own dtype: a bf16 weight near 0.02 moves
in steps of about 1e-4, so the paper's 5e-6 updates would round away and nothing would unlearn, and
Sophia's Hessian EMA and momentum would lose what bf16 cannot hold. So the optimizer steps float32 copies
(its states are float32 too) and each step is written back rounded to the model's dtype. A weight the
update does not change (outside SIMU's mask) rounds back to its own bits.
"""

from __future__ import annotations

import torch

from harness import distributed


class MasterWeights:
    """The parameters an optimizer steps: the trainable parameters themselves when they are float32, else
    float32 copies of them; `gather_grads` before each step, `write_back` after it."""

    def __init__(self, params: list[torch.nn.Parameter]):
        self.pairs = [(p, p if p.dtype == torch.float32 else torch.nn.Parameter(p.detach().float())) for p in params]
        self._master = {id(p): m for p, m in self.pairs}

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [m for _, m in self.pairs]

    def master(self, param: torch.nn.Parameter) -> torch.nn.Parameter:
        """What the optimizer steps for a model parameter (for per-parameter settings such as SIMU's masks)."""
        return self._master[id(param)]

    def gather_grads(self) -> None:
        """The model's gradients as float32 master gradients, averaged over the ranks of a multi-process run."""
        for p, m in self.pairs:
            if m is not p and p.grad is not None:
                m.grad, p.grad = p.grad.float(), None
        distributed.average_gradients(self.params)

    @torch.no_grad()
    def write_back(self) -> None:
        for p, m in self.pairs:
            if m is not p:
                p.copy_(m)
