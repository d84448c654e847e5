"""The UnlearningMethod interface and the training loop every GradDiff-style method shares."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from harness.data.collate import encode_qa, pad_batch
from harness.progress import progress
from harness.rules import FRACTION, NON_NEGATIVE, POSITIVE, at_least
from methods.losses import graddiff_loss


@dataclass
class MethodConfig:
    """Hyperparameters shared by the GradDiff methods (REFERENCES.md, the SOUL recipe), plus free `options`
    for method-specific knobs. A method's `defaults` override these field defaults."""

    lr: float = 1e-4
    epochs: int = 5
    batch_size: int = 4
    grad_accum: int = 1
    gamma: float = 1.0
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.1
    template: str = "qa"
    options: dict = field(default_factory=dict)


class Diverged(RuntimeError):
    """The unlearning loss or a parameter stopped being finite: the cell fails, the run goes on."""


@dataclass
class UnlearnReport:
    """What a method reports beside the model: effort spent and anything method-specific (`extra`)."""

    steps: int
    unlearn_seconds: float
    trainable_params: int
    final_forget_nll: float
    final_retain_nll: float
    extra: dict = field(default_factory=dict)       # scalar columns for the leaderboard row
    artifacts: dict = field(default_factory=dict)   # files saved beside the cell: "x.pt" (torch), "x.json"


def linear_schedule(optimizer, total_steps: int, warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_ratio` of the steps, then linear decay, like transformers'
    `get_linear_schedule_with_warmup`, except that no step trains at lr 0: warm-up step s runs at
    (s+1)/(W+1) of the rate, and a run shorter than 1/warmup_ratio steps has no warm-up (its first step at the
    full rate, its last at 1/steps of it)."""
    warmup = int(total_steps * warmup_ratio + 1e-9)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class UnlearningMethod:
    """Subclasses pick the optimizer, and may override the hooks the loop calls, in order: `setup` (once, before
    training: a frozen reference model, a parameter mask), `trainable_parameters`, `make_optimizer`, then per
    step `loss` and `optimizer_step`, and `finish` (once, after training: report extra columns and files)."""

    name: str = "base"     # set by the registry to the name the method is registered under
    defaults: dict = {}
    rules = {"lr": POSITIVE, "epochs": at_least(1), "batch_size": at_least(1), "grad_accum": at_least(1),
             "gamma": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "max_grad_norm": NON_NEGATIVE,
             "warmup_ratio": FRACTION}   # what each setting may be (harness/rules.py), checked before any run

    def __init__(self, cfg: MethodConfig):
        self.cfg = cfg

    def setup(self, model, tokenizer, forget: list[dict], retain: list[dict]) -> None:
        """Before training, on the untouched model: e.g. keep a frozen copy as NPO's reference model, record
        activations for an RMU-style loss, or (SIMU) find the neurons to update. Default: nothing."""

    def trainable_parameters(self, model) -> list[torch.nn.Parameter]:
        """Parameters the method updates; every other parameter is frozen. Default: all of them."""
        return list(model.parameters())

    def make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        raise NotImplementedError

    def loss(self, model, forget_batch, retain_batch):
        """One micro-batch's loss, and its forget and retain parts for logging (floats or 0-d tensors). The
        batches are padded `input_ids`, `attention_mask` and `labels` (-100 outside the answer); anything
        `setup` kept (a reference model, target activations) is on `self`. Default: GradDiff."""
        return graddiff_loss(model, forget_batch, retain_batch, self.cfg.gamma)

    def finish(self, model, report: UnlearnReport) -> None:
        """After training: add the method's own columns (`report.extra`) and files (`report.artifacts`)."""

    def unlearn(self, model, tokenizer, forget: list[dict], retain: list[dict]) -> UnlearnReport:
        """GradDiff training: each shuffled forget batch is paired with a random retain batch; gradient
        clipping and accumulation, as in SOUL's code; the learning-rate schedule of `schedule`."""
        start, cfg = time.perf_counter(), self.cfg
        self.setup(model, tokenizer, forget, retain)
        params = self.trainable_parameters(model)
        trainable = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
        encode = lambda rows: [encode_qa(tokenizer, r["question"], r["answer"], cfg.template) for r in rows]  # noqa
        forget_ex, retain_ex = encode(forget), encode(retain)
        micro_per_epoch = math.ceil(len(forget_ex) / cfg.batch_size)
        total_steps = math.ceil(micro_per_epoch * cfg.epochs / cfg.grad_accum)
        optimizer = self.make_optimizer(params)
        schedule = linear_schedule(optimizer, total_steps, cfg.warmup_ratio)
        model.train()
        bar = progress(total=total_steps, desc=f"unlearn {self.name}", unit="step")
        micro, steps, forget_nll, retain_nll = 0, 0, 0.0, 0.0
        for _ in range(cfg.epochs):
            order = torch.randperm(len(forget_ex)).tolist()
            for i in range(0, len(order), cfg.batch_size):
                forget_batch = pad_batch([forget_ex[j] for j in order[i:i + cfg.batch_size]], tokenizer.pad_token_id)
                picks = torch.randint(len(retain_ex), (cfg.batch_size,)).tolist()
                retain_batch = pad_batch([retain_ex[j] for j in picks], tokenizer.pad_token_id)
                loss, forget_nll, retain_nll = self.loss(model, forget_batch, retain_batch)
                if not torch.isfinite(loss):
                    raise self.diverged(f"the loss became {loss.item()}", steps + 1, total_steps)
                (loss / cfg.grad_accum).backward()
                micro += 1
                if micro % cfg.grad_accum == 0 or micro == micro_per_epoch * cfg.epochs:
                    self.optimizer_step(model, optimizer, params, forget_batch, retain_batch)
                    schedule.step()
                    steps += 1
                    bar.update(1)
                    bar.set_postfix(forget_nll=f"{forget_nll:.2f}", retain_nll=f"{retain_nll:.2f}")
        bar.close()
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise self.diverged("a parameter became non-finite", steps, total_steps)
        model.eval()
        report = UnlearnReport(steps=steps, unlearn_seconds=0.0, trainable_params=sum(p.numel() for p in params),
                               final_forget_nll=float(forget_nll), final_retain_nll=float(retain_nll))
        self.finish(model, report)
        report.unlearn_seconds = time.perf_counter() - start
        return report

    def diverged(self, what: str, step: int, total: int) -> Diverged:
        return Diverged(f"{what} at step {step} of {total}; lr={self.cfg.lr:g} is the likeliest cause (try a "
                        f"smaller --set {self.name}.lr)")

    def optimizer_step(self, model, optimizer, params, forget_batch, retain_batch) -> None:
        """Clip, step, clear gradients. Second-order methods override this to refresh their Hessian."""
        if self.cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
