"""SophiaG against a hand-written reference, with and without masks."""

import io
import math

import pytest
import torch

from methods.sophia import SophiaG


def quadratic_grads(theta: torch.Tensor, curvature: torch.Tensor) -> torch.Tensor:
    """Gradient of 0.5 * sum(a * theta^2)."""
    return curvature * theta


def run(opt_kwargs, steps=6, masks=None):
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5, 3.0]))
    curvature = torch.tensor([1.0, 0.1, 10.0, 2.0])
    opt = SophiaG([theta], masks={theta: masks} if masks is not None else None, **opt_kwargs)
    for _ in range(steps):
        theta.grad = quadratic_grads(theta.detach(), curvature)
        opt.step(bs=3)
    return theta.detach(), opt


def reference(steps, lr, b1, b2, rho, wd, bs):
    """Plain-float SophiaG with squared-grad Hessian, coordinate by coordinate (REFERENCES.md, Sophia)."""
    theta, a = [1.0, -2.0, 0.5, 3.0], [1.0, 0.1, 10.0, 2.0]
    m, h, clipped = [0.0] * 4, [0.0] * 4, 0
    for _ in range(steps):
        for i in range(4):
            g = a[i] * theta[i]
            h[i] = b2 * h[i] + (1 - b2) * g * g
            m[i] = b1 * m[i] + (1 - b1) * g
            theta[i] *= 1 - lr * wd
            ratio = abs(m[i]) / (rho * bs * h[i] + 1e-15)
            clipped += ratio >= 1
            theta[i] -= lr * math.copysign(1.0, m[i]) * min(ratio, 1.0)
    return theta, clipped


def test_matches_hand_reference_with_clipping_engaged():
    kwargs = dict(lr=0.05, betas=(0.9, 0.95), rho=0.5, weight_decay=0.1, hessian="squared-grad")
    theta, _ = run(kwargs, steps=6)
    expected, clipped = reference(6, 0.05, 0.9, 0.95, 0.5, 0.1, 3)
    assert 0 < clipped < 24, "the case must mix clipped and unclipped coordinates"
    assert theta.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_all_ones_mask_is_exactly_no_mask():
    kwargs = dict(lr=0.05, betas=(0.9, 0.95), rho=0.5, weight_decay=0.1, hessian="squared-grad")
    plain, _ = run(kwargs)
    masked, _ = run(kwargs, masks=torch.ones(4, dtype=torch.bool))
    assert torch.equal(plain, masked)


def test_mask_freezes_parameter_momentum_and_hessian_bit_for_bit():
    kwargs = dict(lr=0.05, betas=(0.9, 0.95), rho=0.5, weight_decay=0.1, hessian="squared-grad")
    mask = torch.tensor([True, False, True, False])
    theta, opt = run(kwargs, masks=mask)
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert torch.equal(theta[~mask], torch.tensor([-2.0, 3.0]))  # weight decay masked too
    assert torch.equal(state["exp_avg"][~mask], torch.zeros(2))
    assert torch.equal(state["hessian"][~mask], torch.zeros(2))
    plain, _ = run(kwargs)
    assert torch.equal(theta[mask], plain[mask])  # the rest behaves as unmasked


def test_first_steps_are_sign_steps_when_hessian_is_zero():
    theta, _ = run(dict(lr=0.1, betas=(0.9, 0.99), rho=0.04, weight_decay=0.0, hessian="gnb"), steps=1)
    assert theta.tolist() == pytest.approx([0.9, -1.9, 0.4, 2.9])


def test_state_dict_round_trips():
    kwargs = dict(lr=0.05, betas=(0.9, 0.95), rho=0.5, weight_decay=0.1, hessian="squared-grad")
    theta, opt = run(kwargs, steps=3)
    clone = torch.nn.Parameter(theta.clone())
    restored = SophiaG([clone], **kwargs)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # through bytes, as a checkpoint would be
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer))
    for param, optimizer in ((opt.param_groups[0]["params"][0], opt), (clone, restored)):
        param.grad = torch.ones(4)
        optimizer.step(bs=3)
    assert torch.equal(opt.param_groups[0]["params"][0].detach(), clone.detach())


def test_unknown_hessian_estimator_is_an_error():
    with pytest.raises(ValueError, match="hessian='exact': expected one of gnb, squared-grad"):
        SophiaG([torch.nn.Parameter(torch.zeros(1))], hessian="exact")
