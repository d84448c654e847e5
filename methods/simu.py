"""SIMU (arXiv 2510.07822): attribution finds the forget set's critical MLP neurons, then masked Sophia on
GradDiff updates the attention projections fully and the MLP output projections only in those neurons. Both
stages are loss-agnostic: the `loss` option runs the masked Sophia on NPO instead (`simu-npo`)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import torch

from harness import distributed
from harness.rules import POSITIVE, UNIT, Rule, at_least, one_of
from methods import attribution
from methods.base import UnlearnReport
from methods.losses import npo_loss
from methods.npo import frozen_copy
from methods.settings import setting
from methods.simu_report import masks_summary
from methods.so_graddiff import SOGradDiff, SOGradDiffConfig

LOSSES = one_of("graddiff", "npo")
NO_LORA = Rule(
    lambda v: v == 0,
    "0: SIMU updates the base weights' critical down_proj columns, which a low-rank adapter's update does not "
    "confine itself to (for Sophia on LoRA adapters: so-graddiff-lora)",
)


@dataclass(frozen=True)
class SIMUConfig(SOGradDiffConfig):
    """Stage 1 (m, t, mask kind, attribution mode) then SO-GradDiff's recipe on the masked parameters; `lr`
    from the README's rule (it trains fewer weights than SO, and the rule picks a larger rate)."""

    lr: float = 3.1623e-4
    m: int = setting(5, at_least(1), "integrated-gradient steps")
    t: float = setting(0.3, UNIT, "per-layer threshold, as a share of the layer's top score")
    mask: str = setting("dual", one_of("dual", "forget-only"), "forget-critical less retain-critical, or forget's")
    attribution: str = setting("exact", one_of("exact", "fast"), "exact IG, or one pass per row")
    objective: str = setting("prob", one_of("prob", "logprob"), "what is attributed")
    retain_attribution_rows: int = setting(0, at_least(0), "retain rows attributed (0: as many as forget)")
    reuse_attribution: bool = setting(False, help="reuse stage-1 scores in this process", sweep=True)
    attribution_chunk: int = setting(
        256, at_least(1), "tokens per attribution pass (memory, not figures)", hashed=False
    )
    loss: str = setting("graddiff", LOSSES, "the unlearning loss", legacy="graddiff")  # added later: GradDiff
    beta: float = setting(0.1, POSITIVE, "NPO's inverse temperature (loss=npo)", legacy=0.1)  # as before
    lora_r: int = setting(0, NO_LORA, "no LoRA: SIMU's masks address the base weights", legacy=0)


class SIMU(SOGradDiff):
    settings = SIMUConfig

    def setup(self, model, tokenizer, forget, retain) -> None:
        """Stage 1: the critical neurons of the forget set and of a retain sample, combined into the mask."""
        from harness.models import weights_digest  # with transformers: here, so `--set simu.*` checks fast

        o, start = self.cfg, time.perf_counter()
        self.reused = 0
        self.weights_digest = weights_digest(model) if o.reuse_attribution else None  # stage 1 changes none
        self.forget_critical = attribution.critical_neurons(self.attribute(model, tokenizer, forget), o.t)
        retain_sample = self.retain_sample(forget, retain)
        self.retain_critical = attribution.critical_neurons(self.attribute(model, tokenizer, retain_sample), o.t)
        self.neurons = attribution.simu_masks(self.forget_critical, self.retain_critical, o.mask)
        distributed.check_same(self.neurons, "SIMU mask")  # scores are reduced over ranks, so masks agree
        self.attribution_seconds = time.perf_counter() - start
        self.reference = frozen_copy(model) if o.loss == "npo" else None

    def model_copies(self) -> int:
        return 2 if self.cfg.loss == "npo" else 1

    def frozen_models(self) -> list[torch.nn.Module]:
        return [self.reference] if self.reference is not None else []

    def setup_memory(self) -> tuple[float, str]:
        return attribution.CACHE_BUDGET, "stage-1 attribution's cached states"

    def loss(self, model, forget_batch, retain_batch):
        """GradDiff (the default), or NPO against the model as stage 1 found it, with `gamma` and `beta`."""
        if self.cfg.loss == "npo":
            return npo_loss(model, self.reference, forget_batch, retain_batch, self.cfg.beta, self.cfg.gamma)
        return super().loss(model, forget_batch, retain_batch)

    def finish(self, model, report: UnlearnReport) -> None:
        """The mask's size as columns and the masks as files (both declared in methods/simu_report.py)."""
        o = self.cfg
        critical = sum(int(n.sum()) for n in self.neurons)
        total = sum(n.numel() for n in self.neurons)
        attention = sum(p.numel() for p in attribution.attention_parameters(model))
        report.trainable_params = attention + sum(
            int(mask.expand(weight.shape).sum())  # what can move (the whole weight's, sharded or not)
            for weight, mask in self.masks.items()
        )
        report.extra.update(
            {
                "simu_critical_neurons": critical,
                "simu_critical_fraction": critical / total,
                "simu_shared_neurons": sum(
                    int((f & r).sum()) for f, r in zip(self.forget_critical, self.retain_critical)
                ),
                "simu_attribution_seconds": self.attribution_seconds,
                "simu_attribution_reused": self.reused,
            }
        )
        report.artifacts.update(
            {
                "masks.pt": {p.name: n.cpu() for p, n in zip(self.projections, self.neurons)},
                "masks.json": masks_summary(self.neurons, o),
            }
        )

    def attribute(self, model, tokenizer, rows) -> list[torch.Tensor]:
        """Stage-1 scores of `rows`. With `reuse_attribution`, scores already computed in this process for
        the same weights, rows and stage-1 options are reused: they do not depend on lr, so an lr sweep
        attributes once per retain sample instead of once per cell (`simu_attribution_reused` counts it)."""
        o = self.cfg
        compute = lambda: attribution.attribute(  # noqa: E731
            model,
            tokenizer,
            rows,
            m=o.m,
            mode=o.attribution,
            objective=o.objective,
            template=self.cfg.template,
            chunk=o.attribution_chunk,
        )
        if not o.reuse_attribution:
            return compute()
        stage1 = [self.weights_digest, rows, o.m, o.attribution, o.objective, self.cfg.template]
        key = hashlib.blake2b(json.dumps(stage1, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()
        self.reused += key in _ATTRIBUTIONS
        if key not in _ATTRIBUTIONS:
            _ATTRIBUTIONS[key] = compute()
        return [s.clone() for s in _ATTRIBUTIONS[key]]

    def retain_sample(self, forget, retain) -> list[dict]:
        """Retain rows for the retain attribution: a seeded random sample as large as the forget set
        (`retain_attribution_rows` > 0 sets another size), since attributing all of retain costs ~10x more."""
        n = self.cfg.retain_attribution_rows or len(forget)
        picks = torch.randperm(len(retain))[:n].tolist() if distributed.is_main() else None
        return [retain[i] for i in distributed.share(picks)]  # one sample for every rank

    def trainable_parameters(self, model) -> list[torch.nn.Parameter]:
        """Attention projections in full, plus the output projections' weights (masked by the optimizer)."""
        self.projections = attribution.output_projections(model)
        return attribution.attention_parameters(model) + [p.module.weight for p in self.projections]

    def optimizer_masks(self) -> dict:
        """Each output projection's float32 master, masked to its critical neurons' weights."""
        self.masks = {
            self.weights.master(p.module.weight): p.weight_mask(n) for p, n in zip(self.projections, self.neurons)
        }
        return self.masks


_ATTRIBUTIONS: dict[str, list[torch.Tensor]] = {}  # in-process only: nothing stale survives a code change
