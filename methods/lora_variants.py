"""The LoRA variants of the full-update methods, registered under their own names (`so-graddiff-lora`, ...) so
that their rows sit beside full fine-tuning's in one leaderboard, sweep and matched table (`--set
so-graddiff.lora_r=8` trains the same adapters, but its rows are named `so-graddiff`). Each is its method with
LoRA on by default (SOUL's r 8, alpha 32, dropout 0.05 on q_proj and v_proj: methods/settings.py
`LoRAOptions`), every LoRA setting in the cell's hash, and its `lr` the one the tofu-mini sweep selected
(leaderboards/tofu-mini-lora.selected.toml: 9 rates, as every method gets, but a decade higher, 1e-4 to 1e-2,
since a LoRA update starts from B = 0). Nothing else differs, so they share one file rather than five copies
of it."""

from __future__ import annotations

from dataclasses import dataclass

from harness.rules import FRACTION, at_least
from methods.fo_graddiff import FOGradDiff, FOGradDiffConfig
from methods.grad_ascent import GradAscent
from methods.npo import NPO, NPOConfig
from methods.settings import LORA_TARGETS, setting
from methods.simnpo import SimNPO, SimNPOConfig
from methods.so_graddiff import SOGradDiff, SOGradDiffConfig


def _lora_on(cls, lr: float):
    """`cls` (a settings dataclass) with LoRA on by default and `lr` as its rate; new settings, so no legacy
    values: every LoRA field is hashed."""
    namespace = {
        "__annotations__": {"lr": float, "lora_r": int, "lora_alpha": int, "lora_dropout": float, "lora_targets": str},
        "__doc__": f"{cls.__name__[: -len('Config')]} with LoRA adapters (SOUL's defaults); `lr` from the sweep.",
        "__module__": __name__,
        "lr": setting(lr, cls.meta("lr", "rule"), "learning rate"),
        "lora_r": setting(8, at_least(1), "LoRA rank", legacy=None),
        "lora_alpha": setting(32, at_least(1), "LoRA's scale numerator (the update is alpha/r x BA)", legacy=None),
        "lora_dropout": setting(0.05, FRACTION, "dropout on the adapters' input", legacy=None),
        "lora_targets": setting("q_proj,v_proj", LORA_TARGETS, "modules given adapters, or all-linear", legacy=None),
    }
    return dataclass(frozen=True)(type(cls.__name__.replace("Config", "LoRAConfig"), (cls,), namespace))


class FOGradDiffLoRA(FOGradDiff):
    settings = _lora_on(FOGradDiffConfig, lr=1e-3)


class SOGradDiffLoRA(SOGradDiff):
    settings = _lora_on(SOGradDiffConfig, lr=1e-3)


class GradAscentLoRA(GradAscent):
    settings = _lora_on(FOGradDiffConfig, lr=1e-3)


class NPOLoRA(NPO):
    settings = _lora_on(NPOConfig, lr=5.6234e-3)


class SimNPOLoRA(SimNPO):
    settings = _lora_on(SimNPOConfig, lr=1e-2)
