"""SIMU-NPO: SIMU's critical-neuron mask and masked Sophia on NPO's loss instead of GradDiff's."""

from __future__ import annotations

from dataclasses import dataclass

from harness.rules import POSITIVE
from methods.settings import setting
from methods.simu import LOSSES, SIMU, SIMUConfig


@dataclass(frozen=True)
class SIMUNPOConfig(SIMUConfig):
    """`simu` with `loss=npo` and NPO's weights (beta 0.1, retain weight 1); the rest is SIMU's recipe. New
    with this method, so every setting is in its hash (no legacy values)."""

    gamma: float = 1.0
    lr: float = 5.6234e-4
    loss: str = setting("npo", LOSSES, "the unlearning loss", legacy=None)
    beta: float = setting(0.1, POSITIVE, "NPO's inverse temperature", legacy=None)


class SIMUNPO(SIMU):
    settings = SIMUNPOConfig
