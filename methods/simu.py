"""SIMU (arXiv 2510.07822): attribution finds the forget set's critical MLP neurons, then masked Sophia on
GradDiff updates the attention projections fully and the MLP output projections only in those neurons."""

from __future__ import annotations

import time

import torch

from harness.registry import register_method
from methods import attribution
from methods.base import UnlearnReport
from methods.so_graddiff import SOGradDiff


@register_method("simu")
class SIMU(SOGradDiff):
    """Stage 1 (m, t, mask kind, attribution mode) then SO-GradDiff's recipe on the masked parameters."""

    defaults = {**SOGradDiff.defaults,
                "options": {**SOGradDiff.defaults["options"], "m": 5, "t": 0.3, "mask": "dual",
                            "attribution": "exact", "objective": "prob",
                            "retain_attribution_rows": 0}}

    def unlearn(self, model, tokenizer, forget, retain) -> UnlearnReport:
        o, start = self.cfg.options, time.perf_counter()
        attribute = lambda rows: attribution.attribute(  # noqa: E731
            model, tokenizer, rows, m=o["m"], mode=o["attribution"], objective=o["objective"],
            template=self.cfg.template)
        forget_critical = attribution.critical_neurons(attribute(forget), o["t"])
        retain_critical = attribution.critical_neurons(attribute(self.retain_sample(forget, retain)), o["t"])
        self.neurons = attribution.simu_masks(forget_critical, retain_critical, o["mask"])
        attribution_seconds = time.perf_counter() - start
        report = super().unlearn(model, tokenizer, forget, retain)
        critical = sum(int(n.sum()) for n in self.neurons)
        total = sum(n.numel() for n in self.neurons)
        report.unlearn_seconds += attribution_seconds
        report.extra.update({"simu_critical_neurons": critical, "simu_critical_fraction": critical / total,
                             "simu_shared_neurons": sum(int((f & r).sum()) for f, r in
                                                        zip(forget_critical, retain_critical)),
                             "simu_attribution_seconds": attribution_seconds})
        report.artifacts.update({"masks.pt": {p.name: n for p, n in zip(self.projections, self.neurons)},
                                 "masks.json": {"per_layer_critical": [int(n.sum()) for n in self.neurons],
                                                "neurons_per_layer": [n.numel() for n in self.neurons],
                                                "mask": o["mask"], "m": o["m"], "t": o["t"],
                                                "attribution": o["attribution"]}})
        return report

    def retain_sample(self, forget, retain) -> list[dict]:
        """Retain rows for the retain attribution: a seeded random sample as large as the forget set
        (`retain_attribution_rows` > 0 sets another size), since attributing all of retain costs ~10x more."""
        n = self.cfg.options["retain_attribution_rows"] or len(forget)
        return [retain[i] for i in torch.randperm(len(retain))[:n].tolist()]

    def trainable_parameters(self, model) -> list[torch.nn.Parameter]:
        """Attention projections in full, plus the output projections' weights (masked by the optimizer)."""
        self.projections = attribution.output_projections(model)
        return attribution.attention_parameters(model) + [p.module.weight for p in self.projections]

    def make_optimizer(self, params, masks=None):
        masks = {p.module.weight: p.weight_mask(n) for p, n in zip(self.projections, self.neurons)}
        return super().make_optimizer(params, masks=masks)
