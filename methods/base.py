"""The UnlearningMethod interface and the training loop every GradDiff-style method shares."""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from harness import distributed, sharding
from harness.data.collate import device_of, encode_qa, pad_batch
from harness.progress import progress
from methods import lora
from methods.losses import graddiff_loss
from methods.precision import MasterWeights
from methods.settings import MethodConfig


class Diverged(RuntimeError):
    """The unlearning loss or a parameter stopped being finite: the cell fails, the run goes on."""


@dataclass
class UnlearnReport:
    """What a method reports beside the model: effort spent and anything method-specific (`extra`)."""

    steps: int
    unlearn_seconds: float
    trainable_params: int
    extra: dict = field(default_factory=dict)  # scalar columns for the leaderboard row
    artifacts: dict = field(default_factory=dict)  # files saved beside the cell: "x.pt" (torch), "x.json"
    model: torch.nn.Module | None = None  # the trained model when it wraps the one given (LoRA's PeftModel)


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


class UnlearningMethod(ABC):
    """Subclasses pick the optimizer (`make_optimizer`, required), declare their settings (`settings`, a
    `MethodConfig` subclass: methods/settings.py), and may override the hooks the loop calls, in order:
    `setup` (once, before training: a frozen reference model, a parameter mask), `trainable_parameters`,
    `make_optimizer`, then per step `loss` and `optimizer_step`, and `finish` (once, after training: report
    extra columns and files)."""

    name: str = "base"  # set by the registry to the name the method is registered under
    settings: ClassVar[type[MethodConfig]] = MethodConfig
    curve = None  # harness/curves.py's Curve when the run asks for curves (`eval.every`), set by the runner
    optimizer_states: ClassVar[int] = 2  # float32 tensors per trainable parameter (AdamW's moments, Sophia's
    #                                       momentum and Hessian), for the memory plan of `--dry-run`

    def __init_subclass__(cls, **kwargs):
        """A method's `settings` must be a dataclass over MethodConfig: a plain class would silently have no
        options (its fields would not be dataclass fields)."""
        super().__init_subclass__(**kwargs)
        settings = cls.settings
        typed = isinstance(settings, type) and issubclass(settings, MethodConfig)
        undeclared = (
            set(vars(settings).get("__annotations__", {})) - {f.name for f in dataclasses.fields(settings)}
            if typed
            else set()
        )
        if not typed or undeclared:
            raise TypeError(
                f"{cls.__name__}.settings: expected a @dataclass subclass of methods.settings.MethodConfig"
                + (f" ({', '.join(sorted(undeclared))} not dataclass fields)" if undeclared else "")
            )

    def __init__(self, cfg: MethodConfig):
        self.cfg = cfg

    def setup(self, model, tokenizer, forget: list[dict], retain: list[dict]) -> None:
        """Before training, on the untouched model: e.g. keep a frozen copy as NPO's reference model, record
        activations for an RMU-style loss, or (SIMU) find the neurons to update. Default: nothing."""

    def model_copies(self) -> int:
        """Whole copies of the model the method holds while it trains (NPO's frozen reference makes 2), for
        the memory plan of `harness run --dry-run`."""
        return 1

    def frozen_models(self) -> list[torch.nn.Module]:
        """Models `setup` kept that run beside the trained one (NPO's reference), sharded with it under
        `--shard fsdp`. Default: none."""
        return []

    def trainable_parameters(self, model) -> list[torch.nn.Parameter]:
        """Parameters the method updates (called after sharding, on the sharded model's parameters); every
        other parameter is frozen. Default: all of them, or with `lora_r` > 0 the adapters'."""
        return lora.adapter_parameters(model) if lora.enabled(self.cfg) else list(model.parameters())

    def setup_memory(self) -> tuple[float, str] | None:
        """Memory the method's `setup` needs beyond the weights, in bytes, and what for (SIMU's attribution),
        for the memory plan; None when it needs none."""
        return None

    @abstractmethod
    def make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The optimizer over `params` (float32 masters of the trainable parameters)."""

    def loss(self, model, forget_batch, retain_batch):
        """One micro-batch's loss, and its forget and retain parts for logging (floats or 0-d tensors). The
        batches are padded `input_ids`, `attention_mask` and `labels` (-100 outside the answer); anything
        `setup` kept (a reference model, target activations) is on `self`. Default: GradDiff."""
        return graddiff_loss(model, forget_batch, retain_batch, self.cfg.gamma)

    def finish(self, model, report: UnlearnReport) -> None:
        """After training: add the method's own columns (`report.extra`) and files (`report.artifacts`)."""

    def unlearn(self, model, tokenizer, forget: list[dict], retain: list[dict], sharded: bool = False) -> UnlearnReport:
        """GradDiff training: each shuffled forget batch is paired with a random retain batch; gradient
        clipping and accumulation, as in SOUL's code; the learning-rate schedule of `schedule`. In a run of
        several processes each rank takes every N-th forget batch (the last ones repeated so that all ranks
        take as many, as torch's DistributedSampler does) and its gradients are averaged with the others'.
        `sharded`: after `setup` (on the whole weights), the model and `frozen_models` are sharded over the
        ranks with FSDP2 (harness/sharding.py) and trained so; the caller gathers the weights afterwards.
        With `lora_r` > 0 the model is wrapped with LoRA adapters after `setup` (methods/lora.py) and the report
        carries the wrapper (`report.model`), which is what was trained."""
        start, cfg = time.perf_counter(), self.cfg
        self.setup(model, tokenizer, forget, retain)
        adapted = None
        if lora.enabled(cfg):
            if sharded:
                raise ValueError(
                    f"{self.name}: LoRA adapters train unsharded; drop --shard fsdp"
                )  # preflight says so first
            model = adapted = lora.adapt(model, cfg, self.name)
        if sharded:
            compute_dtype = next(model.parameters()).dtype
            sharding.shard_model(model, compute_dtype)
            for frozen in self.frozen_models():
                sharding.shard_model(frozen, compute_dtype, trained=False)
        params = self.trainable_parameters(model)
        trainable = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
        self.weights = MasterWeights(params)
        encode = lambda rows: [encode_qa(tokenizer, r["question"], r["answer"], cfg.template) for r in rows]  # noqa
        forget_ex, retain_ex = encode(forget), encode(retain)
        world, device = distributed.world_size(), device_of(model)
        micro_per_epoch = math.ceil(math.ceil(len(forget_ex) / cfg.batch_size) / world)  # on each rank
        total_steps = math.ceil(micro_per_epoch * cfg.epochs / cfg.grad_accum)
        optimizer = self.make_optimizer(self.weights.params)
        schedule = linear_schedule(optimizer, total_steps, cfg.warmup_ratio)
        model.train()
        bar = progress(
            total=total_steps, desc=f"unlearn {self.name}", unit="step", disable=None if distributed.is_main() else True
        )
        micro, steps, forget_nll, retain_nll, step_batches, losses = 0, 0, 0.0, 0.0, [], []
        lr, stopped = 0.0, self.take_point(model, 0, 0.0, 0.0, losses, total_steps)
        for _ in range(cfg.epochs):
            for forget_rows, retain_rows in self.epoch_batches(len(forget_ex), len(retain_ex)) if not stopped else ():
                forget_batch = pad_batch([forget_ex[j] for j in forget_rows], tokenizer.pad_token_id, device)
                retain_batch = pad_batch([retain_ex[j] for j in retain_rows], tokenizer.pad_token_id, device)
                loss, forget_nll, retain_nll = self.loss(model, forget_batch, retain_batch)
                if not bool(distributed.all_reduce(torch.isfinite(loss.detach()).float(), "sum") == world):
                    raise self.diverged(f"the loss became {loss.item()}", steps + 1, total_steps)
                (loss / cfg.grad_accum).backward()
                micro += 1
                step_batches.append((forget_batch, retain_batch))
                losses.append((loss.detach(), forget_nll, retain_nll))
                if micro % cfg.grad_accum == 0 or micro == micro_per_epoch * cfg.epochs:
                    lr = optimizer.param_groups[0]["lr"]  # this step's rate, before the schedule moves it
                    self.optimizer_step(model, optimizer, self.weights.params, step_batches)
                    schedule.step()
                    step_batches = []
                    steps += 1
                    bar.update(1)
                    bar.set_postfix(forget_nll=f"{forget_nll:.2f}", retain_nll=f"{retain_nll:.2f}")
                    if self.take_point(model, steps, micro / micro_per_epoch, lr, losses, total_steps):
                        stopped = True
                        break
            if not stopped:
                stopped = self.take_point(model, steps, micro / micro_per_epoch, lr, losses, total_steps, True)
        bar.close()
        if not sharding.all_finite(params):
            raise self.diverged("a parameter became non-finite", steps, total_steps)
        model.eval()
        report = UnlearnReport(
            steps=steps, unlearn_seconds=0.0, trainable_params=sum(p.numel() for p in params), model=adapted
        )
        if self.curve is not None and self.curve.rule is not None:
            report.extra["stopped_at_step"] = self.curve.stopped_at if stopped else math.nan
        self.finish(model, report)
        report.unlearn_seconds = time.perf_counter() - start
        return report

    def take_point(self, model, step, epoch, lr, losses, total, end_of_epoch=False) -> bool:
        """A curve point (harness/curves.py) when `eval.every` asks for one here: the step, epoch and the last
        step's rate, the mean losses since the last point (emptied), and the light evaluation; True when its
        stop rule is met."""
        curve = self.curve
        if curve is None or not curve.due(step, end_of_epoch, step == total):
            return False
        mean = lambda i: float(sum(float(x[i]) for x in losses) / len(losses)) if losses else math.nan  # noqa: E731
        point = {"step": step, "epoch": epoch, "lr": lr}
        point |= {"loss": mean(0), "forget_loss": mean(1), "retain_loss": mean(2)}
        losses.clear()
        return curve.observe(model, point)

    def epoch_batches(self, n_forget: int, n_retain: int):
        """This rank's (forget rows, retain rows) micro-batches of one epoch. Rank 0 draws them for all ranks
        from the cell's seed and shares them, one slot at a time, so the ranks split one schedule and a single
        process draws exactly what it always did (the retain draws interleave with training)."""
        bs, world, rank = self.cfg.batch_size, distributed.world_size(), distributed.rank()
        order = distributed.share(torch.randperm(n_forget).tolist() if distributed.is_main() else None)
        forget_batches = [order[i : i + bs] for i in range(0, n_forget, bs)]
        forget_batches += forget_batches[: -len(forget_batches) % world]  # as many on every rank
        for slot in range(0, len(forget_batches), world):
            picks = [torch.randint(n_retain, (bs,)).tolist() for _ in range(world)] if distributed.is_main() else None
            yield forget_batches[slot + rank], distributed.share(picks)[rank]

    def diverged(self, what: str, step: int, total: int) -> Diverged:
        return Diverged(
            f"{what} at step {step} of {total}; lr={self.cfg.lr:g} is the likeliest cause (try a "
            f"smaller --set {self.name}.lr)"
        )

    def optimizer_step(self, model, optimizer, params, batches: list[tuple[dict, dict]]) -> None:
        """Gather gradients, clip, step, write back, clear gradients. `batches` are the step's (forget, retain)
        micro-batches on this rank; second-order methods override this to refresh their Hessian on them."""
        self.weights.gather_grads()
        if self.cfg.max_grad_norm:
            sharding.clip_gradients(params, self.cfg.max_grad_norm)
        optimizer.step()
        self.weights.write_back()
        optimizer.zero_grad(set_to_none=True)
