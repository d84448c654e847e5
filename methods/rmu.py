"""RMU (Li et al. 2024, "The WMDP Benchmark": representation misdirection for unlearning): at one decoder layer,
push the forget rows' hidden states toward a fixed random direction of norm `steering_coeff`, and keep the
retain rows' hidden states where a frozen copy of the model puts them; only the MLP output projections of
that layer and the ones before it train, with AdamW.

The loss is open-unlearning's `RMU` (trainer/unlearn/rmu.py, its `EMBED_DIFF` retain loss): per row the mean
over its supervised tokens of the mean squared difference over the hidden dimension, averaged over rows;
`forget + gamma * retain` (`gamma` is the retain weight here, as for every method: WMDP's `alpha`). The
defaults: open-unlearning's RMU class (c = 20, retain weight 1, layer 7 with layers 5, 6, 7's `down_proj`
weight trained, as the WMDP code), the WMDP code's lr 5e-5 and AdamW without weight decay; on a shallower
model the layer is scaled to its depth (`layer=-1`). The WMDP code's retain weight 100 is for Zephyr-7B: on
tofu-mini it held the forget states where they were (README, Methods)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from harness import distributed
from harness.data.collate import IGNORE, device_of
from harness.rules import NON_NEGATIVE, POSITIVE, Rule, at_least
from methods import attribution
from methods.fo_graddiff import FOGradDiff
from methods.npo import frozen_copy
from methods.settings import MethodConfig, setting

WMDP_LAYER, WMDP_DEPTH = 7, 32  # the WMDP code steers Zephyr-7B's layer 7 of 32

LAYER = Rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= -1, "-1 (scaled), or a layer index")


@dataclass(frozen=True)
class RMUConfig(MethodConfig):
    """RMU's settings (open-unlearning's and the WMDP code's); `gamma` is WMDP's `alpha`, the retain weight."""

    lr: float = 5e-5
    weight_decay: float = 0.0  # the WMDP code's AdamW (transformers') has none
    gamma: float = setting(1.0, NON_NEGATIVE, "the retain activations' weight (WMDP's alpha)")
    steering_coeff: float = setting(
        20.0, POSITIVE, "the norm c of the random direction the forget states are pushed to"
    )
    layer: int = setting(-1, LAYER, "the steered decoder layer (-1: WMDP's 7 of 32, scaled to the model's depth)")
    updated_layers: int = setting(3, at_least(1), "layers up to the steered one whose down_proj weight trains")


def steered_layer(n_layers: int, layer: int) -> int:
    """The layer index RMU steers: `layer`, or with -1 WMDP's layer 7 of 32 at the same relative depth."""
    chosen = round(WMDP_LAYER * n_layers / WMDP_DEPTH) if layer == -1 else layer
    if not 0 <= chosen < n_layers:
        raise ValueError(
            f"rmu.layer={layer}: the model has {n_layers} decoder layers (expected -1 or 0..{n_layers - 1})"
        )
    return chosen


def decoder_layer(model, projection: attribution.Projection) -> torch.nn.Module:
    """The decoder layer holding an MLP output projection (model.layers.<i> for model.layers.<i>.mlp.down_proj)."""
    suffix = attribution.architecture(model)[0]
    return model.get_submodule(projection.name[: -len(suffix) - 1])


@contextlib.contextmanager
def layer_output(layer: torch.nn.Module):
    """Records the hidden states `layer` outputs during the block (the first element when it returns a tuple)."""
    seen: list[torch.Tensor] = []

    def keep(module, args, output):
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(keep)
    try:
        yield seen
    finally:
        handle.remove()


def hidden_states(model, layer: torch.nn.Module, batch) -> torch.Tensor:
    """`layer`'s output hidden states for the batch, (rows, tokens, hidden), in float32."""
    with layer_output(layer) as seen:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return seen[-1].float()


def activation_loss(states: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """open-unlearning's `compute_activation_loss`: the squared difference, mean over the hidden dimension,
    mean over each row's supervised tokens (labels not -100), mean over rows."""
    mask = (labels != IGNORE).float()
    per_token = (states - target).pow(2).mean(-1)
    return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()


def rmu_loss(model, reference, layers: tuple, control: torch.Tensor, forget_batch, retain_batch, gamma: float):
    """`forget + gamma * retain`: the forget rows' states at the steered layer against `control`, the retain
    rows' against the frozen `reference`'s at the same layer. `layers`: (the model's layer, the reference's)."""
    forget = activation_loss(hidden_states(model, layers[0], forget_batch), control, forget_batch["labels"])
    with torch.no_grad():
        kept = hidden_states(reference, layers[1], retain_batch)
    retain = activation_loss(hidden_states(model, layers[0], retain_batch), kept, retain_batch["labels"])
    return forget + gamma * retain, forget.detach(), retain.detach()


class RMU(FOGradDiff):
    """AdamW (as the WMDP code) on the RMU loss, the steered layer's and the `updated_layers - 1` layers'
    before it `down_proj` weights trainable; a frozen copy of the model before unlearning as the retain target."""

    settings = RMUConfig

    def model_copies(self) -> int:
        return 2

    def setup(self, model, tokenizer, forget, retain) -> None:
        """The frozen reference and the random direction: uniform in [0, 1)^hidden, scaled to norm c (the WMDP
        code's `torch.rand` draw), from the cell's seed, the same on every rank."""
        self.reference, self.layers = frozen_copy(model), None
        hidden = model.config.hidden_size
        draw = torch.rand(1, 1, hidden) if distributed.is_main() else None
        direction = distributed.share(draw)
        self.control = (direction / direction.norm() * self.cfg.steering_coeff).to(device_of(model))

    def frozen_models(self) -> list[torch.nn.Module]:
        return [self.reference]

    def steered(self, model) -> int:
        return steered_layer(len(attribution.output_projections(model)), self.cfg.layer)

    def trainable_parameters(self, model) -> list[torch.nn.Parameter]:
        """The `down_proj` weights of the steered layer and the `updated_layers - 1` before it (WMDP's 5, 6, 7)."""
        at = self.steered(model)
        projections = attribution.output_projections(model)
        return [p.module.weight for p in projections[max(0, at - self.cfg.updated_layers + 1) : at + 1]]

    def loss(self, model, forget_batch, retain_batch):
        if getattr(self, "layers", None) is None:  # found once, on the model as it trains (sharded or not)
            at = self.steered(model)
            self.layers = tuple(
                decoder_layer(m, attribution.output_projections(m)[at]) for m in (model, self.reference)
            )
        return rmu_loss(model, self.reference, self.layers, self.control, forget_batch, retain_batch, self.cfg.gamma)
