"""SIMU-NPO: SIMU's critical-neuron mask and masked Sophia on NPO's loss instead of GradDiff's."""

from __future__ import annotations

from methods.simu import SIMU


class SIMUNPO(SIMU):
    """`simu` with `loss=npo` and NPO's weights (beta 0.1, retain weight 1); the rest is SIMU's recipe."""

    defaults = {**SIMU.defaults, "gamma": 1.0, "lr": 5.6234e-4, "options": {**SIMU.defaults["options"], "loss": "npo"}}
    added = {}   # new with this method: every option is in its hash
