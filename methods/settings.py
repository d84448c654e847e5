"""A method's settings as a typed dataclass: each field's default, what it may be, and whether it enters the
cell's hash, declared once on the field (`setting(...)`), where `--set METHOD.KEY=V`, presets, `--grid`, the
hash and `harness run --help` all read it. No torch here: the configuration layer imports this module.

A method subclasses `MethodConfig` with its own fields and names it as its `settings`:

    @dataclass(frozen=True)
    class NPOConfig(FOGradDiffConfig):
        lr: float = 1e-3                           # a new default; the rule stays the parent's
        beta: float = setting(0.1, POSITIVE, "the preference temperature")
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from harness.rules import FRACTION, NON_NEGATIVE, POSITIVE, Rule, at_least

LORA_TARGETS = Rule(
    lambda v: (
        isinstance(v, str) and (v == "all-linear" or re.fullmatch(r"[A-Za-z_][\w.]*(,[A-Za-z_][\w.]*)*", v) is not None)
    ),
    "all-linear, or module names separated by commas (q_proj,v_proj)",
)

_UNSET = object()


def setting(default, rule: Rule | None = None, help: str = "", *, hashed: bool = True, legacy=_UNSET, sweep=_UNSET):
    """A settings field. `rule`: what its value may be (harness/rules.py). `hashed=False`: it changes time or
    memory, never a figure, so it is left out of the cell's hash. `legacy=V`: added after references were
    made, and left out of the hash while it is V, the value that behaves as before it existed (so those
    references' hashes stay valid; `legacy=None` in a subclass: always hashed). `sweep=V`: its default inside `harness sweep`."""
    meta = {"help": help, "hashed": hashed} | ({"rule": rule} if rule else {})
    meta |= {} if legacy is _UNSET else {"legacy": legacy}
    meta |= {} if sweep is _UNSET else {"sweep": sweep}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class MethodConfig:
    """What every GradDiff-style method takes (REFERENCES.md, the SOUL recipe). A method's own settings
    subclass it; the fields here are the shared ones, the subclass's its options."""

    lr: float = setting(1e-4, POSITIVE, "learning rate")
    epochs: int = setting(5, at_least(1), "passes over the forget set")
    batch_size: int = setting(4, at_least(1), "forget (and retain) rows per micro-batch")
    grad_accum: int = setting(1, at_least(1), "micro-batches per optimizer step")
    gamma: float = setting(1.0, NON_NEGATIVE, "the retain loss's weight")
    weight_decay: float = setting(0.1, NON_NEGATIVE)
    max_grad_norm: float = setting(1.0, NON_NEGATIVE, "gradient clipping (0: none)")
    warmup_ratio: float = setting(0.1, FRACTION, "share of the steps warming up")
    template: str = "qa"  # the run's prompt template (--template), not a method setting

    @classmethod
    def shared(cls) -> list[str]:
        """The fields every method has (the rest of a subclass's are its own options)."""
        return [f.name for f in dataclasses.fields(MethodConfig) if f.name != "template"]

    @classmethod
    def options(cls) -> list[str]:
        """This method's own settings, in declaration order."""
        base = {f.name for f in dataclasses.fields(MethodConfig)}
        return [f.name for f in dataclasses.fields(cls) if f.name not in base]

    @classmethod
    def keys(cls) -> list[str]:
        """Every key `--set METHOD.KEY=V` takes."""
        return cls.shared() + cls.options()

    @classmethod
    def meta(cls, name: str, key: str, default=None):
        """A field's declaration `key` (rule, help, hashed, legacy, sweep) from the most derived class that
        states it: a subclass that only gives a new default keeps its parent's rule."""
        for klass in cls.__mro__:
            declared = getattr(klass, "__dataclass_fields__", {}).get(name)
            if declared is not None and key in declared.metadata:
                return declared.metadata[key]
        return default

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {k: rule for k in cls.keys() if (rule := cls.meta(k, "rule")) is not None}

    @classmethod
    def sweep_defaults(cls) -> dict[str, str]:
        """The values a field declares for `harness sweep`, as `--set` would give them."""
        out = {}
        for k in cls.options():
            value = cls.meta(k, "sweep", _UNSET)
            if value is not _UNSET:
                out[k] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    def hashed(self) -> dict:
        """The settings as the cell's hash covers them: the shared fields, and under `options` the method's own,
        less those that change no figure and those still at their legacy value."""
        values = dataclasses.asdict(self)
        options = {}
        for k in self.options():
            legacy = self.meta(k, "legacy", _UNSET)
            if self.meta(k, "hashed", True) and not (legacy not in (_UNSET, None) and values[k] == legacy):
                options[k] = values[k]
        return {k: values[k] for k in [*self.shared(), "template"]} | {"options": options}


@dataclass(frozen=True)
class LoRAOptions:
    """LoRA adapters (Hu et al. 2021, through peft) instead of full updates, for the methods whose settings take
    these fields (methods/lora.py). Defaults as SOUL's code (`use_lora`: r 8, alpha 32, dropout 0.05, q_proj and
    v_proj); `lora_r=0`, the default, is full fine-tuning. Out of the hash while `lora_r` is 0 (the legacy values),
    so rows made before LoRA existed keep their hashes."""

    lora_r: int = setting(0, at_least(0), "LoRA rank (0: full fine-tuning)", legacy=0)
    lora_alpha: int = setting(32, at_least(1), "LoRA's scale numerator (the update is alpha/r x BA)", legacy=32)
    lora_dropout: float = setting(0.05, FRACTION, "dropout on the adapters' input", legacy=0.05)
    lora_targets: str = setting(
        "q_proj,v_proj",
        LORA_TARGETS,
        "modules given adapters: names, comma-separated, or all-linear",
        legacy="q_proj,v_proj",
    )
