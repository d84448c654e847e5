"""LoRA through peft: a method whose settings take `lora_r` > 0 (methods/settings.py `LoRAOptions`) trains
low-rank adapters on the target's modules instead of its weights, which stay frozen, bit for bit.

The loop (methods/base.py) wraps the model after the method's `setup`, with `get_peft_model`; the adapters are
float32 whatever the model's dtype (peft's `autocast_adapter_dtype`), so they are their own optimizer masters.
NPO's reference is the same model with its adapter switched off (`AdapterDisabled`), not a second copy. The
adapted model is evaluated unmerged, as peft computes it (merging would round `W + BA` into a bf16 model's
dtype) and as `harness eval` reloads a saved adapter folder, so both score the same model.
"""

from __future__ import annotations

import warnings

import torch

from harness.progress import note


def enabled(settings) -> bool:
    """Whether a method's settings ask for adapters."""
    return getattr(settings, "lora_r", 0) > 0


def targets(spec: str) -> str | list[str]:
    """`lora_targets` as peft's `target_modules`: `all-linear`, or the module names."""
    return spec if spec == "all-linear" else spec.split(",")


def lora_config(settings):
    from peft import LoraConfig  # importing peft takes seconds: only LoRA runs need it

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets(settings.lora_targets),
        bias="none",
        task_type="CAUSAL_LM",
    )


def adapt(model, settings, method: str):
    """`model` with fresh LoRA adapters (initialised from the torch generator: the cell's seed), every base
    weight frozen. With gradient checkpointing on, the embeddings' output requires grad
    (`enable_input_require_grads`), else reentrant checkpointing would give the adapters no gradient
    (open-unlearning #178)."""
    if checkpointing(model):
        model.enable_input_require_grads()
    try:
        adapted = wrapped(model, settings)
    except ValueError as err:  # peft: "Target modules {...} not found in the base model"
        linear = sorted(
            {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        )
        raise ValueError(
            f"--set {method}.lora_targets={settings.lora_targets}: {str(err).splitlines()[0]} (this model's linear "
            f"modules: {', '.join(linear)}; or all-linear)"
        ) from None
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    note(f"{method}: LoRA r={settings.lora_r} on {settings.lora_targets}: {trainable:,} trainable parameters")
    return adapted


def wrapped(model, settings):
    """`get_peft_model` with the settings' LoRA config."""
    from peft import get_peft_model

    with warnings.catch_warnings():  # peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora_config(settings))


def checkpointing(model) -> bool:
    """Whether the model recomputes activations (transformers 5 `is_activation_checkpointing`, before it
    `is_gradient_checkpointing`)."""
    name = (
        "is_activation_checkpointing"
        if hasattr(type(model), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    return bool(getattr(model, name, False))


def adapter_parameters(model) -> list[torch.nn.Parameter]:
    """The adapters' parameters (what the optimizer steps)."""
    return [p for name, p in model.named_parameters() if is_adapter(name)]


def is_adapter(name: str) -> bool:
    """A parameter peft added: LoRA's tensors are named `...lora_A.default.weight` and the like."""
    return ".lora_" in name or name.startswith("lora_")


def count_parameters(model, settings) -> int:
    """The adapters' size on `model` (a meta-device model is enough: nothing is allocated), for `--dry-run`."""
    import copy

    adapted = wrapped(copy.deepcopy(model), settings)
    return sum(p.numel() for p in adapter_parameters(adapted))


class AdapterDisabled:
    """The adapted model with its adapter switched off: the base model as it was before unlearning, which is
    NPO's reference, at no second copy's memory. Called like a model."""

    def __init__(self, model):
        self.model = model

    def __call__(self, **inputs):
        with self.model.disable_adapter():
            return self.model(**inputs)
